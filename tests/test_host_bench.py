"""Host target: real LiteRT interpreter in fresh processes, statistics, results store, bad input."""

import json

import numpy as np
import pytest

from device_bench.host import HostParams, bench
from device_bench.store import ResultStore
from export.pipeline import ExportRequest, export
from export.quantization import Quant
from mobilenets_tf import configure

from .test_cli_models import run

FIELDS = {"status", "error", "model", "threads", "delegate", "count", "init_us", "first_us", "warmup_avg_us",
          "mean_us", "avg_us", "std_us", "min_us", "max_us", "median_us", "p90_us", "p99_us", "mem_peak_mb",
          "run_id", "utc_time", "mnbench_version", "git_commit", "target", "target_desc", "runtime",
          "model_sha256", "version", "alpha", "resolution", "quant", "params", "macs"}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    config = configure("v3-small", 0.35, 64)
    paths = []
    for quant in (Quant.FP32, Quant.INT8):
        record = export(ExportRequest(config, quant, calib_samples=4, verify=False), out)
        paths.append(out / record["file"])
    return paths


def test_bench_json_rows_and_store(tiny_models, tmp_path):
    code, out, err = run("bench", *map(str, tiny_models), "--threads", "1,2", "--runs", "20", "--min-secs",
                         "0", "--warmup", "2", "--results", str(tmp_path / "runs"), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["model"].split("_")[-1], r["threads"]) for r in rows] == [
        ("fp32.tflite", 1), ("fp32.tflite", 2), ("int8.tflite", 1), ("int8.tflite", 2)]
    for row in rows:
        assert FIELDS <= set(row) and row["status"] == "ok" and row["delegate"] == "xnnpack"
        assert row["count"] >= 20 and row["avg_us"] == row["mean_us"]
        assert row["min_us"] <= row["median_us"] <= row["p90_us"] <= row["p99_us"] <= row["max_us"]
        assert row["median_ci_low_us"] <= row["median_us"] <= row["median_ci_high_us"]
        assert row["init_us"] > 0 and row["first_us"] > 0 and row["warmup_avg_us"] > 0
        assert row["mem_peak_mb"] is None or row["mem_peak_mb"] > 0
        assert (row["version"], row["resolution"]) == ("v3-small", 64) and row["target"] == "host"
        assert json.loads(row["target_desc"])["cores"] >= 1 and row["runtime"].startswith("ai-edge-litert")
    store = ResultStore(tmp_path / "runs")
    frame = store.load()
    assert len(frame) == 4 and set(frame["quant"]) == {"fp32", "int8"}
    samples = store.load_samples(frame.iloc[0].to_dict())
    assert len(samples) == frame.iloc[0]["count"]
    assert np.median(samples) == pytest.approx(frame.iloc[0]["median_us"])


def test_no_xnnpack_and_fresh_process_per_model(tiny_models):
    done = bench(tiny_models[:1], [1], HostParams(runs=5, min_secs=0, xnnpack=False), None)
    rows, run_dir = done.rows, done.run_dir
    assert rows[0]["delegate"] == "cpu" and rows[0]["status"] == "ok" and run_dir is None


def test_worker_pids_differ(tiny_models):
    from device_bench.host import run_worker

    params = HostParams(runs=2, min_secs=0, warmup=1, warmup_min_secs=0)
    first, second = run_worker(tiny_models[0], 1, params), run_worker(tiny_models[0], 1, params)
    assert first["ok"] and second["ok"] and first["pid"] != second["pid"]


def test_human_output_is_a_table(tiny_models, tmp_path):
    code, out, err = run("bench", str(tiny_models[0]), "--runs", "3", "--min-secs", "0", "--no-store")
    assert code == 0 and out.splitlines()[0].startswith("model") and "median ms" in out


def test_bad_input(tiny_models, tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tiny_models[0].read_bytes()[:2000])
    cases = [
        ([str(tmp_path / "missing.tflite")], "does not exist"),
        ([str(truncated)], "LiteRT cannot load the model"),
        ([str(tiny_models[0]), "--threads", "0"], "every value must be >= 1"),
        ([str(tiny_models[0]), "--runs", "0"], "0 is not in the range x>=1"),
    ]
    for args, message in cases:
        code, out, err = run("bench", *args, "--results", str(tmp_path / "runs"))
        assert code != 0 and out == "" and err.count("\n") == 1 and message in err, (args, err)
    assert not (tmp_path / "runs").exists()
