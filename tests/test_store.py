"""Tests for device_bench.store: schema, round trip, append-only and atomic writes, loading, corruption."""

import json

import pandas as pd
import pytest

from device_bench import store
from device_bench.stats import summarize
from device_bench.store import (COLUMN_NAMES, COLUMNS, DTYPES, ResultStore, RunExistsError, SchemaError,
                                StoreError, row_key)
from device_bench.errors import BenchError

SAMPLES = [1510.5, 1498.25, 1502.0, 1533.75, 1490.0, 1505.125, 1499.5]


def ok_row(**changes):
    row = {
        "utc_time": "2025-01-31T12:00:00Z", "git_commit": "0123abc", "target": "host", "target_kind": "host",
        "target_desc": json.dumps({"cpu": "Xeon", "cores": 8, "os": "Linux"}),
        "runtime": "ai-edge-litert 2.3.0", "model": "mobilenet_v2_1.0_224_fp32.tflite",
        "model_sha256": "ab" * 32,
        "version": "v2", "alpha": 1.0, "resolution": 224, "quant": "fp32", "config": '{"alpha": 1.0}',
        "params": 3_504_872, "macs": 300_774_272, "threads": 4, "delegate": "xnnpack", "status": "ok",
        "init_us": 12345.5, "first_us": 2100.0, "warmup_avg_us": 1600.25, "mem_peak_mb": 41.5,
        **summarize(SAMPLES),
    }
    row.update(changes)
    return row


def failed_row(**changes):
    row = {"target": "host", "target_kind": "host", "runtime": "ai-edge-litert 2.3.0",
           "model": "mobilenet_v3_small_0.75_224_int8.tflite", "threads": 1, "delegate": "none",
           "status": "failed", "error": 'RuntimeError: bad op,\nline 2 "quoted"'}
    row.update(changes)
    return row


def test_columns_are_the_one_schema():
    assert len(COLUMN_NAMES) == len(set(COLUMN_NAMES)) == len(COLUMNS) == 40
    assert COLUMN_NAMES[0] == "run_id" and COLUMN_NAMES[-1] == "samples_file"
    assert set(DTYPES.values()) == {"string", "Int64", "Float64"}
    assert set(summarize(SAMPLES)) <= set(COLUMN_NAMES)  # stats output drops straight into a row


def test_new_run_ids_are_unique_sortable_and_safe():
    ids = [ResultStore.new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert sorted(ids, key=lambda run_id: run_id.split("-")[0]) == ids
    assert all(store._NAME_RE.fullmatch(run_id) and run_id[8] == "T" for run_id in ids)


def test_round_trip_keeps_dtypes_values_and_missing(tmp_path):
    results = ResultStore(tmp_path / "runs")
    rows = [ok_row(), failed_row(), ok_row(threads=1, alpha=0.35, error="", quant=None)]
    samples = {row_key(rows[0]): SAMPLES, row_key(rows[2]): SAMPLES[:3]}
    run_dir = results.write_run("run-a", rows, samples, raw_logs={"host_t4": "Inference (avg): 1502\n"})

    assert sorted(p.name for p in run_dir.iterdir()) == ["raw", "rows.csv", "samples.json"]
    assert (run_dir / "raw" / "host_t4.txt").read_text() == "Inference (avg): 1502\n"
    header = (run_dir / "rows.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMN_NAMES)

    frame = ResultStore(tmp_path / "runs").load("run-a")
    assert list(frame.columns) == list(COLUMN_NAMES)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == DTYPES
    first = frame.iloc[0]
    for name, value in ok_row().items():
        assert first[name] == value, name  # floats round-trip exactly (repr)
    assert first["run_id"] == "run-a" and first["mnbench_version"] == "0.1.0"
    assert first["samples_file"] == f"samples.json#{row_key(rows[0])}"
    failed = frame.iloc[1]
    assert failed["error"] == rows[1]["error"]  # comma, newline and quotes survive
    assert pd.isna(failed["count"]) and pd.isna(failed["median_us"]) and pd.isna(failed["samples_file"])
    assert pd.isna(failed["alpha"]) and pd.isna(failed["git_commit"])
    assert pd.isna(frame.iloc[2]["error"]) and pd.isna(frame.iloc[2]["quant"])  # '' and None are missing


def test_load_samples_follows_samples_file(tmp_path):
    results = ResultStore(tmp_path)
    results.write_run("run-a", [ok_row(), failed_row()], {row_key(ok_row()): SAMPLES})
    frame = results.load()
    assert results.load_samples(frame.iloc[0]) == SAMPLES
    with pytest.raises(StoreError, match="has no samples"):
        results.load_samples(frame.iloc[1])


def test_load_samples_of_runs_loaded_from_outside_root(tmp_path):
    ResultStore(tmp_path / "elsewhere").write_run("run-a", [ok_row()], {row_key(ok_row()): SAMPLES})
    results = ResultStore(tmp_path / "root")
    frame = results.load(tmp_path / "elsewhere" / "run-a" / "rows.csv")
    assert results.load_samples(frame.iloc[0]) == SAMPLES


def test_refuses_to_overwrite_a_run(tmp_path):
    results = ResultStore(tmp_path)
    run_dir = results.write_run("run-a", [ok_row()], {})
    before = (run_dir / "rows.csv").read_bytes()
    with pytest.raises(RunExistsError, match="append-only"):
        results.write_run("run-a", [ok_row(threads=2)], {})
    assert (run_dir / "rows.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run-a"]


def _crash_on_second_file(monkeypatch):
    real_write = store._write_text
    written = []

    def write_then_crash(path, text):
        if written:
            raise OSError("disk pulled out")
        real_write(path, text)
        written.append(path)

    monkeypatch.setattr(store, "_write_text", write_then_crash)
    return written


def test_crash_mid_write_leaves_no_run(tmp_path, monkeypatch):
    written = _crash_on_second_file(monkeypatch)
    results = ResultStore(tmp_path)
    with pytest.raises(OSError, match="disk pulled out"):
        results.write_run("run-a", [ok_row()], {row_key(ok_row()): SAMPLES})
    assert written and written[0].name == "rows.csv"  # the first file really was written
    assert list(tmp_path.iterdir()) == []  # temp dir cleaned up, no run dir
    assert results.load().empty


def test_hard_crash_leaves_only_an_ignorable_temp_dir(tmp_path, monkeypatch):
    _crash_on_second_file(monkeypatch)
    monkeypatch.setattr(store.shutil, "rmtree", lambda *args, **kwargs: None)  # killed: no cleanup runs
    results = ResultStore(tmp_path)
    with pytest.raises(OSError):
        results.write_run("run-a", [ok_row()], {})
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-run-a-")
    assert (leftovers[0] / "rows.csv").exists()  # the partial run exists only inside the temp dir
    assert results.load().empty
    monkeypatch.undo()
    results.write_run("run-a", [ok_row()], {})  # the same run can still be written
    assert len(results.load()) == 1


@pytest.mark.parametrize("row, message", [
    (ok_row(latency_ms=1.5), "not in the results schema: latency_ms"),
    (ok_row(threads="4"), "threads must be an integer"),
    (ok_row(threads=4.0), "threads must be an integer"),
    (ok_row(median_us=float("inf")), "median_us must be a finite number"),
    (ok_row(alpha=True), "alpha must be a finite number"),
    (ok_row(target_desc="{cpu: x}"), "target_desc must be a JSON string"),
    (ok_row(target_kind="phone"), "target_kind must be one of"),
    (ok_row(utc_time="2025-01-31 12:00:00"), "utc_time must be ISO 8601"),
    (ok_row(run_id="other"), "differs from the run's"),
    (ok_row(samples_file="x.json#k"), "samples_file is set by write_run"),
    (ok_row(model=None), "lacks required values: model"),
    (ok_row(count=None), "lacks required values: count"),
    (ok_row(median_us=None, avg_us=None), "lacks required values: median_us or avg_us"),
    (failed_row(error=None), "lacks required values: error"),
])
def test_rejects_rows_outside_the_schema(tmp_path, row, message):
    with pytest.raises(SchemaError, match=message):
        ResultStore(tmp_path).write_run("run-a", [row], {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rows, samples, raw_logs, message", [
    ([ok_row(), ok_row()], {}, None, "rows repeat"),
    ([ok_row()], {"nope": [1.0]}, None, "match no row"),
    ([ok_row()], {row_key(ok_row()): [1.0, float("nan")]}, None, "finite numbers"),
    ([ok_row()], {}, {"../escape": "x"}, "raw log name"),
    ([], {}, None, "has no rows"),
])
def test_rejects_bad_samples_logs_and_empty_runs(tmp_path, rows, samples, raw_logs, message):
    with pytest.raises(SchemaError, match=message):
        ResultStore(tmp_path).write_run("run-a", rows, samples, raw_logs)


@pytest.mark.parametrize("run_id", ["", ".hidden", "a/b", "../up", None])
def test_rejects_unsafe_run_ids(tmp_path, run_id):
    with pytest.raises(SchemaError, match="run_id"):
        ResultStore(tmp_path).write_run(run_id, [ok_row()], {})


def test_load_a_folder_with_two_runs(tmp_path):
    results = ResultStore(tmp_path / "runs")
    results.write_run("20250101T000000.000Z-aaaaaa", [ok_row(), failed_row()], {})
    results.write_run("20250102T000000.000Z-bbbbbb", [ok_row(target="R58M12345", target_kind="android")], {})
    (tmp_path / "runs" / ".tmp-crashed-0000").mkdir()  # a crashed writer's leftover is skipped
    for frame in (results.load(), results.load(tmp_path / "runs"), results.load(tmp_path)):
        assert list(frame["target"]) == ["host", "host", "R58M12345"]
        assert frame["run_id"].nunique() == 2 and frame.index.tolist() == [0, 1, 2]
    both = results.load("20250102T000000.000Z-bbbbbb", tmp_path / "runs")  # no duplicates
    assert list(both["target"]) == ["R58M12345", "host", "host"]


def test_load_of_an_empty_folder_has_the_schema(tmp_path):
    frame = ResultStore(tmp_path).load()
    assert frame.empty and {name: str(dtype) for name, dtype in frame.dtypes.items()} == DTYPES


def test_corrupt_csv_gives_one_line_error(tmp_path):
    results = ResultStore(tmp_path)
    rows_csv = results.write_run("run-a", [ok_row()], {}) / "rows.csv"
    header, line = rows_csv.read_text().splitlines()
    cases = {
        line[: len(line) // 2]: "row 1 has",  # truncated row
        line.replace(",4,xnnpack,", ",four,xnnpack,"): "row 1: threads='four' is not Int64",
    }
    for body, message in cases.items():
        rows_csv.write_text(f"{header}\n{body}\n")
        with pytest.raises(StoreError, match=message) as info:
            results.load("run-a")
        assert str(rows_csv) in str(info.value) and "\n" not in str(info.value)
    rows_csv.write_text("run_id,utc_time\nx,y\n")
    with pytest.raises(StoreError, match="header is not the results schema"):
        results.load(rows_csv)
    rows_csv.write_text("")
    with pytest.raises(StoreError, match="empty file"):
        results.load(tmp_path)


def test_missing_files_and_sources(tmp_path):
    results = ResultStore(tmp_path)
    run_dir = results.write_run("run-a", [ok_row()], {row_key(ok_row()): SAMPLES})
    frame = results.load()
    (run_dir / "samples.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot read samples"):
        results.load_samples(frame.iloc[0])
    (run_dir / "rows.csv").unlink()
    with pytest.raises(StoreError, match="has no rows.csv"):
        results.load()
    with pytest.raises(StoreError, match="no results folder, rows.csv or run id 'run-zz'"):
        results.load("run-zz")


def test_store_errors_are_bench_errors():
    assert issubclass(RunExistsError, StoreError) and issubclass(SchemaError, StoreError)
    assert issubclass(StoreError, BenchError) and issubclass(SchemaError, ValueError)


def test_ok_row_with_an_average_but_no_median(tmp_path):
    # benchmark_model builds before TF 2.19 print no median; such a run is still a result.
    store = ResultStore(tmp_path)
    store.write_run("r1", [ok_row(run_id="r1", median_us=None)], {})
    assert pd.isna(store.load()["median_us"].iloc[0]) and store.load()["avg_us"].iloc[0] > 0
