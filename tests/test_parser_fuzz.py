"""Fuzzing the log parser: pathological lines, and real logs mutated at random.

Every input must parse within a generous time bound (the parser is linear; its speed is measured in
``benchmarks/parser_speed.py``), raise nothing but :class:`ToolOutputParseError`, and never call a run
``ok`` whose figures are impossible (negative times, no runs, avg outside [min, max], median outside it).
The real logs are ``../shared/fixtures/benchmark_logs/`` (read in place; skipped when absent).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from device_bench.parser import MAX_LINE_CHARS, parse_last_run, parse_log
from device_bench.errors import ToolOutputParseError

SHARED_LOGS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "benchmark_logs"
REAL_LOGS = sorted(SHARED_LOGS.glob("*.txt"))
BOUND_S = 10.0  # per input; they take milliseconds to a few seconds here (2 cores shared by other jobs)
MUTATIONS_PER_LOG = 40
TIMES = ("init_us", "first_us", "warmup_avg_us", "avg_us", "std_us", "min_us", "max_us", "median_us",
         "p5_us", "p95_us")

PATHOLOGICAL = {  # name: text; each one was slow (cubic or quadratic) or hung before issue #17
    "logcat prefix, 20k spaces": "11-30 12:00:00.000  123  456 I " + " " * 20_000 + "x\nSTARTING!\n",
    "logcat tool tag, 20k spaces": "STARTING!\n11-30 12:00:00.000  123  456 I tflite" + " " * 20_000 + "x\n",
    "logcat -v brief, 20k spaces": "STARTING!\nI/" + " " * 20_000 + "x\n",
    "absl prefix, 20k spaces": "STARTING!\nI1130 12:00:00.000000 " + " " * 20_000 + "x\n",
    "LiteRT tag, 20k brackets": "STARTING!\n" + "[" * 20_000 + "\n",
    "2 M INFO: prefixes on one line": "INFO: " * 2_000_000 + "STARTING!\n",
    "50k INFO: lines": "INFO: STARTING!\n" + "INFO: \n" * 50_000,
    "5k STARTING! lines": "STARTING!\n" * 5_000,
    "1 M STARTING! on one line": "STARTING!" * 1_000_000,
    "5 MB count= line": "STARTING!\ncount=" + "1" * 5_000_000 + "\n",
    "count= line of 100k pairs": "STARTING!\nRunning benchmark for 1 iterations\n" + "count=1 " * 100_000,
    "summary line of 100k fields": "STARTING!\nInference timings in us: " + "Init: 1, " * 100_000,
    "Graph: [ without ]": "STARTING!\nGraph: [" + "]" * 10 + "[" * 50_000 + "\n",
    "op profile banner, 50k =": "STARTING!\nOperator-wise Profiling Info for Regular Benchmark Runs:\n"
                                + "=" * 50_000 + " x\n",
    "LiteRT block, long key": "STARTING!\n== BENCHMARK RESULTS ==\n" + "a " * 50_000 + ": 1 ms\n",
}


def check(text: str) -> list[dict]:
    """Parse within the bound; return the rows (none when the text holds no tool output)."""
    started = time.monotonic()
    try:
        rows = parse_log(text)
    except ToolOutputParseError:
        rows = []
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"{elapsed:.1f} s"
    for row in rows:
        if row["status"] == "ok":
            assert_possible(row)
    return rows


def assert_possible(row: dict) -> None:
    assert row["avg_us"] is not None
    assert all(row[key] is None or row[key] >= 0 for key in TIMES), row
    assert row["count"] is None or row["count"] >= 1
    low, high = row["min_us"], row["max_us"]
    for key in ("avg_us", "median_us"):
        slack = max(1.0, abs(row[key] or 0) * 1e-5)
        assert row[key] is None or low is None or row[key] >= low - slack, (key, row)
        assert row[key] is None or high is None or row[key] <= high + slack, (key, row)


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_input_parses_in_bounded_time(name):
    check(PATHOLOGICAL[name])
    started = time.monotonic()
    try:
        parse_last_run(PATHOLOGICAL[name])  # what `mnbench device` calls on a phone's output
    except ToolOutputParseError:
        pass
    assert time.monotonic() - started < BOUND_S


def test_a_line_past_the_cap_is_read_only_that_far():
    text = "STARTING!\nInference timings in us: Init: 5, Inference (avg): 7" + " " * MAX_LINE_CHARS + "9\n"
    row = parse_log(text)[0]
    assert row["avg_us"] == 7.0 and any("read only its first" in warning for warning in row["warnings"])


def mutate(text: str, rng: random.Random) -> str:
    """One random edit of the kinds a broken pipe, a bad build or a hostile file makes."""
    lines = text.splitlines(keepends=True) or ["\n"]
    at = rng.randrange(len(lines))
    kind = rng.randrange(9)
    if kind == 0:  # drop a line
        del lines[at]
    elif kind == 1:  # repeat a line (e.g. a second "Running benchmark for" banner)
        lines.insert(at, lines[at])
    elif kind == 2:  # negate a number
        line = lines[at]
        digits = [index for index, char in enumerate(line) if char.isdigit()]
        if digits:
            index = rng.choice(digits)
            lines[at] = line[:index] + "-" + line[index:]
    elif kind == 3:  # a digit becomes a non-ASCII digit
        line = lines[at]
        digits = [index for index, char in enumerate(line) if char.isdigit()]
        if digits:
            index = rng.choice(digits)
            lines[at] = line[:index] + chr(0xFF10 + int(line[index])) + line[index + 1:]
    elif kind == 4:  # a number grows by orders of magnitude
        lines[at] = lines[at].replace("=", "=999999", 1)
    elif kind == 5:  # a long run of spaces, as a logcat column gone wrong
        lines[at] = lines[at][:1] + " " * rng.randrange(1, 30_000) + lines[at][1:]
    elif kind == 6:  # cut the text here
        lines = lines[:at] + [lines[at][:rng.randrange(len(lines[at]) + 1)]]
    elif kind == 7:  # swap two lines
        other = rng.randrange(len(lines))
        lines[at], lines[other] = lines[other], lines[at]
    else:  # zero a count
        lines[at] = lines[at].replace("count=", "count=0", 1)
    return "".join(lines)


@pytest.mark.parametrize("log", REAL_LOGS, ids=lambda path: path.name[:2])
def test_mutated_real_logs_never_yield_impossible_ok_rows(log):
    rng = random.Random(f"issue-17 {log.name}")
    text = log.read_text(encoding="utf-8", errors="replace")
    for _ in range(MUTATIONS_PER_LOG):
        mutated = text
        for _ in range(rng.randrange(1, 4)):
            mutated = mutate(mutated, rng)
        check(mutated)


def test_the_shared_logs_are_there():
    if not REAL_LOGS:
        pytest.skip(f"no shared logs at {SHARED_LOGS}")
    assert len(REAL_LOGS) >= 10
