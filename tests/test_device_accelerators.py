"""``mnbench device --delegate gpu|npu`` end to end on the loopback phone (real ADB protocol).

The fake tool replays, for the accelerator flags it receives, a log built on the real CompiledModel
``benchmark_model`` log ``../shared/fixtures/benchmark_logs/17_…`` (read in place; the tests skip when it is
absent). That real run was on a Linux CPU, where TFLite prints no ``Replacing`` line; the lines added for the
accelerator runs are what the phone tool prints, spelled by the source's own format strings
(``tflite/core/subgraph.cc`` "Replacing %d out of %d node(s) with delegate (%s) node, yielding %zu partitions
for subgraph %d (%s).", ``litert/compiler/plugin/compiler_plugin.cc`` "Partitioned subgraph<%d>, selected %lu
ops, from a total of %lu ops. resulted in %lu partitions.", ``litert/runtime/accelerators/gpu_registry.cc``),
with LiteRT's delegate names (``LITERT_CL``, ``DispatchDelegate``). The NPU fallback quotes the public report
google-ai-edge/LiteRT#7858 ("Replacing 470 out of 476 node(s) with delegate (TfLiteXNNPackDelegate)" while the
NPU was requested). The timings are the real log's. The fake plays the CompiledModel tool here (its
``--help`` lists that tool's flags), except where a test says otherwise.
"""

from __future__ import annotations

import json
import pytest

from device_bench.store import ResultStore
from tests.helpers import run_cli as run
from tests.loopback_adb.fixtures import FAKE_BENCHMARK
from tests.test_device_cli import FAST, SHARED_LOGS, device_commands  # noqa: F401 (autouse fixture)
from tests.test_device_run import tiny_model

pytestmark = pytest.mark.timeout(90)
AFTER = "Flatbuffer model initialized directly from incoming litert model.\n"
NPU_MISSING = ("WARNING: [litert/runtime/accelerators/auto_registration.cc:46] NPU accelerator could not be "
               "loaded and registered: kLiteRtStatusErrorInvalidArgument.\n")
GPU_PARTIAL = (
    "INFO: [litert/runtime/accelerators/gpu_registry.cc:129] Dynamically loaded GPU accelerator"
    "(libLiteRtClGlAccelerator.so) registered.\n"
    "VERBOSE: Replacing 48 out of 90 node(s) with delegate (LITERT_CL) node, yielding 2 partitions for "
    "subgraph 0 (main).\n"
    "VERBOSE: Replacing 32 out of 43 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 4 "
    "partitions for subgraph 0 (main).\n")
NPU_FALLBACK = "VERBOSE: Replacing 470 out of 476 node(s) with delegate (TfLiteXNNPackDelegate)\n"  # #7858
NPU_COMPILED = (
    "INFO: [litert/compiler/plugin/compiler_plugin.cc:740] Partitioned subgraph<0>, selected 31 ops, from a "
    "total of 31 ops. resulted in 1 partitions.\n"
    "VERBOSE: Replacing 1 out of 1 node(s) with delegate (DispatchDelegate) node, yielding 1 partitions for "
    "subgraph 0 (main).\n")
PARTIAL_GPU = ("GPU delegate took only 48 of 90 operators (53 %); CPU fallback: XNNPACK (CPU) 32, "
               "CPU kernels 10")


def real_cpu_log() -> str:
    if not SHARED_LOGS.is_dir():
        pytest.skip(f"third-party logs not found at {SHARED_LOGS}: the ../shared checkout is absent")
    (path,) = SHARED_LOGS.glob("17_*.txt")
    return path.read_text(encoding="utf-8")


def with_lines(log: str, lines: str, drop: str = "") -> str:
    assert AFTER in log and (not drop or drop in log)
    return log.replace(drop, "").replace(AFTER, AFTER + lines)


def calls(device) -> dict[str, dict]:
    """The fake tool's calls by the accelerator flag they carried."""
    path = device.host_path("/.loopback/fake_benchmark_calls.jsonl")
    found = [json.loads(line) for line in path.read_text().splitlines()]
    return {("npu" if "--use_npu=true" in call["argv"] else "gpu" if "--use_gpu=true" in call["argv"]
             else "cpu"): call for call in found}


def accelerator(row: dict) -> dict:
    return json.loads(row["target_desc"])["run"].get("accelerator")


def test_gpu_partial_npu_fallback_and_xnnpack_in_one_run(loopback_device, tmp_path):
    log = real_cpu_log()
    loopback_device.set_benchmark("replay", tool="compiled_model", replay={
        "cpu": log, "gpu": with_lines(log, GPU_PARTIAL), "npu": with_lines(log, NPU_FALLBACK)})
    libraries = []
    for name in ("libLiteRtDispatch_Qualcomm.so", "libQnnHtp.so"):
        libraries += ["--npu-library", tmp_path / "vendor" / name]
        (tmp_path / "vendor").mkdir(exist_ok=True)
        (tmp_path / "vendor" / name).write_bytes(name.encode())
    code, out, err = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                         "--threads", "4", "--delegate", "gpu,npu,xnnpack", "--gpu-precision", "fp16",
                         *libraries, "--json", "--benchmark-binary", FAKE_BENCHMARK, "--results",
                         tmp_path / "results", *FAST)
    assert code == 0, err
    gpu, npu, xnnpack = json.loads(out)
    assert (gpu["status"], gpu["avg_us"], gpu["count"]) == ("ok", 950.0, 1054)  # the real log's figures
    assert accelerator(gpu) == {"requested": "GPU", "units": {"GPU": 48, "XNNPACK": 32, "CPU": 10},
                                "total_ops": 90, "accelerator_ops": 48,
                                "fallback": "XNNPACK (CPU) 32, CPU kernels 10", "gpu_precision": "fp16",
                                "gpu_backend": "auto"}
    warnings = json.loads(gpu["target_desc"])["run"]["warnings"]
    assert PARTIAL_GPU in warnings
    # The NPU took nothing: an ok row of what ran (the CPU), saying so and why.
    assert (npu["status"], npu["error"], npu["avg_us"]) == ("ok", None, 950.0)
    assert (
        "NPU delegate was not applied: the model silently ran on the CPU (all 476 operators: XNNPACK (CPU) "
        "470, CPU kernels 6); LiteRT said: NPU accelerator could not be loaded and registered: "
        "kLiteRtStatusErrorInvalidArgument.") in json.loads(npu["target_desc"])["run"]["warnings"]
    assert accelerator(npu)["accelerator_ops"] == 0 and accelerator(npu)["fallback"]
    assert accelerator(npu)["units"] == {"XNNPACK": 470, "CPU": 6}
    assert (xnnpack["status"], accelerator(xnnpack)) == ("ok", None)
    seen = calls(loopback_device)
    run_dir = f"/data/local/tmp/mnbench-{gpu['run_id']}"
    assert seen["gpu"]["argv"][5:] == ["--use_gpu=true", "--gpu-precision=fp16"]
    assert seen["npu"]["argv"][5:] == ["--use_npu=true", f"--dispatch_library_path={run_dir}/npu",
                                       f"--compiler_plugin_library_path={run_dir}/npu"]
    assert seen["npu"]["libraries"] == ["libLiteRtDispatch_Qualcomm.so", "libQnnHtp.so"]
    assert seen["npu"]["ld_library_path"] == f"{run_dir}/npu" and seen["gpu"]["ld_library_path"] is None
    assert seen["cpu"]["argv"][5:] == ["--use_cpu=true"]  # XNNPACK is the CompiledModel tool's CPU path
    tools = {json.loads(row["target_desc"])["run"]["tool"] for row in (gpu, npu, xnnpack)}
    assert tools == {"compiled_model"}
    assert not any("ignored flags" in warning for row in (gpu, npu, xnnpack)
                   for warning in json.loads(row["target_desc"])["run"]["warnings"])
    pushed = json.loads(npu["target_desc"])["npu_libraries"]
    assert [entry["name"] for entry in pushed] == ["libLiteRtDispatch_Qualcomm.so", "libQnnHtp.so"]
    assert not loopback_device.host_path(run_dir).exists()  # the libraries went with the run folder
    stored = ResultStore(tmp_path / "results").load()
    assert list(stored["status"]) == ["ok", "ok", "ok"]


def test_strict_delegation_fails_the_partial_gpu_and_passes_the_full_npu(loopback_device, tmp_path):
    log = real_cpu_log()
    loopback_device.set_benchmark("replay", tool="compiled_model", replay={
        "gpu": with_lines(log, GPU_PARTIAL), "npu": with_lines(log, NPU_COMPILED, drop=NPU_MISSING)})
    code, out, err = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                         "--threads", "4", "--delegate", "gpu,npu", "--strict-delegation", "--json",
                         "--benchmark-binary", FAKE_BENCHMARK, "--results", tmp_path / "results", *FAST)
    assert code == 1, err
    gpu, npu = json.loads(out)
    assert (gpu["status"], gpu["error"]) == (
        "failed", PARTIAL_GPU)
    assert (npu["status"], npu["error"]) == ("ok", None)
    assert accelerator(npu) == {"requested": "NPU", "units": {"NPU": 31, "CPU": 0}, "total_ops": 31,
                                "accelerator_ops": 31, "fallback": None}
    seen = calls(loopback_device)
    for unit in ("gpu", "npu"):
        assert seen[unit]["argv"][-2:] == ["--use_cpu=false", "--require_full_delegation=true"]
    assert seen["npu"]["ld_library_path"] is None  # no --npu-library: no library folder


def test_nnapi_warns_on_android_15(loopback_factory, tmp_path):
    phone = loopback_factory(profile={"props": {"ro.build.version.sdk": "35",
                                                "ro.build.version.release": "15"}})
    _, out, _ = run("device", "--serial", phone.serial, tiny_model(tmp_path / "m.tflite"), "--delegate",
                         "nnapi,xnnpack", "--json", "--benchmark-binary", FAKE_BENCHMARK, "--results",
                         tmp_path / "results", *FAST)
    nnapi, xnnpack = json.loads(out)
    notes = [json.loads(row["target_desc"])["run"]["warnings"] for row in (nnapi, xnnpack)]
    assert any(note.startswith("NNAPI is deprecated from Android 15 (this phone: SDK 35)")
               for note in notes[0])
    assert not any("NNAPI is deprecated" in note for note in notes[1])


def test_npu_libraries_with_one_name_are_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "libX.so").write_bytes(folder.encode())
    code, _, err = run("device", "--serial", "127.0.0.1:1", tiny_model(tmp_path / "m.tflite"), "--delegate",
                       "npu", "--npu-library", tmp_path / "a" / "libX.so", "--npu-library",
                       tmp_path / "b" / "libX.so")
    assert code == 2 and err.count("\n") == 1 and "two NPU libraries share a file name" in err


# ------------------------------------------------------------------------- which tool, which flags
# Per node, in run order: [node type, first ms, avg ms per invocation, calls] (calls: warm-up + timed runs).
LITERT_PROFILE = [["TfLiteXNNPackDelegate", 0.9, 0.8, 4],
                  ["Delegate/Convolution (NHWC, QC8) IGEMM", 0.3, 0.25, 4],
                  ["Delegate/Convolution (NHWC, QC8) IGEMM", 0.2, 0.15, 4], ["HARD_SWISH", 0.1, 0.05, 4]]


def test_compiled_model_tool_runs_xnnpack_with_its_profiler_and_refuses_what_it_cannot(loopback_device,
                                                                                       tmp_path):
    log = real_cpu_log()
    loopback_device.set_benchmark("replay", tool="compiled_model", replay={"cpu": log},
                                  litert_profile=LITERT_PROFILE)
    code, out, err = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                         "--threads", "4", "--delegate", "cpu,nnapi,xnnpack", "--op-profile", "--json",
                         "--benchmark-binary", FAKE_BENCHMARK, "--results", tmp_path / "results", *FAST)
    assert code == 1, err  # two rows failed
    cpu, nnapi, xnnpack = json.loads(out)
    assert cpu["status"] == nnapi["status"] == "failed"
    assert "has no CPU path without XNNPACK" in cpu["error"] and "use --delegate xnnpack" in cpu["error"]
    assert "has no NNAPI" in nnapi["error"]
    found = [json.loads(line)["argv"] for line in
             loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text().splitlines()]
    assert len(found) == 1 and found[0][5:] == ["--use_cpu=true", "--use_profiler=true"]  # refused: not run
    assert (xnnpack["status"], xnnpack["avg_us"]) == ("ok", 950.0)
    run_desc = json.loads(xnnpack["target_desc"])["run"]
    assert run_desc["tool"] == "compiled_model" and not any("op profil" in w for w in run_desc["warnings"])
    # LiteRT's per-invocation tables, read in TFLite's per-run meaning: 4 calls of each node in 4 runs.
    (stored,) = (tmp_path / "results").glob("*/op_times.json")
    (times,) = json.loads(stored.read_text()).values()
    assert times["by_type"] == pytest.approx({"TfLiteXNNPackDelegate": 800.0, "HARD_SWISH": 50.0,
                                              "Delegate/Convolution (NHWC, QC8) IGEMM": 400.0})
    assert times["by_node"]["[Delegate]:2"] == {"type": "Delegate/Convolution (NHWC, QC8) IGEMM",
                                                "us": pytest.approx(150.0)}


def test_classic_tool_refuses_npu_and_an_unknown_tool_gets_classic_flags_with_a_warning(loopback_device,
                                                                                         tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    loopback_device.set_benchmark("ok", tool="classic")
    code, out, err = run("device", "--serial", loopback_device.serial, model, "--delegate", "npu,gpu",
                         "--gpu-precision", "fp32", "--json", "--benchmark-binary", FAKE_BENCHMARK,
                         "--results", tmp_path / "results", *FAST)
    npu, gpu = json.loads(out)
    assert npu["status"] == "failed" and "has no NPU accelerator" in npu["error"]
    assert json.loads(npu["target_desc"])["run"]["tool"] == "classic"
    (call,) = [json.loads(line)["argv"] for line in
               loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text().splitlines()]
    assert call[5:] == ["--use_xnnpack=false", "--use_gpu=true", "--gpu_precision_loss_allowed=false"]

    loopback_device.set_benchmark("ok", tool="unknown")
    code, out, err = run("device", "--serial", loopback_device.serial, model, "--delegate", "xnnpack",
                         "--json", "--benchmark-binary", FAKE_BENCHMARK, "--results", tmp_path / "results",
                         *FAST)
    assert code == 0, err
    (row,) = json.loads(out)
    desc = json.loads(row["target_desc"])
    assert desc["run"]["tool"] == "unknown" and desc["binary"]["tool"] is None
    assert "names neither tool's flags" in desc["binary"]["tool_known_from"]
    assert any(warning.startswith("which benchmark_model this is is unknown")
               for warning in desc["run"]["warnings"])
