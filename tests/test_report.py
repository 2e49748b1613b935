"""`mnbench report`: pure tables, the Pareto front, the paper side-by-side and the self-contained HTML."""

import base64
import json
import re

import numpy as np
import pytest

from device_bench.store import ResultStore
from mnbench.report import paper, tables
from mnbench.report.build import build_report

from .test_compare import latencies, model_row, run, write_run

PIXEL_3 = {"serial": "8A1X0", "model": "Pixel 3", "manufacturer": "Google", "soc_model": "SDM845",
           "android_release": "12", "run": {"pinned_cpus": [7], "taskset_mask": "80",
                                            "temperatures_before": {"hottest_c": 38.5}}}
HOST_MS = {("v1", "fp32"): 14.0, ("v1", "int8"): 5.0, ("v2", "fp32"): 8.0, ("v2", "int8"): 3.9,
           ("v3-large", "fp32"): 6.0, ("v3-large", "int8"): 21.0, ("v3-small", "fp32"): 2.0,
           ("v3-small", "int8"): 11.0}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_runs")
    entries = [(model_row(version, quant=quant), threads,
                latencies(1000 * ms / (1.8 if threads == 2 else 1), seed=i))
               for i, ((version, quant), ms) in enumerate(HOST_MS.items()) for threads in (1, 2)]
    entries.append((model_row("v1", 0.5, 128), 1, None, {"status": "failed"}))
    write_run(root, entries)
    phone_rows = [(model_row("v3-small"), 1, None, {"median_us": 17000.0, "mean_us": 17100.0, "std_us": 300.0,
                                                    "count": 50, "delegate": "cpu"}),
                  (model_row("v3-large", quant="int8"), 1, None,
                   {"median_us": 30000.0, "count": 50, "delegate": "cpu"})]
    write_run(root, phone_rows, desc=PIXEL_3, kind="android", target="8A1X0", runtime="benchmark_model",
              utc_time="2026-11-28T01:00:00Z")
    return root


def test_pareto_mask():
    cost = np.array([1.0, 2.0, 3.0, 2.0, 4.0])
    latency = np.array([5.0, 3.0, 4.0, 3.0, 1.0])
    assert tables.pareto_mask(cost, latency).tolist() == [True, True, False, True, True]  # ties both stay
    assert tables.pareto_mask(-cost, latency).tolist() == [False, False, False, False, True]


def test_tables_from_rows(results):
    frame = ResultStore(results).load()
    prepared = tables.prepare(frame)
    assert len(prepared) == 18 and set(prepared["target_kind"]) == {"host", "android"}
    cost = tables.cost_latency(prepared)
    host_1t = cost[(cost["threads"] == 1) & cost["target_label"].str.startswith("host")]
    on_front = set(host_1t[host_1t["pareto"]]["label"])
    # none is beaten by a model as fast with as many Mult-Adds; v3-large fp32 (219M, 6 ms) is (v2 int8)
    assert on_front == {"v3-small_a1.00_r224_fp32", "v2_a1.00_r224_int8", "v1_a1.00_r224_int8"}
    quant = tables.quant_speedup(prepared)
    v1 = quant[(quant["version"] == "v1") & (quant["threads"] == 1)].iloc[0]
    assert v1["int8_over_fp32"] == pytest.approx(5.0 / 14.0, rel=0.02)
    scaling = tables.thread_scaling(prepared)
    assert set(scaling["threads"]) == {1, 2}
    assert scaling[scaling["threads"] == 2]["speedup"].between(1.7, 1.9).all()
    accuracy = tables.accuracy_latency(prepared, paper.published_top1())
    small = accuracy[(accuracy["label"] == "v3-small_a1.00_r224_fp32") & (accuracy["threads"] == 1)]
    assert small["top1_pct"].tolist()[:1] == [67.4]


def test_phone_side_by_side_names_device_and_conditions(results):
    prepared = tables.prepare(ResultStore(results).load())
    table = tables.phone_vs_paper(prepared, paper.paper_latency())
    small = table[table["label"] == "v3-small_a1.00_r224_fp32"].iloc[0]
    assert small["device"] == "Pixel 3" and small["pixel_ms"] == 14.4 and small["pixel1_ms"] == 15.8
    assert small["ours_over_pixel"] == pytest.approx(17.0 / 14.4)
    assert "pinned to CPU 7" in small["conditions"] and "38.5 °C" in small["conditions"]
    assert paper.pixel_column("Pixel 2 XL") == "pixel2_ms" and paper.pixel_column("Pixel 4") is None


def test_paper_tables_without_table4_fall_back_to_slim(tmp_path):
    for name in ("mnv3_table3_float.csv", "mnv3_slim_readme_and_doc_tables.csv"):
        (tmp_path / name).write_text((paper.REFERENCE_DIR / name).read_text())
    int8 = paper.paper_latency(tmp_path).query("quant == 'int8'")
    assert set(int8["version"]) == {"v3-large", "v3-small"} and int8["source"].str.contains("slim").all()
    assert len(paper.paper_latency(tmp_path / "none")) == 0


def test_cli_report_writes_markdown_and_self_contained_html(results, tmp_path):
    out = tmp_path / "report"
    code, stdout, err = run("report", str(results), "--out", str(out), "--title", "Test report")
    assert code == 0, err
    assert stdout.split() == [str(out / "report.md"), str(out / "report.html")]
    text = (out / "report.md").read_text()
    for heading in ("## Latency against Mult-Adds", "## fp32 against int8", "## Thread scaling",
                    "## Phones against the MobileNetV3 paper", "## Failed rows"):
        assert heading in text
    assert "single-threaded on one large core" in text and "Pixel 3 (SDM845, 8A1X0)" in text
    for name in re.findall(r"\]\((figures/[^)]+\.png)\)", text):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 5 and all(base64.b64decode(data).startswith(b"\x89PNG") for data in images)
    assert not re.search(r'(src|href)="(?!data:)', page) and "<table" in page and "Test report" in page


def test_report_bad_input_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for source, message in ((str(tmp_path / "missing"), "no results folder"), (str(empty), "no result rows")):
        code, out, err = run("report", source, "--out", str(tmp_path / "out"))
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_build_report_with_only_failed_rows(tmp_path):
    write_run(tmp_path / "runs", [(model_row(), 1, None, {"status": "failed"})])
    written = build_report(ResultStore(tmp_path / "runs").load(), tmp_path / "out")
    assert "No row ran successfully" in written[0].read_text() and "worker crashed" in written[0].read_text()


def test_bench_compare_and_report_on_real_runs(tmp_path):
    """Two real `mnbench bench` runs of one tiny model: compare pairs them, report draws them."""
    from export.pipeline import ExportRequest, export
    from export.quantization import Quant
    from mobilenets_tf import configure

    config = configure("v3-small", 0.35, 64)
    models = [tmp_path / export(ExportRequest(config, quant, calib_samples=4, verify=False), tmp_path)["file"]
              for quant in (Quant.FP32, Quant.INT8)]
    for side in ("base", "cur"):
        code, _, err = run("bench", *map(str, models), "--threads", "1,2", "--runs", "20", "--min-secs", "0",
                           "--results", str(tmp_path / side))
        assert code == 0, err
    code, out, err = run("compare", str(tmp_path / "base"), str(tmp_path / "cur"), "--json", "--fail-on",
                         "never")
    data = json.loads(out)
    assert code == 0 and len(data["pairs"]) == 4 and not data["unpaired"]
    assert all(p["method"].startswith("bootstrap") and p["ci_low"] <= p["ratio"] <= p["ci_high"]
               for p in data["pairs"])
    code, out, err = run("report", str(tmp_path / "base"), str(tmp_path / "cur"), "--out",
                         str(tmp_path / "r"))
    page = (tmp_path / "r" / "report.html").read_text()
    assert code == 0 and page.count("data:image/png;base64,") >= 3 and "v3-small_a0.35_r64_int8" in page


def test_repeated_runs_of_one_commit_are_combined(tmp_path):
    root = tmp_path / "runs"
    write_run(root, [(model_row(sha="older-export"), 1, latencies(5000))], utc_time="2026-11-27T00:00:00Z")
    for index, median in enumerate((1000.0, 1100.0, 3000.0)):
        write_run(root, [(model_row(), 1, latencies(median, seed=index))], commit=f"commit-{index}",
                  utc_time=f"2026-11-28T0{index}:00:00Z")
    row = tables.prepare(ResultStore(root).load()).iloc[0]
    assert row["runs"] == 3 and row["median_ms"] == pytest.approx(1.1, rel=0.01)
    assert row["ci_low_ms"] == pytest.approx(1.0, rel=0.01)
    assert row["ci_high_ms"] == pytest.approx(3.0, rel=0.01)
