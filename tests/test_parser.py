"""Tests of :mod:`device_bench.parser` (and :mod:`device_bench.op_profile`).

Three kinds of input:

* the third-party logs in ``../shared/fixtures/benchmark_logs/`` (read in place, never copied; the tests
  skip when that folder is absent), checked against figures read off each log by eye;
* the project's own logs in ``tests/data/benchmark_logs/``, written by hand for this project after the
  formats of the shared logs, each with a golden ``.json`` beside it (``{"raises": ...}`` for text that is
  not a log at all);
* every own log cut at random places, which must never raise, never yield a number absent from the text and
  never report ``ok`` without ``avg_us``.
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest

from device_bench.op_profile import parse_op_profile
from device_bench.parser import ROW_KEYS, parse_log, parse_run, split_runs
from device_bench.errors import ToolOutputParseError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_LOGS = REPO_ROOT.parent / "shared" / "fixtures" / "benchmark_logs"
OWN_LOGS = Path(__file__).resolve().parent / "data" / "benchmark_logs"
OWN_FIXTURES = sorted(OWN_LOGS.glob("*.txt"))
NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# Figures that never fall back to another line, so a cut log gives the full log's value or None.
STABLE_KEYS = ("std_us", "min_us", "max_us", "median_us", "p5_us", "p95_us", "count", "warmup_count",
               "mem_init_mb", "mem_overall_mb", "mem_peak_mb", "num_threads", "graph", "total_nodes")
# Figures with a less precise fallback (summary line vs count= line vs "Initialized session in").
FALLBACK_KEYS = ("init_us", "first_us", "warmup_avg_us", "avg_us")

# Figures read off each shared log by eye; one dict per invocation, each a subset of the row.
SHARED_EXPECTED = {
    "01": [dict(status="ok", tool_format="A", init_us=4452.0, first_us=146161.0, warmup_avg_us=146161.0,
                avg_us=137722.0, std_us=896.0, min_us=137079.0, max_us=143416.0, count=50, warmup_count=1,
                num_threads=1, graph="mobilenet_v1_1.0_224_quant.tflite", mem_init_mb=None)],
    "02": [dict(status="ok", tool_format="A", init_us=9933.0, warmup_avg_us=76605.9, avg_us=66767.6,
                std_us=39.0, count=15, warmup_count=7, num_threads=None,
                graph="/data/local/tmp/tflite/tfmodel/mobilenet_v1_1.0_224_quant.tflite"),
           dict(status="failed", error="truncated: no inference figures", tool_format="A", init_us=4183.0,
                warmup_avg_us=37625.7, warmup_count=13, count=25, min_us=37413.0, max_us=None, avg_us=None,
                num_threads=2)],
    "03": [dict(status="failed", error="truncated: no inference figures", tool_format="A", init_us=126941.0,
                first_us=80936.0, warmup_avg_us=74766.3, warmup_count=7, count=None, avg_us=None,
                num_threads=1)],
    "05": [dict(status="ok", tool_format="A", init_us=18764.0, warmup_avg_us=395037.0, avg_us=394183.0,
                std_us=4373.0, count=50, warmup_count=2, num_threads=2)],
    "06": [dict(status="ok", tool_format="B", init_us=250.0, first_us=25428.0, warmup_avg_us=9007.27,
                avg_us=8677.03, std_us=280.0, min_us=8355.0, max_us=10438.0, count=114, warmup_count=56,
                mem_init_mb=4.80859, mem_overall_mb=41.0625, num_threads=4)],
    "08": [dict(status="failed", error="Segmentation fault", init_us=16374.0, avg_us=None, count=None,
                num_threads=1, graph="serving_default.tflite",
                warnings=["Unconsumed cmdline flags: -use-gpu=true"])],
    "09": [dict(status="failed", error="Failed to apply NNAPI delegate.", avg_us=None, num_threads=4,
                delegates=[], graph="/data/local/tmp/yolov5s_int8_640.tflite")],
    "11": [dict(status="failed", error="truncated: no inference figures", avg_us=None, tool_format=None)],
    "12": [dict(status="ok", tool_format="B", init_us=2409.0, first_us=169816.0, warmup_avg_us=164822.0,
                avg_us=162980.0, std_us=146.0, count=50, warmup_count=4, mem_init_mb=4.10156,
                mem_overall_mb=10.332, delegates=[])],
    "13": [dict(status="ok", tool_format="B", init_us=13862.0, first_us=3821196.0, warmup_avg_us=3.8212e6,
                avg_us=524867.0, std_us=1596.0, count=50, warmup_count=1, mem_init_mb=8.28906,
                mem_overall_mb=49.7188, delegates=["EXTERNAL"], partitions=1, delegate_nodes=None)],
    "15": [dict(status="ok", tool_format="C", init_us=5579.0, first_us=1357602.0, warmup_avg_us=1.3576e6,
                avg_us=1.24027e6, std_us=2565.0, min_us=1238588.0, max_us=1252566.0, p5_us=1238753.0,
                median_us=1239807.0, p95_us=1247415.0, count=50, warmup_count=1, mem_init_mb=6.36328,
                mem_overall_mb=109.832, num_threads=None, delegates=[])],
    "16": [dict(status="ok", tool_format="C", init_us=119515.0, avg_us=63743.2, std_us=60716.0,
                median_us=51891.0, count=1000, warmup_count=9, delegate_nodes=2168, total_nodes=2168,
                partitions=1, delegates=["XNNPACK"], graph="./models/tiny_muaalem_float32.tflite"),
           dict(status="failed", error="Failed to allocate tensors!", avg_us=None, delegate_nodes=2136,
                total_nodes=2168, partitions=65, graph="./models/tiny_muaalem_int8.tflite"),
           dict(status="ok", avg_us=42394.8, count=24, warmup_count=11, mem_overall_mb=26.6797),
           dict(status="ok", avg_us=42435.4, count=24, warmup_count=50, mem_init_mb=23.5625)],
    "17": [dict(status="ok", tool_format="D", init_us=5760.0, first_us=2120.0, warmup_avg_us=950.0,
                avg_us=950.0, std_us=23.0, min_us=910.0, max_us=1102.0, p5_us=915.0, median_us=942.0,
                p95_us=991.0, count=1054, warmup_count=526, mem_init_mb=4.06, mem_overall_mb=7.07,
                mem_peak_mb=None, num_threads=4, graph="blaze_face_short_range.tflite",
                delegates=["XNNPACK"])],
    "19": [dict(status="ok", tool_format="C", init_us=18777.0, first_us=64791.0, warmup_avg_us=57758.2,
                avg_us=55043.2, std_us=1562.0, count=50, warmup_count=9, mem_init_mb=8.97656,
                mem_overall_mb=18.7227, num_threads=4, graph="yolo_best_recall_int8_static.tflite",
                op_profile=None)],
}


def read_text(path: Path) -> str:
    """Read a log keeping its line ends (CRLF must reach the parser)."""
    return path.read_bytes().decode("utf-8")


def shared_log(number: str) -> Path:
    if not SHARED_LOGS.is_dir():
        pytest.skip(f"third-party logs not found at {SHARED_LOGS}: the ../shared checkout is absent")
    (path,) = SHARED_LOGS.glob(f"{number}_*.txt")
    return path


def test_every_shared_log_has_expectations():
    if not SHARED_LOGS.is_dir():
        pytest.skip(f"third-party logs not found at {SHARED_LOGS}: the ../shared checkout is absent")
    assert sorted(path.name[:2] for path in SHARED_LOGS.glob("*.txt")) == sorted(SHARED_EXPECTED)


@pytest.mark.parametrize("number", sorted(SHARED_EXPECTED))
def test_shared_log_figures(number):
    rows = parse_log(read_text(shared_log(number)))
    assert len(rows) == len(SHARED_EXPECTED[number])
    for row, expected in zip(rows, SHARED_EXPECTED[number]):
        assert tuple(row) == ROW_KEYS
        assert {key: row[key] for key in expected} == expected
        assert row["status"] != "ok" or row["avg_us"] is not None


def test_shared_op_profiles():
    summary_12 = parse_log(read_text(shared_log("12")))[0]["op_profile"]
    assert summary_12[0] == {"node_type": "CONV_2D", "count": 15, "avg_ms": 143.812, "avg_pct": 88.285,
                             "cdf_pct": 88.285, "mem_kb": 0.0, "times_called": 15}
    assert [row["node_type"] for row in summary_12][-1] == "RESHAPE"
    row_13 = parse_log(read_text(shared_log("13")))[0]
    node_types = [row["node_type"] for row in row_13["op_profile"]]
    assert node_types == ["Vx Delegate", "TFLite_Detection_PostProcess"]
    assert row_13["op_profile_nodes"][1]["name"].endswith("TFLite_Detection_PostProcess:3]:63")
    nodes_05 = parse_log(read_text(shared_log("05")))[0]["op_profile_nodes"]  # old format: no section headers
    assert len(nodes_05) == 31 and nodes_05[-1]["name"] == "[MobilenetV1/Predictions/Reshape_1]"
    row_11 = parse_log(read_text(shared_log("11")))[0]  # profiling pasted alone; the init section is skipped
    assert [row["times_called"] for row in row_11["op_profile"]] == [3, 6, 2]
    assert row_11["op_profile_nodes"][6]["name"] == (
        "[model/tf.nn.silu_16/mul, model/tf.nn.silu_26/mul, model/tf.nn.silu_35/mul]:231")
    assert parse_log(read_text(shared_log("19")))[0]["warnings"] == [
        "op profile: the log ends before the per-operator tables"]


def test_shared_log_16_splits_into_four_runs_and_skips_shell_noise():
    runs = split_runs(read_text(shared_log("16")))
    assert len(runs) == 4
    assert all(run.startswith("INFO: STARTING!") for run in runs)


def test_shared_log_19_glued_banner_drops_the_command():
    (run,) = split_runs(read_text(shared_log("19")))
    assert run.startswith("STARTING!\nLog parameter values verbosely")


def test_shared_log_09_keeps_error_details_as_warnings():
    (row,) = parse_log(read_text(shared_log("09")))
    assert row["warnings"][1] == "ERROR: Node number 248 (TfLiteNnapiDelegate) failed to prepare."


@pytest.mark.parametrize("log_path", OWN_FIXTURES, ids=lambda path: path.stem)
def test_own_fixture_matches_golden(log_path):
    expected = json.loads(log_path.with_suffix(".json").read_text(encoding="utf-8"))
    if isinstance(expected, dict):
        with pytest.raises(ToolOutputParseError):
            parse_log(read_text(log_path))
    else:
        assert json.loads(json.dumps(parse_log(read_text(log_path)))) == expected


def test_own_fixtures_cover_each_era():
    goldens = [json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) for path in OWN_FIXTURES]
    formats = {row["tool_format"] for golden in goldens if isinstance(golden, list) for row in golden}
    assert {"A", "B", "C", "D"} <= formats


@pytest.mark.parametrize("log_path", [path for path in OWN_FIXTURES if path.stat().st_size > 0
                                      and "not_a_log" not in path.name], ids=lambda path: path.stem)
def test_cut_logs_never_invent_figures(log_path):
    check_random_cuts(read_text(log_path), random.Random(log_path.name))


@pytest.mark.parametrize("number", sorted(SHARED_EXPECTED))
def test_cut_shared_logs_never_invent_figures(number):
    path = shared_log(number)
    check_random_cuts(read_text(path), random.Random(path.name))


def check_random_cuts(text: str, rng: random.Random, cuts_per_kind: int = 25) -> None:
    """Cut ``text`` at random line ends and at random characters; check every cut with check_cut_log."""
    full_rows = parse_log(text)
    line_ends = [match.end() for match in re.finditer("\n", text)]
    cuts = rng.sample(line_ends, min(cuts_per_kind, len(line_ends)))
    for cut in cuts + [rng.randrange(len(text)) for _ in range(cuts_per_kind)]:
        check_cut_log(text[:cut], full_rows)


def check_cut_log(prefix: str, full_rows: list[dict]) -> None:
    """A cut log raises only before the banner; its figures are in the text and agree with the full log."""
    try:
        rows = parse_log(prefix)
    except ToolOutputParseError:
        assert "STARTING!" not in prefix
        return
    numbers = [Decimal(token) for token in NUMBER_RE.findall(prefix)]
    allowed = {float(number) for number in numbers} | {float(number * 1000) for number in numbers}
    assert len(rows) <= len(full_rows)
    for row, full in zip(rows, full_rows):
        assert tuple(row) == ROW_KEYS
        assert row["status"] != "ok" or row["avg_us"] is not None
        for value in figures_of(row):
            assert value in allowed, (value, prefix[-200:])
        for key in STABLE_KEYS:
            assert row[key] is None or row[key] == full[key], (key, prefix[-200:])
        for key in FALLBACK_KEYS:
            assert row[key] is None or row[key] == pytest.approx(full[key], rel=0.01), (key, prefix[-200:])


def figures_of(row: dict) -> list[float]:
    """Every number in a row, its op-profile tables included."""
    tables = (row["op_profile"] or []) + (row["op_profile_nodes"] or [])
    values = list(row.values()) + [value for table_row in tables for value in table_row.values()]
    return [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]


def test_tabs_turned_into_spaces_give_the_same_op_profile():
    lines = read_text(OWN_LOGS / "c_op_profile_wide_node_type_xnnpack.txt").splitlines()
    with_tabs = parse_op_profile([line.strip() for line in lines])
    with_spaces = parse_op_profile([line.replace("\t", "   ").strip() for line in lines])
    assert with_tabs[0] is not None and with_tabs[1] is not None
    assert with_spaces == with_tabs


def test_all_same_and_count_one_lines_give_every_figure_as_curr():
    row = parse_run("STARTING!\nRunning benchmark for at least 1 iterations\ncount=1 curr=9873\n\n"
                    "Running benchmark for at least 5 iterations\ncount=5 curr=4100(all same)\n")
    assert (row["first_us"], row["warmup_avg_us"], row["warmup_count"]) == (9873.0, 9873.0, 1)
    figures = (row["avg_us"], row["min_us"], row["max_us"], row["std_us"], row["count"])
    assert figures == (4100.0, 4100.0, 4100.0, None, 5)
    assert (row["status"], row["error"]) == ("failed", "truncated: no summary line")
    assert row["warnings"] == ["avg_us is the avg= of the timed count= line: the summary does not give it"]


@pytest.mark.parametrize("tail, avg_us", [
    ("avg=74766.3 st", 74766.3),  # cut inside the next key: avg= is whole
    ("avg=74766", None),  # the last value itself may be cut short
])
def test_count_line_cut_at_a_terminal_width(tail, avg_us):
    row = parse_run("STARTING!\nRunning benchmark for at least 1 iterations\ncount=1 curr=81000\n\n"
                    "Running benchmark for at least 50 iterations\n"
                    f"count=50 first=80936 curr=73720 min=73663 max=80936 {tail}\n")
    assert (row["count"], row["min_us"], row["max_us"], row["avg_us"], row["std_us"]) == (
        50, 73663.0, 80936.0, avg_us, None)
    assert row["warnings"][0].startswith("count= line is incomplete")
    assert (row["status"], row["warmup_avg_us"]) == ("failed", 81000.0)


def test_prefixes_absl_logcat_brief_and_file_tags_are_removed():
    text = ("I/tflite  ( 8123): STARTING!\n"
            "I0000 00:00:1758455104.504065   62590 benchmark.cc:12] Graph: [m.tflite]\n"
            "I/tflite  ( 8123): INFO: [bench.cc:9] Inference timings in us: Init: 1, First inference: 2, "
            "Warmup (avg): 3, Inference (avg): 4e+03\n"
            "W/ActivityManager(  512): Slow operation: 61ms so far\n")
    (row,) = parse_log(text)
    assert (row["graph"], row["init_us"], row["avg_us"], row["status"]) == ("m.tflite", 1.0, 4000.0, "ok")
    assert row["warnings"] == []  # the other app's WARNING line is not ours


def test_native_crash_in_logcat_fails_the_run():
    text = ("11-28 10:15:31.902  8123  8123 I tflite  : STARTING!\n"
            "11-28 10:15:31.999  8123  8123 I tflite  : Running benchmark for at least 1 iterations\n"
            "11-28 10:15:32.100  8123  8140 F libc    : Fatal signal 11 (SIGSEGV), code 1 (SEGV_MAPERR), "
            "fault addr 0x0 in tid 8140 (benchmark_model), pid 8123 (benchmark_model)\n")
    (row,) = parse_log(text)
    assert (row["status"], row["error"]) == ("failed", "Fatal signal 11 (SIGSEGV)")


def test_failed_default_delegate_is_not_listed():
    row = parse_run("STARTING!\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nWARNING: Ignoring "
                    "failed application of the default TensorFlow Lite delegate indexed at 0.\n")
    assert row["delegates"] == []
    assert row["warnings"][0].startswith("Ignoring failed application")


def test_odd_digits_and_huge_exponents_are_not_figures():
    row = parse_run("STARTING!\nRunning benchmark for at least 1 iterations\ncount=\u00b2 curr=5\n\nRunning "
                    "benchmark for at least 50 iterations\ncount=50 first=1 curr=2 min=1 max=9 avg=1e999 "
                    "std=1\nInference timings in us: Init: 1e400, First inference: 1, Warmup (avg): 1, "
                    "Inference (avg): 4\nOperator-wise Profiling Info for Regular Benchmark Runs:\n==== "
                    "Summary by node type ====\n[Node type]\t[count]\t[avg "
                    "ms]\nCONV_2D\t\u00b2\t1.0\nADD\t3\t1e999\n")
    assert (row["warmup_count"], row["init_us"], row["avg_us"], row["max_us"]) == (None, None, 4.0, 9.0)
    assert (row["status"], row["error"]) == ("failed", "figures that are not numbers: count=\u00b2")
    assert row["op_profile"] is None or row["op_profile"] == []


@pytest.mark.parametrize("text", ["", "   \n\n", "\x00\x01binary\ufffd", "$ ls\nfoo.tflite  bar.tflite\n"])
def test_text_without_tool_output_raises(text):
    with pytest.raises(ToolOutputParseError):
        parse_log(text)
    with pytest.raises(ToolOutputParseError):
        parse_run(text)
    assert split_runs(text) == []


def test_units_count_the_models_operators_per_unit():
    """Delegates take turns: later "out of" totals count what the earlier ones left (see parser._units)."""
    head = "STARTING!\n"
    gpu = parse_run(head + "VERBOSE: Replacing 48 out of 90 node(s) with delegate (LITERT_CL) node, yielding "
                    "2 partitions for subgraph 0 (main).\nVERBOSE: Replacing 32 out of 43 node(s) with "
                    "delegate (TfLiteXNNPackDelegate) node, yielding 4 partitions for subgraph 0 (main).\n")
    assert gpu["units"] == {"GPU": 48, "XNNPACK": 32, "CPU": 10} and gpu["delegates"] == ["GPU", "XNNPACK"]
    compiled = ("INFO: [compiler_plugin.cc:740] Partitioned subgraph<0>, selected 3911 ops, from a total of "
                "3912 ops. resulted in 2 partitions.\nVERBOSE: Replacing 2 out of 3 node(s) with delegate "
                "(DispatchDelegate) node, yielding 3 partitions for subgraph 0 (main).\n")
    assert parse_run(head + compiled)["units"] == {"NPU": 3911, "CPU": 1}  # dispatch nodes are not operators
    failed = compiled + "ERROR: [dispatch_delegate.cc:145] Failed to create a dispatch delegate kernel: No " \
                        "usable Dispatch runtime found\n"
    assert parse_run(head + failed)["units"] == {"NPU": 0, "CPU": 3912}
    assert parse_run(head + "Created TensorFlow Lite XNNPACK delegate for CPU.\n")["units"] is None


def test_litert_signature_name():
    (row,) = parse_log(read_text(OWN_LOGS / "d_litert_gpu_llm_signature_block_mlcommons.txt"))
    assert (row["signature"], row["avg_us"], row["count"]) == ("prefill_1024", 7430200.0, 10)
