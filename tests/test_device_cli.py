"""``mnbench devices``, ``mnbench device`` and ``mnbench parse`` through the real CLI entry point.

The commands are registered for these tests only (mnbench/commands/__init__.py lists the shipped ones).
Devices are loopback ADB devices on 127.0.0.1, reached directly (``host:port``, no adb server on the port
``ANDROID_ADB_SERVER_PORT`` names) or through a private Google adb server. ``~/.android`` is redirected to a
temporary folder holding the session's test key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mnbench.commands
from device_bench.binary import litert_release
from device_bench.parser import parse_log
from device_bench.store import ResultStore
from mnbench.commands.device import device, devices, parse
from tests.loopback_adb.fixtures import FAKE_BENCHMARK
from tests.test_device_run import mode_binary, tiny_model
from tests.helpers import run_cli as run

pytestmark = pytest.mark.timeout(60)
SHARED_LOGS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "benchmark_logs"
FAST = ["--runs", "3", "--min-secs", "0", "--cooldown-max-wait", "0"]

# Written for this project after the shape of real era-C logs: XNNPACK on part of the graph, op profiling.
OWN_LOG = """\
adb shell taskset 80 /data/local/tmp/benchmark_model --graph=/data/local/tmp/mnv3.tflite --num_threads=1
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [1]
INFO: Graph: [/data/local/tmp/mnv3.tflite]
INFO: Enable op profiling: [1]
INFO: #threads used for CPU inference: [1]
INFO: Loaded model /data/local/tmp/mnv3.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Replacing 117 out of 120 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 3 partitions.
INFO: The input model file size (MB): 2.93
INFO: Initialized session in 41.7ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 \
seconds.
INFO: count=58 first=11904 curr=8551 min=8397 max=11904 avg=8622.31 std=456 p5=8410 median=8560 p95=8897

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 \
seconds.
INFO: count=117 first=8579 curr=8602 min=8381 max=9120 avg=8544.72 std=121 p5=8402 median=8521 p95=8790

INFO: Inference timings in us: Init: 41700, First inference: 11904, Warmup (avg): 8622.31, \
Inference (avg): 8544.72
INFO: Memory footprint delta from the start of the tool (MB): init=6.125 overall=11.5
INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
INFO: ============================== Summary by node type ==============================
INFO: \t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
INFO: \tTfLiteXNNPackDelegate\t        3\t     7.912\t    93.120%\t    93.120%\t     0.000\t        3
INFO: \t            HARD_SWISH\t        2\t     0.431\t     5.072%\t    98.192%\t     0.000\t        2
INFO: \t                  MEAN\t        1\t     0.154\t     1.808%\t   100.000%\t     0.000\t        1
INFO:
INFO: Timings (microseconds): count=117 first=8402 curr=8455 min=8301 max=9011 avg=8497 std=118
"""


@pytest.fixture(autouse=True)
def device_commands(monkeypatch, adb_home):
    """Register the commands; a private ~/.android with the test key; no adb server unless a test says so."""
    monkeypatch.setattr(mnbench.commands, "COMMANDS", [*mnbench.commands.COMMANDS, devices, device, parse])


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory) -> Path:
    """A real, tiny MobileNetV3 export (with its sidecar), made once per session."""
    from mobilenets_tf import configure

    from export.pipeline import ExportRequest, export
    from export.quantization import Quant

    folder = tmp_path_factory.mktemp("exported")
    record = export(ExportRequest(configure("v3-small", 0.35, 64), Quant.FP32, calib_samples=4, verify=False),
                    folder)
    return folder / record["file"]


# ------------------------------------------------------------------------------------------- device
def test_device_json_over_direct_tcp(loopback_device, tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    code, out, err = run("device", "--serial", loopback_device.serial, model, "--threads", "1,4", "--json",
                         "--benchmark-binary", FAKE_BENCHMARK, "--results", tmp_path / "results", *FAST)
    assert code == 0, err
    rows = json.loads(out)
    assert [(row["threads"], row["delegate"], row["status"]) for row in rows] == [
        (1, "xnnpack", "ok"), (4, "xnnpack", "ok")]
    for row in rows:
        assert (row["avg_us"], row["median_us"], row["count"], row["init_us"]) == (
            12340.5, 12340.0, 3, 35210.0)
        facts = json.loads(row["target_desc"])  # a JSON column, as in `mnbench bench --json`
        assert (facts["model"], facts["soc_model"], facts["abi"], facts["sdk"]) == (
            "Loopback Phone 7", "GS201", "arm64-v8a", 34)
        assert facts["run"]["taskset_mask"] == {1: "80", 4: "f0"}[row["threads"]]
    stored = ResultStore(tmp_path / "results").load(rows[0]["run_id"])
    assert list(stored["avg_us"]) == [12340.5, 12340.5] and set(stored["target"]) == {loopback_device.serial}


def test_device_table_through_googles_adb_server(google_adb, served_loopback, exported_model, tmp_path,
                                                 monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(google_adb.server_port))
    hostile = tmp_path / "a b;touch x.tflite"
    shutil.copy(exported_model, hostile)
    shutil.copy(exported_model.with_suffix(".json"), hostile.with_suffix(".json"))
    code, out, err = run("device", "--serial", served_loopback.serial, exported_model, hostile,
                         "--benchmark-binary", FAKE_BENCHMARK, "--results", tmp_path / "results", *FAST)
    assert code == 0, err
    facts_line = (f"{served_loopback.serial}: Loopback Phone 7 (mnbench), SoC GS201 (gs201), arm64-v8a, "
                  "Android 14")
    assert facts_line in out
    assert "cores 4x1.80 + 2x2.35 + 2x2.85 GHz" in out and "results: " in out
    assert out.count(" ok ") == 2 and "12.34" in out
    assert f"{served_loopback.serial} a b;touch x.tflite threads=1 xnnpack: ok 12.34 ms" in err  # progress
    assert list(served_loopback.sandbox.rglob("x.tflite")) == [] and not list(Path.cwd().glob("x.tflite"))
    stored = ResultStore(tmp_path / "results").load()
    assert list(stored["model"]) == [exported_model.name, "a b;touch x.tflite"]
    assert set(stored["version"]) == {"v3-small"} and set(stored["alpha"]) == {0.35}
    assert stored["params"].notna().all() and set(stored["status"]) == {"ok"}


def test_failed_runs_are_stored_and_exit_non_zero_with_one_line(loopback_device, tmp_path):
    models = [tiny_model(tmp_path / name) for name in ("ok.tflite", "crash.tflite")]
    code, out, err = run("device", "--serial", loopback_device.serial, *models, "--json", "--results",
                         tmp_path / "results", "--benchmark-binary", mode_binary(tmp_path / "bin"), *FAST)
    assert code == 1
    assert err.startswith("mnbench: error: 1 of 2 runs failed (first: ") and err.count("\n") == 1
    assert "crash.tflite threads=1 xnnpack: benchmark_model was killed by SIGSEGV (exit status 139)" in err
    rows = json.loads(out)
    assert [row["status"] for row in rows] == ["ok", "failed"]
    stored = ResultStore(tmp_path / "results").load()
    assert list(stored["status"]) == ["ok", "failed"] and "SIGSEGV" in stored["error"][1]


def test_unauthorized_device_through_the_server(google_adb, loopback_factory, tmp_path, monkeypatch):
    refusing = loopback_factory(reject_auth=True)
    assert google_adb.connect(refusing.serial, want="unauthorized") == "unauthorized"
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(google_adb.server_port))
    try:
        code, out, err = run("device", "--serial", refusing.serial, tiny_model(tmp_path / "m.tflite"),
                             "--benchmark-binary", FAKE_BENCHMARK, "--results", tmp_path / "results", *FAST)
        listed = run("devices", "--json")
    finally:
        google_adb.disconnect(refusing.serial)
    assert code == 1 and "device unauthorized: unlock the phone and confirm 'Allow USB debugging?'" in err
    assert "failed" in out and "not reached" in out
    assert {"serial": refusing.serial, "state": "unauthorized", "model": "", "product": "",
            "transport_id": json.loads(listed[1])[0]["transport_id"],
            "server": f"127.0.0.1:{google_adb.server_port}"} in json.loads(listed[1])
    assert list(ResultStore(tmp_path / "results").load()["status"]) == ["failed"]


def test_offline_prebuilt_fails_every_run_naming_the_url_and_the_way_out(loopback_device, tmp_path):
    code, out, err = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                         "--results", tmp_path / "results", "--json", *FAST)
    url = f"{os.environ['MNBENCH_BINARIES_URL']}/{litert_release()}/android_arm64/benchmark_model"
    assert code == 1 and f"cannot download {url}: " in err and "pass --benchmark-binary PATH" in err
    assert err.count("\n") == 1 and json.loads(out)[0]["status"] == "failed"
    assert not [path for path in (tmp_path / "cache").rglob("*") if path.is_file() and path.name != ".lock"]


def test_without_models_the_canonical_exports_are_benchmarked(loopback_device, tmp_path, monkeypatch):
    import export.pipeline

    monkeypatch.chdir(tmp_path)
    asked = []

    def fake_export_many(requests, out_dir, **_options):
        asked.extend((request.config.version, request.config.alpha, request.config.resolution,
                      request.quant.value) for request in requests)
        files = [f"{request.config.version}_{request.quant.value}.tflite" for request in requests]
        for name in files:
            tiny_model(Path(out_dir) / name)
        return [{"file": name} for name in files]

    monkeypatch.setattr(export.pipeline, "export_many", fake_export_many)
    code, out, err = run("device", "--serial", loopback_device.serial, "--benchmark-binary", FAKE_BENCHMARK,
                         "--json", *FAST)
    assert code == 0, err
    assert asked == [(version, 1.0, 224, quant) for version in ("v1", "v2", "v3-large", "v3-small")
                     for quant in ("fp32", "int8")]
    assert [row["model"] for row in json.loads(out)] == [f"{v}_{q}.tflite" for v, _, _, q in asked]
    assert (tmp_path / "results" / "runs").is_dir() and "canonical fp32/int8 models" in err


@pytest.mark.parametrize("args, message", [
    (["device", "m.tflite"], "no device: pass --serial SERIAL"),
    (["device", "--serial", "x", "--threads", "0"], "every value must be >= 1"),
    (["device", "--serial", "x", "--threads", "1,b"], "expected comma-separated integers"),
    (["device", "--serial", "x", "--delegate", "cpu,tpu"], "tpu is not one of cpu, xnnpack, gpu, nnapi"),
    (["device", "--serial", "x", "missing.tflite"], "model file missing.tflite does not exist"),
])
def test_usage_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(*args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_devices_lists_the_servers_devices(google_adb, served_loopback, monkeypatch):
    code, out, _ = run("devices")
    assert code == 0 and out.startswith("no device found")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(google_adb.server_port))
    code, out, _ = run("devices", "--json")
    entry = next(item for item in json.loads(out) if item["serial"] == served_loopback.serial)
    assert code == 0 and (entry["state"], entry["model"], entry["product"]) == (
        "device", "Loopback_Phone_7", "loopback_phone")
    code, out, _ = run("devices")
    assert code == 0 and f"{served_loopback.serial}  device  Loopback_Phone_7  loopback_phone" in out


# -------------------------------------------------------------------------------------------- parse
def test_parse_own_log_json_and_table(tmp_path):
    log = tmp_path / "mnv3.txt"
    log.write_text(OWN_LOG)
    code, out, _ = run("parse", log, "--json")
    (row,) = json.loads(out)
    assert code == 0 and row == json.loads(json.dumps(parse_log(OWN_LOG)[0]))
    assert (row["status"], row["avg_us"], row["median_us"], row["count"], row["init_us"]) == (
        "ok", 8544.72, 8521.0, 117, 41700.0)
    assert (row["delegate_nodes"], row["total_nodes"], row["partitions"]) == (117, 120, 3)
    assert row["op_profile"][0] == {"node_type": "TfLiteXNNPackDelegate", "count": 3, "avg_ms": 7.912,
                                    "avg_pct": 93.12, "cdf_pct": 93.12, "mem_kb": 0.0, "times_called": 3}
    code, out, _ = run("parse", log)
    assert code == 0 and "8,544" in out and "XNNPACK" in out
    assert "warning: delegate XNNPACK applied to 117 of 120 nodes; the rest run on CPU" in out
    assert "run 1: top operators: TfLiteXNNPackDelegate 93.1%, HARD_SWISH 5.1%, MEAN 1.8%" in out
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\xff\xfe not a log\n")
    code, _, err = run("parse", junk)
    assert code == 1 and err.startswith("mnbench: error: no benchmark_model output in the text")


def test_parse_reads_a_raw_log_stored_by_a_device_run(loopback_device, tmp_path):
    # The canned log names no model: one that names another model than the run's fails (test_faults.py).
    canned = "\n".join(line for line in OWN_LOG.splitlines()
                       if "Graph:" not in line and "Loaded model" not in line)
    loopback_device.set_benchmark("custom", stdout=canned + "\n")
    code, out, err = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "mnv3.tflite"),
                         "--op-profile", "--benchmark-binary", FAKE_BENCHMARK, "--results", tmp_path / "r",
                         *FAST)
    assert code == 0, err
    assert "warning: XNNPACK delegate took only 117 of 120 nodes; the rest ran on the CPU" in out
    assert "xnnpack: top operators: TfLiteXNNPackDelegate 93.1%" in out
    (raw,) = list((tmp_path / "r").glob("*/raw/*.txt"))
    assert raw.read_text().startswith(f"# mnbench: {loopback_device.serial} run ")
    code, out, _ = run("parse", raw, "--json")
    assert code == 0 and json.loads(out)[0]["avg_us"] == 8544.72
    calls = loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text()
    assert "--enable_op_profiling=true" in calls


def test_parse_shared_logs():
    logs = sorted(SHARED_LOGS.glob("*.txt"))
    if not logs:
        pytest.skip(f"the shared benchmark logs are not here ({SHARED_LOGS}); they are third-party data kept "
                    "outside the repository")
    for log in logs:
        code, out, err = run("parse", log, "--json")
        assert code == 0, f"{log.name}: {err}"
        expected = parse_log(log.read_text(encoding="utf-8", errors="replace"))
        assert json.loads(out) == json.loads(json.dumps(expected)), log.name
        code, out, _ = run("parse", log)
        assert code == 0 and out.splitlines()[0].startswith("run  status")
    by_prefix = {log.name[:2]: log for log in logs}
    rows = json.loads(run("parse", by_prefix["06"], "--json")[1])
    assert (rows[0]["status"], rows[0]["avg_us"]) == ("ok", 8677.03)
    rows = json.loads(run("parse", by_prefix["08"], "--json")[1])
    assert (rows[0]["status"], rows[0]["error"]) == ("failed", "Segmentation fault")


def test_device_commands_do_not_import_tensorflow():
    code = ("import sys; from mnbench.commands.device import devices, device, parse; "
            "import device_bench.android; "
            "sys.exit(any(name.split('.')[0] in ('tensorflow', 'keras') for name in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          timeout=30).returncode == 0
