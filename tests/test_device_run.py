"""Android runs (device_bench.android*, binary) against the loopback ADB device, and their pure parts.

The loopback device runs the pushed fake ``benchmark_model`` (tests/loopback_adb/fake_benchmark_model.py);
:func:`mode_binary` wraps it so a model's name picks its behaviour (``crash.tflite`` segfaults, ...), so one
run can hold every tool fault next to healthy models. Connection faults come from the device's knobs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from device_bench.errors import ModelFileError

from device_bench.adb_server import AdbServer
from device_bench.android import benchmark_devices, load_models, read_devices_file
from device_bench.android_run import (BenchSettings, benchmark_argv, benchmark_env, check_delegation, refusal,
                                     exit_text, judge_run)
from device_bench.android_session import DeviceSession
from device_bench.binary import CLASSIC, COMPILED_MODEL, TOOLS, tool_from_help
from device_bench.connect import open_transport
from device_bench.store import COLUMN_NAMES, ResultStore
from device_bench.transport import quote
from device_bench.errors import BenchError
from tests.loopback_adb import fake_benchmark_model as fake
from tests.loopback_adb.fixtures import FAKE_BENCHMARK, free_port, pids_with, wait_until_no_process

pytestmark = pytest.mark.timeout(60)
FAST = BenchSettings(num_runs=3, min_secs=0, cooldown_poll_s=0.05, cooldown_max_wait_s=0.2, run_timeout_s=10,
                     command_timeout_s=10)
BINARY_REMOTE = "/data/local/tmp/mnbench/benchmark_model"
FAULT_MODES = ("nonzero", "crash", "garbage", "truncated", "hang")


# ------------------------------------------------------------------------------------------- helpers
def tiny_model(path: Path, padding_bytes: int = 0, sidecar: bool = False) -> Path:
    """A valid .tflite model that LiteRT loads (one tensor, no operator; the fake tool never runs it),
    optionally padded, with a sidecar."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tensor = schema.TensorT()
    tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.FLOAT32, 0, b"x"
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = [tensor], [0], [0], []
    model = schema.ModelT()
    model.version, model.subgraphs, model.buffers = 3, [graph], [schema.BufferT()]
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model)) + os.urandom(padding_bytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if sidecar:
        from mobilenets_tf import configure

        path.with_suffix(".json").write_text(json.dumps({
            "sha256": hashlib.sha256(data).hexdigest(), "quant": "fp32",
            "config": configure("v3-small", 0.35, 64).as_dict()}))
    return path


def mode_binary(directory: Path) -> Path:
    """The fake benchmark_model, made to pick its mode from the model's name (``crash*.tflite`` ...)."""
    shebang, _, rest = FAKE_BENCHMARK.read_text().partition("\n")
    prefix = ("import os as _os, sys as _sys\n"
              "for _arg in _sys.argv:\n"
              "    for _mode in %r:\n"
              "        if _arg.startswith('--graph=') and _os.path.basename(_arg).startswith(_mode):\n"
              "            _os.environ['FAKE_BENCHMARK_MODE'] = _mode\n" % (FAULT_MODES,))
    path = directory / "benchmark_model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{shebang}\n{prefix}{rest}")
    path.chmod(0o755)
    return path


def direct_connect(adb_key: Path, auth_timeout_s: float = 2.0):
    """open_transport with the test key, and an adb server port where nothing listens (so: direct TCP)."""
    return functools.partial(open_transport, server=AdbServer(port=free_port(), timeout_s=1),
                             key_path=adb_key, auth_timeout_s=auth_timeout_s, connect_timeout_s=2)


def by_model(run) -> dict[str, dict]:
    return {row["model"]: row for row in run.rows}


def desc(row: dict) -> dict:
    return json.loads(row["target_desc"])


def ok_log(graph: Path, runs: int = 5) -> str:
    return fake._ok_log({"graph": str(graph), "num_runs": str(runs)}, {})


# ----------------------------------------------------------------------------------------- pure parts
def test_benchmark_argv_spells_the_flags_in_one_place():
    # The classic TFLite tool (benchmark_tflite_model.cc, tflite/tools/delegates/*_provider.cc).
    classic = {"tool": CLASSIC}
    argv = benchmark_argv("/bin/bm", "/d/a b.tflite", 4, "xnnpack", BenchSettings(op_profile=True), **classic)
    assert argv == ["/bin/bm", "--graph=/d/a b.tflite", "--num_threads=4", "--num_runs=50", "--min_secs=1",
                    "--warmup_runs=1", "--use_xnnpack=true", "--enable_op_profiling=true"]
    assert benchmark_argv("b", "g", 1, "cpu", FAST, **classic)[-1] == "--use_xnnpack=false"
    assert benchmark_argv("b", "g", 1, "nnapi", FAST, **classic)[-1] == "--use_nnapi=true"
    strict = BenchSettings(strict_delegation=True, gpu_precision="fp16", gpu_backend="opengl",
                           op_profile=True)
    assert benchmark_argv("b", "g", 1, "gpu", strict, **classic)[6:] == [
        "--use_xnnpack=false", "--use_gpu=true", "--gpu_precision_loss_allowed=true", "--gpu_backend=gl",
        "--require_full_delegation=true", "--enable_op_profiling=true"]
    assert benchmark_argv("b", "g", 1, "gpu", FAST, **classic)[6:] == [
        "--use_xnnpack=false", "--use_gpu=true"]
    # LiteRT's CompiledModel tool (litert/tools/benchmark_litert_model.h; note the hyphen): XNNPACK is its CPU
    compiled = {"tool": COMPILED_MODEL}
    assert benchmark_argv("b", "g", 1, "xnnpack", BenchSettings(op_profile=True), **compiled)[6:] == [
        "--use_cpu=true", "--use_profiler=true"]
    assert benchmark_argv("b", "g", 1, "gpu", FAST, **compiled)[-2:] == [
        "--use_gpu=true", "--gpu-precision=auto"]
    assert benchmark_argv("b", "g", 1, "gpu", strict, **compiled)[6:] == [
        "--use_gpu=true", "--gpu-precision=fp16", "--gpu_backend=opengl", "--use_cpu=false",
        "--require_full_delegation=true", "--use_profiler=true"]
    assert benchmark_argv("b", "g", 1, "npu", FAST, "/d/npu", **compiled)[6:] == [
        "--use_npu=true", "--dispatch_library_path=/d/npu", "--compiler_plugin_library_path=/d/npu"]
    assert benchmark_env("npu", "/d/npu") == ["LD_LIBRARY_PATH=/d/npu", "ADSP_LIBRARY_PATH=/d/npu"]
    assert benchmark_env("gpu", "/d/npu") == []
    assert benchmark_argv("b", "g", 1, "npu", FAST, **compiled)[6:] == ["--use_npu=true"]
    # What a tool cannot run is refused, never run with flags it would ignore.
    for tool, delegate, why in ((COMPILED_MODEL, "cpu", "no CPU path without XNNPACK"),
                                (COMPILED_MODEL, "nnapi", "has no NNAPI"), (CLASSIC, "npu", "no NPU")):
        assert why in refusal(tool, delegate, FAST)
        with pytest.raises(BenchError, match=why):
            benchmark_argv("b", "g", 1, delegate, FAST, tool=tool)
    assert "no webgpu GPU backend" in refusal(CLASSIC, "gpu", BenchSettings(gpu_backend="webgpu"))
    assert refusal(COMPILED_MODEL, "gpu", BenchSettings(gpu_backend="webgpu")) is None
    assert refusal(CLASSIC, "cpu", FAST) is None and refusal(COMPILED_MODEL, "xnnpack", FAST) is None
    with pytest.raises(BenchError, match="gpu_precision must be one of auto, fp16, fp32"):
        BenchSettings(gpu_precision="int8")
    with pytest.raises(BenchError, match="unknown delegate 'tpu'"):
        benchmark_argv("b", "g", 1, "tpu", FAST, **classic)
    with pytest.raises(BenchError, match="unknown benchmark tool 'tflite'"):
        benchmark_argv("b", "g", 1, "cpu", FAST, tool="tflite")
    with pytest.raises(BenchError, match="threads"):
        benchmark_argv("b", "g", 0, "cpu", FAST, **classic)
    with pytest.raises(BenchError, match="run_timeout_s"):
        BenchSettings(run_timeout_s=0)


def test_tool_is_told_by_its_help_output():
    """The two --help outputs the fake prints (from the tools' own flag lists) and what only one names."""
    for tool in TOOLS:
        out, err, code = fake._help(tool)
        assert tool_from_help(out + err) == tool and code == (0 if tool == COMPILED_MODEL else 1)
    assert tool_from_help("ERROR: usage: bm <flags>\nFlags:\n\t--num_runs=50\tint32\toptional\t...") is None
    assert tool_from_help("\t--use_xnnpack=false\n\t--use_npu=false\n") is None  # both: unknown, not a guess


def test_judge_run_verdicts(tmp_path):
    graph = tiny_model(tmp_path / "m.tflite")
    log = ok_log(graph)
    xnnpack = log.replace("INFO: The input model", "INFO: Replacing 66 out of 66 node(s) with delegate "
                          "(TfLiteXNNPackDelegate) node, yielding 1 partitions.\nINFO: The input model")
    status, error, parsed, warnings = judge_run(xnnpack, 0, "xnnpack")
    assert (status, error, warnings) == ("ok", None, [])
    assert (parsed["avg_us"], parsed["median_us"], parsed["count"]) == (12340.5, 12340.0, 5)
    assert judge_run(xnnpack, 0, "cpu")[3][-1].startswith("XNNPACK was applied although --use_xnnpack=false")
    # Silent fallback: GPU asked for, only XNNPACK (the CPU) ran.
    status, error, _, warnings = judge_run(xnnpack, 0, "gpu")
    assert (status, error) == ("ok", None)  # the row measures the CPU, and says so
    assert warnings[-1].startswith("GPU delegate was not applied: the model silently ran on the CPU (all 66")
    assert judge_run(xnnpack, 0, "gpu", strict_delegation=True)[1] == warnings[-1]
    assert judge_run(xnnpack, 0, "nnapi")[0] == "failed"  # NNAPI (classic tool) keeps failing
    partial = log.replace("INFO: The input model", "INFO: Replacing 60 out of 66 node(s) with delegate "
                          "(TfLiteGpuDelegateV2) node, yielding 3 partitions.\nINFO: The input model")
    assert judge_run(partial, 0, "gpu")[:2] == ("ok", None)
    message = "GPU delegate took only 60 of 66 operators (91 %); CPU fallback: CPU kernels 6"
    assert judge_run(partial, 0, "gpu")[3] == [message]  # per-unit counts replace the per-delegate warning
    assert judge_run(partial, 0, "gpu", strict_delegation=True)[:2] == ("failed", message)
    failed_gpu = log.replace("INFO: The input model",
                             "ERROR: Failed to apply GPU delegate.\nINFO: The input model")
    assert judge_run(failed_gpu, 0, "gpu")[:2] == ("failed", "Failed to apply GPU delegate.")
    no_median = log.replace(" p5=11723 median=12340 p95=13575", "")   # builds before TF 2.19 print no median
    status, error, parsed, _ = judge_run(no_median, 0, "cpu")
    assert (status, error, parsed["median_us"]) == ("ok", None, None) and parsed["avg_us"] > 0
    assert judge_run(xnnpack, 3, "xnnpack")[:2] == ("failed", "benchmark_model exited with status 3")
    assert judge_run("\x00\x01 noise", 0, "cpu")[:2] == (
        "failed", "the output (8 characters) is not benchmark_model output")
    assert exit_text(139) == "benchmark_model was killed by SIGSEGV (exit status 139)"
    assert exit_text(127).endswith("(not found, or a library is missing)")
    assert check_delegation({"delegates": [], "warnings": []}, "nnapi")[0].startswith(
        "NNAPI delegate was not")


def test_devices_file_and_model_checks(tmp_path):
    listing = tmp_path / "devices.txt"
    listing.write_text("# lab phones\nR58M123ABC\n\n192.168.1.7:5555  # Wi-Fi\n")
    assert [spec.name for spec in read_devices_file(listing)] == ["R58M123ABC", "192.168.1.7:5555"]
    with pytest.raises(BenchError, match="cannot read the devices file"):
        read_devices_file(tmp_path / "missing.txt")
    one = tiny_model(tmp_path / "a" / "m.tflite")
    two = tiny_model(tmp_path / "b" / "m.tflite", padding_bytes=8)
    assert len(load_models([one, one])) == 1
    with pytest.raises(BenchError, match="two different models are named m.tflite"):
        load_models([one, two])
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x1c\0\0\0TFL3" + b"\xff" * 64)
    with pytest.raises(ModelFileError, match="not a readable .tflite model"):
        load_models([junk])
    with pytest.raises(BenchError, match="no device"):
        benchmark_devices([" "], [one])
    with pytest.raises(BenchError, match="unknown delegate tpu"):
        benchmark_devices(["x"], [one], delegates=["tpu"])


# ------------------------------------------------------------------------------------- loopback runs
def test_run_stores_ok_rows_with_parsed_figures_and_cleans_up(loopback_device, adb_key, tmp_path):
    model = tiny_model(tmp_path / "v3small.tflite", sidecar=True)
    seen = []
    run = benchmark_devices([loopback_device.serial], [model], threads=[1, 4], delegates=["xnnpack", "cpu"],
                            settings=FAST, benchmark_binary=FAKE_BENCHMARK, results_root=tmp_path / "results",
                            connect=direct_connect(adb_key), on_result=seen.append)
    assert len(run.rows) == len(seen) == 4 and not run.failed
    for row in run.rows:
        assert list(row) == list(COLUMN_NAMES)
        assert (row["target"], row["target_kind"], row["runtime"]) == (
            loopback_device.serial, "android", "benchmark_model")
        assert (row["version"], row["alpha"], row["resolution"], row["quant"]) == (
            "v3-small", 0.35, 64, "fp32")
        assert (row["avg_us"], row["mean_us"], row["median_us"], row["std_us"], row["count"]) == (
            12340.5, 12340.5, 12340.0, 370.0, 3)
        assert (row["init_us"], row["first_us"], row["mem_overall_mb"]) == (35210.0, 16166.0, 9.86328)
        assert row["p90_us"] is None and row["cv"] is None and row["samples_file"] is None
        facts = desc(row)
        assert facts["model"] == "Loopback Phone 7" and facts["binary"]["kind"] == "user"
        assert facts["binary"]["source"] == str(FAKE_BENCHMARK.resolve())
        assert facts["run"]["temperatures_before"]["hottest_c"] == 41.0
        assert facts["run"]["temperatures_after"]["zones_c"]["2"] == 37.25
        assert facts["cleanup"].startswith("removed /data/local/tmp/mnbench-")
        assert (facts["run"]["tool"], facts["binary"]["tool_known_from"]) == ("classic", "--help")
    assert [(row["threads"], row["delegate"], desc(row)["run"]["taskset_mask"]) for row in run.rows] == [
        (1, "xnnpack", "80"), (1, "cpu", "80"), (4, "xnnpack", "f0"), (4, "cpu", "f0")]
    assert desc(run.rows[1])["run"]["warnings"][0].startswith("XNNPACK was applied although")
    calls = [json.loads(line)["argv"] for line in
             loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text().splitlines()]
    assert calls[0] == [f"--graph=/data/local/tmp/mnbench-{run.run_id}/v3small.tflite", "--num_threads=1",
                        "--num_runs=3", "--min_secs=0", "--warmup_runs=1", "--use_xnnpack=true"]
    probes = loopback_device.host_path("/.loopback/fake_benchmark_probes.jsonl").read_text().splitlines()
    assert [json.loads(line)["argv"] for line in probes] == [["--help"]]  # asked once per phone session
    taskset = loopback_device.host_path("/.loopback/taskset.log").read_text().splitlines()
    assert [line.split()[0] for line in taskset] == ["80", "80", "f0", "f0"]
    assert not loopback_device.host_path(f"/data/local/tmp/mnbench-{run.run_id}").exists()
    stored = ResultStore(tmp_path / "results").load(run.run_id)
    assert list(stored["status"]) == ["ok"] * 4 and list(stored["target_kind"]) == ["android"] * 4
    raw = sorted((run.run_dir / "raw").iterdir())
    assert len(raw) == 4 and "Inference timings in us" in raw[0].read_text()
    assert desc(run.rows[0])["run"]["raw_log"].startswith("raw/127.0.0.1-")


def test_binary_is_pushed_again_only_when_the_device_copy_differs(loopback_device, adb_key, tmp_path):
    model, connect = tiny_model(tmp_path / "m.tflite"), direct_connect(adb_key)
    mine = tmp_path / "bin" / "benchmark_model"
    mine.parent.mkdir()
    mine.write_bytes(FAKE_BENCHMARK.read_bytes())

    def binary_sends() -> int:
        return sum(1 for event in loopback_device.events("sync")
                   if event["request"] == "SEND" and event["path"].startswith(BINARY_REMOTE + ","))

    pushed = []
    for round_number in range(3):
        if round_number == 2:
            mine.write_bytes(FAKE_BENCHMARK.read_bytes() + b"\n# rebuilt\n")
        run = benchmark_devices([loopback_device.serial], [model], settings=FAST, benchmark_binary=mine,
                                results_root=tmp_path / "results", connect=connect)
        assert run.rows[0]["status"] == "ok", run.rows[0]["error"]
        pushed.append(desc(run.rows[0])["binary"]["pushed"])
    assert pushed == [True, False, True] and binary_sends() == 2
    assert any("sha256sum" in event["command"] for event in loopback_device.events("spawn"))


def test_hostile_model_name_is_quoted_everywhere(loopback_device, adb_key, tmp_path):
    model = tiny_model(tmp_path / "a b;touch x.tflite")
    run = benchmark_devices([loopback_device.serial], [model], settings=FAST, benchmark_binary=FAKE_BENCHMARK,
                            results_root=tmp_path / "results", connect=direct_connect(adb_key))
    (row,) = run.rows
    assert row["status"] == "ok", row["error"] and row["model"] == "a b;touch x.tflite"
    leaks = list(loopback_device.sandbox.rglob("x.tflite")) + list(Path.cwd().glob("x.tflite"))
    assert leaks == []
    assert f"'--graph=/data/local/tmp/mnbench-{run.run_id}/a b;touch x.tflite'" in desc(row)["run"]["command"]


def test_tool_faults_fail_their_own_runs_and_the_others_complete(loopback_device, adb_key, tmp_path):
    names = ["ok.tflite", *(f"{mode}.tflite" for mode in FAULT_MODES), "zz_ok.tflite"]
    models = [tiny_model(tmp_path / "models" / name) for name in names]
    settings = BenchSettings(num_runs=3, min_secs=0, cooldown_max_wait_s=0, run_timeout_s=1.5)
    started = time.monotonic()
    run = benchmark_devices([loopback_device.serial], models, settings=settings,
                            benchmark_binary=mode_binary(tmp_path / "bin"), results_root=tmp_path / "results",
                            connect=direct_connect(adb_key))
    assert time.monotonic() - started < 20
    rows = by_model(run)
    assert rows["ok.tflite"]["status"] == rows["zz_ok.tflite"]["status"] == "ok"
    errors = {name: rows[f"{name}.tflite"]["error"] for name in FAULT_MODES}
    assert {rows[f"{name}.tflite"]["status"] for name in FAULT_MODES} == {"failed"}
    assert errors["nonzero"] == "benchmark_model exited with status 1: Failed to allocate tensors!"
    assert errors["crash"].startswith("benchmark_model was killed by SIGSEGV (exit status 139): ")
    assert errors["garbage"].endswith("is not benchmark_model output")
    assert errors["truncated"].startswith("truncated")
    assert errors["hang"] == "timed out after 1.5 s; benchmark_model was stopped"
    assert rows["crash.tflite"]["init_us"] == 35210.0  # what the log did say is kept
    stored = ResultStore(tmp_path / "results").load(run.run_id)
    assert dict(zip(stored["model"], stored["error"].fillna(""))) == {
        name: rows[name]["error"] or "" for name in names}
    assert not loopback_device.host_path(f"/data/local/tmp/mnbench-{run.run_id}").exists()
    assert wait_until_no_process(f"mnbench-{run.run_id}") == []


def test_connection_drops_fail_their_own_runs(loopback_factory, adb_key, tmp_path):
    device = loopback_factory(drop_after_push_bytes=50_000, drop_on_shell="dropme.tflite")
    models = [tiny_model(tmp_path / "a.tflite"), tiny_model(tmp_path / "big.tflite", padding_bytes=200_000),
              tiny_model(tmp_path / "dropme.tflite"), tiny_model(tmp_path / "z.tflite")]
    run = benchmark_devices([device.serial], models, settings=FAST, benchmark_binary=FAKE_BENCHMARK,
                            results_root=tmp_path / "results", connect=direct_connect(adb_key))
    rows = by_model(run)
    assert rows["a.tflite"]["status"] == rows["z.tflite"]["status"] == "ok"
    assert rows["big.tflite"]["status"] == "failed"
    assert rows["big.tflite"]["error"].startswith("push of big.tflite failed: ")
    assert "connection lost" in rows["big.tflite"]["error"]
    assert rows["dropme.tflite"]["error"].startswith("connection lost during the run: ")
    assert [event["reason"] for event in device.events("drop")] == [
        "fault: drop_after_push_bytes=50000", "fault: drop_on_shell 'dropme.tflite'"]
    assert not device.host_path(f"/data/local/tmp/mnbench-{run.run_id}").exists()


def test_a_device_that_disappears_fails_the_remaining_runs_quickly(loopback_factory, adb_key, tmp_path):
    device = loopback_factory()
    models = [tiny_model(tmp_path / f"m{index}.tflite") for index in range(4)]

    def pull_the_plug(result) -> None:
        if result.row["model"] == "m0.tflite":
            device.stop()

    started = time.monotonic()
    run = benchmark_devices([device.serial], models, settings=FAST, benchmark_binary=FAKE_BENCHMARK,
                            results_root=tmp_path / "results", connect=direct_connect(adb_key),
                            on_result=pull_the_plug)
    assert time.monotonic() - started < 15
    statuses = [row["status"] for row in run.rows]
    assert statuses == ["ok", "failed", "failed", "failed"]
    assert run.rows[1]["error"].startswith("push of m1.tflite failed: ")
    assert "connection lost" in run.rows[1]["error"]
    for row in run.rows[2:]:
        assert row["error"].startswith("device lost after: ") and "reconnecting failed" in row["error"]
    assert desc(run.rows[0])["cleanup"].startswith("failed: /data/local/tmp/mnbench-")


def test_parallel_devices_one_unauthorized_one_unreachable(loopback_factory, adb_key, tmp_path):
    first, second = loopback_factory(), loopback_factory()
    refusing = loopback_factory(reject_auth=True)
    for device in (first, second):
        device.set_benchmark("ok", delay_s=3)  # long enough to overlap on a loaded runner
    unreachable = f"127.0.0.1:{free_port()}"
    serials = [first.serial, second.serial, refusing.serial, unreachable]
    run = benchmark_devices(serials, [tiny_model(tmp_path / "m.tflite")], settings=FAST,
                            benchmark_binary=FAKE_BENCHMARK, results_root=tmp_path / "results",
                            connect=direct_connect(adb_key, auth_timeout_s=1))
    rows = {row["target"]: row for row in run.rows}
    assert list(rows) == serials and {row["run_id"] for row in run.rows} == {run.run_id}
    assert rows[first.serial]["status"] == rows[second.serial]["status"] == "ok"
    assert rows[refusing.serial]["error"].startswith(f"cannot connect: {refusing.serial}: the device did not "
                                                     "accept this computer's ADB key")
    assert rows[unreachable]["error"] == (f"cannot connect: {unreachable}: connection refused (no adbd "
                                          "listening; is wireless or TCP debugging enabled?)")
    assert desc(rows[unreachable]) == {"serial": unreachable, "adb_server": None, "labels": {},
                                       "run": {}}  # no facts: never reached
    spans = []
    for device in (first, second):
        spawn = next(event for event in device.events("spawn") if "--graph=" in event["command"])
        end = next(event for event in device.events("exit") if event["pid"] == spawn["pid"])
        spans.append((spawn["t"], end["t"]))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], f"runs did not overlap: {spans}"
    assert len(ResultStore(tmp_path / "results").load(run.run_id)) == 4


def test_taskset_mask_follows_the_profile_clusters(loopback_factory, adb_key, tmp_path):
    big_first = {"cpus": [{"max_freq_khz": 2400000, "governor": "performance"}] * 2
                 + [{"max_freq_khz": 1400000, "governor": "schedutil"}] * 6}
    device = loopback_factory(profile=big_first)
    unpinned = loopback_factory(profile={"cpus": []})
    run = benchmark_devices([device.serial, unpinned.serial], [tiny_model(tmp_path / "m.tflite")],
                            threads=[1, 2, 4], settings=FAST, benchmark_binary=FAKE_BENCHMARK,
                            results_root=tmp_path / "results", connect=direct_connect(adb_key))
    assert not run.failed
    masks = [line.split()[0] for line in device.host_path("/.loopback/taskset.log").read_text().splitlines()]
    assert masks == ["2", "3", "c3"]  # cpu1; cpus 0-1; cpus 0-1 + the two highest little cores
    assert not unpinned.host_path("/.loopback/taskset.log").exists()
    note = desc(run.rows[-1])["run"]["warnings"][0]
    assert note.startswith("not pinned") and not desc(run.rows[-1])["run"]["command"].startswith("taskset")


def test_cooldown_waits_for_the_hottest_zone_within_a_bound(loopback_device, adb_key, tmp_path):
    model, connect = tiny_model(tmp_path / "m.tflite"), direct_connect(adb_key)
    hot = BenchSettings(num_runs=3, min_secs=0, cooldown_below_c=40, cooldown_max_wait_s=0.3,
                        cooldown_poll_s=0.05)
    run = benchmark_devices([loopback_device.serial], [model], settings=hot, benchmark_binary=FAKE_BENCHMARK,
                            results_root=tmp_path / "results", connect=connect)
    details = desc(run.rows[0])["run"]
    assert run.rows[0]["status"] == "ok" and details["cooldown_wait_s"] >= 0.3
    assert details["warnings"] == ["still 41 °C in thermal zone 0 (BIG) after cooling down for "
                                   f"{details['cooldown_wait_s']:.1f} s (target: below 40 °C)"]
    zone = loopback_device.host_path("/sys/class/thermal/thermal_zone0/temp")

    def cool_after_the_run_folder_appears() -> None:   # the session is past its set-up, in the cool-down
        deadline = time.monotonic() + 20
        while not list(loopback_device.host_path("/data/local/tmp").glob("mnbench-*")) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.4)
        zone.write_text("35000\n")

    cooler = threading.Thread(target=cool_after_the_run_folder_appears)
    cooler.start()
    patient = BenchSettings(num_runs=3, min_secs=0, cooldown_below_c=40, cooldown_max_wait_s=20,
                            cooldown_poll_s=0.05)
    run = benchmark_devices([loopback_device.serial], [model], settings=patient,
                            benchmark_binary=FAKE_BENCHMARK, results_root=tmp_path / "results",
                            connect=connect)
    cooler.join()
    details = desc(run.rows[0])["run"]
    # The cooler fires 0.4 s after the run folder appears; the model's push may take most of that on a loaded
    # machine: what shows the wait ended on cooling (not on the bound) is no warning and the cooled zone.
    assert 0 <= details["cooldown_wait_s"] < 5 and details["warnings"] == []
    assert details["temperatures_before"]["hottest_c"] == 39.5  # BIG cooled to 35, MID is the hottest now


def test_run_through_googles_adb_server(google_adb, served_loopback, tmp_path):
    models = [tiny_model(tmp_path / name) for name in ("ok.tflite", "crash.tflite", "a b;touch x.tflite")]
    connect = functools.partial(open_transport, server=AdbServer(port=google_adb.server_port))
    run = benchmark_devices([served_loopback.serial], models, settings=FAST,
                            benchmark_binary=mode_binary(tmp_path / "bin"), results_root=tmp_path / "results",
                            connect=connect)
    rows = by_model(run)
    assert rows["ok.tflite"]["status"] == rows["a b;touch x.tflite"]["status"] == "ok"
    assert rows["crash.tflite"]["error"].startswith("benchmark_model was killed by SIGSEGV (exit status 139)")
    assert any(event["service"].startswith("shell,v2,") for event in served_loopback.events("open"))
    assert list(served_loopback.sandbox.rglob("x.tflite")) == []
    assert not served_loopback.host_path(f"/data/local/tmp/mnbench-{run.run_id}").exists()


@pytest.mark.skipif(shutil.which("pkill") is None,
                    reason="the loopback device borrows the host's pkill: install procps to run this test")
def test_a_leftover_benchmark_process_is_killed_by_its_run_folder(loopback_device, adb_key):
    """The cleanup's pkill pattern matches only its own run's ``--graph=<run dir>/`` (and not itself)."""
    session = DeviceSession(loopback_device.serial, "20990101T000000.000Z-abcdef", [], [1], ["cpu"], FAST)
    session.transport = direct_connect(adb_key)(loopback_device.serial)
    mine, other = f"{session.folder}/m.tflite", "/data/local/tmp/mnbench-20990101T000000.000Z-other/m.tflite"
    for graph in (mine, other):
        sleeper = f"python3 -c 'import time; time.sleep(30)' {quote('--graph=' + graph)} >/dev/null 2>&1 &"
        started = session.transport.shell(sleeper, 5)
        assert started.ok
    others = str(loopback_device.host_path(other))
    try:
        deadline = time.monotonic() + 5
        while not (pids_with(str(loopback_device.host_path(mine))) and pids_with(others)):
            assert time.monotonic() < deadline, "the stand-in processes did not start"
            time.sleep(0.05)
        session._kill_leftovers()
        assert wait_until_no_process(str(loopback_device.host_path(mine))) == []
        assert pids_with(others), "another run's process was killed too"
    finally:
        for pid in pids_with(others):
            os.kill(pid, signal.SIGKILL)
        session.transport.close()
