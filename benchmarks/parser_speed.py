"""How fast the benchmark_model log parser is, on real logs and on the inputs that hung it before issue #17.

Times this checkout's ``device_bench.parser`` against the parser of d9a0532 (read with ``git show``) on the
same inputs, interleaved (new, old, new, old, ...), median of the rounds; inputs that the old parser takes
minutes on are timed at smaller sizes for it. Writes ``results/parser_speed.md``.

    python benchmarks/parser_speed.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._context import header  # noqa: E402
from device_bench import parser as new_parser  # noqa: E402
from device_bench.errors import ToolOutputParseError  # noqa: E402

OLD_COMMIT = "d9a0532"
SHARED_LOGS = ROOT.parent / "shared" / "fixtures" / "benchmark_logs"
OUT = ROOT / "results" / "parser_speed.md"


def old_parser():
    """The parser as it was at OLD_COMMIT, imported from a temporary file."""
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:device_bench/parser.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    # its error class has moved since (issue #12); both parsers must raise the one caught below
    source = source.replace("from mnbench.errors import ToolOutputParseError",
                            "from device_bench.errors import ToolOutputParseError")
    path = Path(tempfile.mkdtemp()) / "parser_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("parser_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(function, text: str) -> float:
    started = time.perf_counter()
    try:
        function(text)
    except ToolOutputParseError:
        pass
    return time.perf_counter() - started


def inputs() -> list[tuple[str, str, bool]]:
    """(name, text, also time the old parser) for each input."""
    real = "".join(path.read_text(encoding="utf-8", errors="replace")
                   for path in sorted(SHARED_LOGS.glob("*.txt")))
    cases = [("13 real logs x 20 (%.1f MB)" % (len(real) * 20 / 1e6), real * 20, True)]
    for spaces in (400, 800, 1600, 3200, 20_000, 100_000):
        line = "11-30 12:00:00.000  123  456 I " + " " * spaces + "x\nSTARTING!\n"
        cases.append((f"logcat line with {spaces:,} spaces", line, spaces <= 1600))
    for count in (10_000, 40_000, 2_000_000):
        cases.append((f"{count:,} 'INFO: ' prefixes on one line", "INFO: " * count + "STARTING!\n",
                      count <= 40_000))
    for megabytes in (1, 10):
        cases.append((f"{megabytes} MB of STARTING! lines", "STARTING!\n" * (megabytes * 100_000),
                      megabytes == 1))
    return cases


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=3)
    args = options.parse_args()
    old = old_parser()
    load_before = os.getloadavg()
    rows = []
    for name, text, with_old in inputs():
        news, olds, lasts = [], [], []
        for _ in range(args.rounds if len(text) < 5e6 else 1):  # the 10 MB input: one round
            news.append(timed(new_parser.parse_log, text))
            lasts.append(timed(new_parser.parse_last_run, text))
            if with_old:
                olds.append(timed(old.parse_log, text))
        new_s, old_s = statistics.median(news), statistics.median(olds) if olds else None
        rows.append((name, len(text), new_s, statistics.median(lasts), old_s))
        print(f"{name}: new {new_s:.3f} s, last run only {statistics.median(lasts):.3f} s, "
              f"old {'-' if old_s is None else f'{old_s:.3f} s'}", flush=True)
    load_after = os.getloadavg()
    command = f"python benchmarks/parser_speed.py --rounds {args.rounds}"
    lines = [header("Log parser speed (issue #17)", command),
             f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; after: "
             f"{', '.join(f'{v:.2f}' for v in load_after)} (a 2-core VM shared with other jobs: compare the "
             "columns of one row, measured interleaved, rather than absolute times).\n",
             f"Median of {args.rounds} interleaved rounds (one for the 10 MB input). `parse_log` parses "
             "every invocation in the text (as `mnbench parse` does); `parse_last_run` only the last one "
             "(as `mnbench device` does). "
             f"\"old\" is `parse_log` at {OLD_COMMIT}; '-' where it was not run (minutes or hours: the issue "
             "measured 20 s at 3,200 spaces, over 120 s at 20,000, a hang on 2 M prefixes, 43 s on 10 MB).\n",
             "| input | size (chars) | parse_log (s) | parse_last_run (s) | old parse_log (s) | old / new |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, size, new_s, last_s, old_s in rows:
        ratio = f"{old_s / new_s:.1f}" if old_s is not None else "-"
        lines.append(f"| {name} | {size:,} | {new_s:.4f} | {last_s:.4f} | "
                     f"{'-' if old_s is None else f'{old_s:.4f}'} | {ratio} |")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
