"""The fault suite of issue #17: what a hostile or unlucky user does, and what must come of it.

Each row of :data:`FAULTS` is one case: the issue's item, the case, the action (a function below, which
also checks the outcome) and the expected outcome in words. Actions run the real thing: the ``mnbench``
command line (in-process, or as a subprocess where a signal is sent), the loopback ADB device with the
stand-in ``benchmark_model``, small tmpfs mounts for full and read-only disks (these cases skip, saying so,
where mounting is not allowed), and a fake ``ENOSPC`` only where the disk must fill at one exact moment.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from device_bench.store import ResultStore
from tests.loopback_adb.fixtures import pids_with, wait_until_no_process
from tests.test_device_run import mode_binary, tiny_model
from tests.helpers import sigint_as_ctrl_c, run_cli as cli

pytestmark = pytest.mark.timeout(180)
REPO_ROOT = Path(__file__).resolve().parents[1]
FAST_DEVICE = ["--runs", "3", "--min-secs", "0", "--cooldown-max-wait", "0"]
FAST_BENCH = ["--runs", "3", "--min-secs", "0", "--warmup", "1"]
SHARED_LOGS = REPO_ROOT.parent / "shared" / "fixtures" / "benchmark_logs"
LOG_01 = SHARED_LOGS / "01_tf1.12_ti-am57x_cpu_1thread_nostats.txt"


@dataclass(frozen=True)
class Fault:
    item: int                           # the numbered item of issue #17
    case: str                           # what the user (or the world) does
    action: Callable[..., None]         # does it and checks the outcome
    expected: str                       # the outcome, in words
    fixtures: tuple[str, ...] = ()      # pytest fixtures the action takes, by name


# ------------------------------------------------------------------------------------------- helpers
def one_line_error(code: int, err: str, expected_code: int, *fragments: str) -> None:
    assert code == expected_code, err
    assert err.startswith("mnbench: error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def start(args: list, cwd: Path, log: Path) -> subprocess.Popen:
    """``python -m mnbench.cli ARGS`` as a subprocess of its own, stderr to ``log``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "mnbench.cli", *map(str, args)], cwd=cwd, env=env,
                            preexec_fn=sigint_as_ctrl_c, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


def stored(results: Path) -> list[dict]:
    """Rows on disk under ``results`` (every run), read as any later command would."""
    if not list(results.glob("*/rows.csv")):
        return []
    return ResultStore(results).load().to_dict("records")


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small tmpfs at ``path`` (a real full or read-only disk); the case skips where mounting fails."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> None:
    """Write into ``folder`` until its disk is full."""
    handle = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(handle, b"\0" * 4096)
    finally:
        os.close(handle)


def flipped(path: Path, offset: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def device_args(loopback, tmp_path: Path, *models: Path) -> list:
    return ["device", "--serial", loopback.serial, *models, "--benchmark-binary",
            mode_binary(tmp_path / "bin"), "--results", tmp_path / "results", *FAST_DEVICE]


def hang_started(loopback) -> bool:
    return any("hang.tflite" in event.get("command", "") for event in loopback.events("spawn"))


# ------------------------------------------------------------------------------- 1: Ctrl-C on device
def device_ctrl_c_twice(tmp_path, loopback_device, adb_home):
    models = [tiny_model(tmp_path / f"{name}.tflite") for name in ("a", "b", "c", "hang")]
    log = tmp_path / "stderr.txt"
    process = start(device_args(loopback_device, tmp_path, *models), tmp_path, log)
    try:
        wait_for(lambda: len(stored(tmp_path / "results")) >= 3 and hang_started(loopback_device), 60,
                 "three runs stored and the fourth running")
        process.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted: stopping the benchmark running on" in log.read_text(), 10,
                 "the first Ctrl-C says what it stops")
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 130
    finally:
        process.kill()
    rows = stored(tmp_path / "results")
    assert [row["model"] for row in rows[:3]] == ["a.tflite", "b.tflite", "c.tflite"]
    assert all(row["status"] == "ok" and row["avg_us"] == 12340.5 for row in rows[:3])


def device_ctrl_c_once(tmp_path, loopback_device, adb_home):
    models = [tiny_model(tmp_path / f"{name}.tflite") for name in ("a", "hang")]
    log = tmp_path / "stderr.txt"
    process = start(device_args(loopback_device, tmp_path, *models), tmp_path, log)  # --timeout: 300 s
    try:
        wait_for(lambda: hang_started(loopback_device), 60, "the second run started")
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130, log.read_text()
    finally:
        process.kill()
    assert "a.tflite" in log.read_text() and "hang.tflite" in log.read_text()
    rows = stored(tmp_path / "results")
    assert [(row["model"], row["status"]) for row in rows] == [
        ("a.tflite", "ok"), ("hang.tflite", "failed")], log.read_text()
    assert rows[1]["error"].startswith("interrupted")
    assert wait_until_no_process("hang.tflite", 10) == []
    assert not list(loopback_device.host_path("/data/local/tmp").glob("mnbench-*"))  # cleaned up


# ---------------------------------------------------------------------------------- 2: bench store
def bench_store_read_only(tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as read_only:
        code, out, err = cli("bench", model, "--results", read_only / "runs", *FAST_BENCH)
    one_line_error(code, err, 2, "cannot store results in", "Read-only file system")
    assert out == ""  # nothing was measured


def bench_store_is_a_file(tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    code, out, err = cli("bench", model, "--results", model, *FAST_BENCH)
    one_line_error(code, err, 2, "it is a file, not a folder")
    assert out == ""


def bench_store_full_before(tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        code, out, err = cli("bench", model, "--results", full / "runs", *FAST_BENCH)
    one_line_error(code, err, 2, "No space left on device")
    assert out == ""


def bench_store_fills_mid_run(tmp_path, monkeypatch):
    import device_bench.host as host

    models = [tiny_model(tmp_path / "a.tflite"), tiny_model(tmp_path / "b.tflite")]
    real_worker, calls = host.run_worker, []

    def worker_then_fill(*args, **kwargs):  # the disk fills up while the second model is measured
        calls.append(args)
        if len(calls) == 2:
            fill(tmp_path / "disk")
        return real_worker(*args, **kwargs)

    monkeypatch.setattr(host, "run_worker", worker_then_fill)
    with tmpfs(tmp_path / "disk", "128k") as disk:
        code, out, err = cli("bench", *models, "--results", disk / "runs", *FAST_BENCH)
        on_disk = stored(disk / "runs")
    one_line_error(code, err, 2, "measured but not stored", "No space left on device")
    assert "a.tflite" in out and "b.tflite" in out  # the table is printed all the same
    assert [row["model"] for row in on_disk] == ["a.tflite"]


def bench_same_name_two_folders(tmp_path):
    first, second = tiny_model(tmp_path / "x" / "m.tflite"), tiny_model(tmp_path / "y" / "m.tflite", 16)
    code, out, err = cli("bench", first, second, first, "--results", tmp_path / "runs", "--json", *FAST_BENCH)
    assert code == 0, err
    rows = stored(tmp_path / "runs")
    assert [row["model"] for row in rows] == ["m.tflite", "m.tflite"]
    assert len({row["model_sha256"] for row in rows}) == 2


def bench_ctrl_c_keeps_finished(tmp_path):
    models = [tiny_model(tmp_path / "a.tflite"), tiny_model(tmp_path / "b.tflite")]
    log = tmp_path / "stderr.txt"
    process = start(["bench", *models, "--runs", "1", "--min-secs", "2", "--results", tmp_path / "runs"],
                    tmp_path, log)
    second_worker = "device_bench.host_worker " + json.dumps({"model": str(models[1])})[:-1]  # its argv
    try:
        wait_for(lambda: pids_with(second_worker), 90, "the second model's worker started")
        for pid in pids_with(second_worker):  # paused, so Ctrl-C lands mid-run however busy the machine
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        assert [row["model"] for row in stored(tmp_path / "runs")] == ["a.tflite"]
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130, log.read_text()
    finally:
        process.kill()
        for pid in pids_with(second_worker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert [row["model"] for row in stored(tmp_path / "runs")] == ["a.tflite"]
    assert "finished run(s) are stored" in log.read_text()


# ---------------------------------------------------------------------------------- 3: export disk
EXPORT_ARGS = ["export", "--version", "v3-small", "--alpha", "0.35", "--resolution", "64", "--quant", "fp32",
               "--calib-samples", "2", "--no-verify"]


def export_full_disk(tmp_path):
    with tmpfs(tmp_path / "full", "64k") as full:
        code, _, err = cli(*EXPORT_ARGS, "--out", full)
        left = sorted(path.name for path in full.iterdir())
    one_line_error(code, err, 2, "No space left on device")
    assert left == []


def export_disk_fills_at_the_sidecar(tmp_path, monkeypatch):
    import tempfile

    import export.pipeline as pipeline

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):  # the disk is full by the time the sidecar is written
        if ".json." in kwargs.get("prefix", ""):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(pipeline.tempfile, "mkstemp", mkstemp)
    code, _, err = cli(*EXPORT_ARGS, "--out", tmp_path / "out")
    one_line_error(code, err, 2, "No space left on device")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == []  # no model without its sidecar


# -------------------------------------------------------------------------------------- 4: hangs
def parse_logcat_spaces(tmp_path):
    from device_bench.parser import parse_log

    text = "11-30 12:00:00.000  123  456 I " + " " * 20_000 + "x\nSTARTING!\n"
    started = time.monotonic()
    parse_log(text)
    assert time.monotonic() - started < 5  # was 120+ s (cubic); the figure is in results/parser_speed.md


# ------------------------------------------------------------------------------ 5: impossible figures
def parse_case(tmp_path, text: str, error: str) -> None:
    if not LOG_01.exists():
        pytest.skip(f"shared log {LOG_01} is absent")
    (tmp_path / "log.txt").write_text(text)
    code, out, err = cli("parse", tmp_path / "log.txt", "--json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["status"] == "failed" and error in row["error"], row["error"]


def parse_negative_average(tmp_path):
    text = LOG_01.read_text() if LOG_01.exists() else ""
    parse_case(tmp_path, text.replace("no stats: 137722", "no stats: -0.95"), "negative avg -0.95")


def parse_duplicated_running_line(tmp_path):
    text = LOG_01.read_text() if LOG_01.exists() else ""
    line = "Running benchmark for 1 iterations\n"
    parse_case(tmp_path, text.replace(line, line + "    " + line), "avg 137722 us is outside [min, max]")


def parse_zero_count(tmp_path):
    text = LOG_01.read_text() if LOG_01.exists() else ""
    parse_case(tmp_path, text.replace("count=50 ", "count=0 "), "count 0")


def parse_non_ascii_digits(tmp_path):
    text = LOG_01.read_text() if LOG_01.exists() else ""
    parse_case(tmp_path, text.replace("count=50 ", "count=\uff15\uff10 "), "not numbers")


def device_log_of_another_model(tmp_path, loopback_device, adb_home):
    log = "INFO: STARTING!\nINFO: Graph: [/data/local/tmp/other.tflite]\n" + _ok_tail()
    loopback_device.set_benchmark("custom", stdout=log)
    code, out, err = cli(*device_args(loopback_device, tmp_path, tiny_model(tmp_path / "m.tflite")), "--json")
    assert code == 1 and "the log is another model's: it ran '/data/local/tmp/other.tflite'" in err, err


def device_log_of_other_threads(tmp_path, loopback_device, adb_home):
    log = "INFO: STARTING!\nINFO: Num threads: [4]\n" + _ok_tail()
    loopback_device.set_benchmark("custom", stdout=log)
    code, out, err = cli(*device_args(loopback_device, tmp_path, tiny_model(tmp_path / "m.tflite")), "--json")
    assert code == 1 and "the log ran 4 threads, not the 1 requested" in err, err


def _ok_tail() -> str:
    return ("INFO: Running benchmark for at least 1 iterations\nINFO: count=1 first=9000 curr=9000 min=9000 "
            "max=9000 avg=9000 std=0\nINFO: Running benchmark for at least 3 iterations\nINFO: count=3 "
            "first=8000 curr=8000 min=7900 max=8100 avg=8000 std=80 p5=7900 median=8000 p95=8100\nINFO: "
            "Inference timings in us: Init: 100, First inference: 9000, Warmup (avg): 9000, Inference (avg): "
            "8000\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")


# ------------------------------------------------------------------------------------- 6: calibration
def calibration_16_bit_greyscale(tmp_path):
    from PIL import Image

    from export.calibration import from_folder

    gradient = np.linspace(0, 65535, 96 * 96).reshape(96, 96).astype(np.uint16)
    (tmp_path / "images").mkdir()
    Image.fromarray(gradient).save(tmp_path / "images" / "grey16.png")
    images = from_folder(tmp_path / "images", 4, 64, (0.0, 255.0)).images
    assert (images >= 254.5).mean() < 0.05 and 100 < images.mean() < 155  # was 99.7 % saturated


def calibration_decompression_bomb(tmp_path, monkeypatch, caplog):
    from PIL import Image

    from export.calibration import from_folder

    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "images" / "a_small.png")
    Image.new("L", (200, 100)).save(tmp_path / "images" / "b_huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # the 20,000-pixel image stands for 200 megapixels
    with caplog.at_level(logging.WARNING):
        calibration = from_folder(tmp_path / "images", 4, 32, (0.0, 255.0))
    assert calibration.count == 1
    assert "skipping unreadable image" in caplog.text and "b_huge.png" in caplog.text


# --------------------------------------------------------------------------- 7: exit codes and errors
def profile_corrupt_models(tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    data = model.read_bytes()
    cases = {"truncated-100": data[:100], "truncated-40": data[:40], "truncated-12": data[:12],
             "flipped-20": flipped(tiny_model(tmp_path / "f.tflite"), 20).read_bytes()}
    for name, content in cases.items():
        (tmp_path / f"{name}.tflite").write_bytes(content)
        code, _, err = cli("profile", tmp_path / f"{name}.tflite")
        one_line_error(code, err, 2)


def report_impossible_medians(tmp_path):
    from device_bench.store import row_key

    row = {"run_id": "run-a", "target": "host", "target_kind": "host", "runtime": "litert",
           "model": "m.tflite", "threads": 1, "delegate": "xnnpack", "status": "ok", "count": 3,
           "median_us": 10.0}
    for cell in ("", "nan", "-5.0", "inf", "-inf"):
        results = tmp_path / f"results{cell}"
        run_dir = ResultStore(results).write_run("run-a", [row], {row_key(row): [9.0, 10.0, 11.0]})
        text = (run_dir / "rows.csv").read_text().replace(",10.0,", f",{cell},")
        (run_dir / "rows.csv").write_text(text)
        code, _, err = cli("report", results, "--out", tmp_path / f"report{cell}")
        one_line_error(code, err, 2, "rows.csv")


def folder_given_as_model(tmp_path):
    (tmp_path / "models").mkdir()
    for command in ("bench", "profile"):
        code, _, err = cli(command, tmp_path / "models")
        one_line_error(code, err, 2, "is a folder, not a .tflite model file")


# ---------------------------------------------------------------------------- 8: models LiteRT refuses
def device_checks_models_locally(tmp_path, loopback_device, adb_home):
    good, bad = tiny_model(tmp_path / "good.tflite"), flipped(tiny_model(tmp_path / "bad.tflite"), 20)
    code, out, err = cli(*device_args(loopback_device, tmp_path, good, bad), "--json")
    rows = {row["model"]: row for row in json.loads(out)}
    assert code == 1 and rows["good.tflite"]["status"] == "ok"
    bad_row = rows["bad.tflite"]
    assert bad_row["status"] == "failed" and "LiteRT cannot load the model" in bad_row["error"]
    pushed = " ".join(json.dumps(event) for event in loopback_device.events("sync"))
    assert "good.tflite" in pushed and "bad.tflite" not in pushed


# -------------------------------------------------------------------------------------- 10: adbkey
def adbkey_private_from_the_start(tmp_path, monkeypatch):
    from adb_shell.auth import keygen as keygen_module

    from device_bench.adb_direct import load_signers

    folder, seen = tmp_path / "android", []
    real_write_public = keygen_module.write_public_keyfile

    def spy(private_path, public_path):  # called once the private key is on disk
        seen.extend((path.name, stat.S_IMODE(path.stat().st_mode)) for path in folder.iterdir()
                    if not path.name.endswith(".pub"))
        return real_write_public(private_path, public_path)

    monkeypatch.setattr(keygen_module, "write_public_keyfile", spy)
    umask = os.umask(0)
    try:
        load_signers(folder / "adbkey")
    finally:
        os.umask(umask)
    assert seen and all(mode == 0o600 for _, mode in seen), seen
    assert stat.S_IMODE((folder / "adbkey").stat().st_mode) == 0o600 and (folder / "adbkey.pub").is_file()


# ------------------------------------------------------------------------------ 12: parent death
def bench_workers_die_with_bench(tmp_path):
    model = tiny_model(tmp_path / "lonely-worker.tflite")
    process = start(["bench", model, "--runs", "1", "--min-secs", "120", "--no-store"], tmp_path,
                    tmp_path / "stderr.txt")
    try:
        wait_for(lambda: len(pids_with("lonely-worker.tflite")) >= 2, 60, "the worker process started")
        process.kill()  # SIGKILL: no handler runs in the parent
        process.wait(10)
        assert wait_until_no_process("lonely-worker.tflite", 10) == []
    finally:
        process.kill()
        for pid in pids_with("lonely-worker.tflite"):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ 13: unknown serial
def device_unknown_serial(tmp_path, adb_home, monkeypatch):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code, _, err = cli("device", "--serial", "nosuch", "--results", tmp_path / "results")
    one_line_error(code, err, 2, "no adb server or USB phone has serial 'nosuch'", "mnbench devices")
    assert "canonical" not in err and not (tmp_path / "results").exists()
    assert time.monotonic() - started < 30  # was 65 s of exporting first


FAULTS = [
    Fault(1, "Ctrl-C twice during `mnbench device`, the fourth run hanging", device_ctrl_c_twice,
          "exit 130; the three finished runs are in the store", ("loopback_device", "adb_home")),
    Fault(1, "Ctrl-C once while a run hangs (--timeout 300)", device_ctrl_c_once,
          "the device process is stopped at once; exit 130; finished run ok, running run 'interrupted'",
          ("loopback_device", "adb_home")),
    Fault(2, "`bench --results` on a read-only disk", bench_store_read_only,
          "rc 2, one line, before measuring"),
    Fault(2, "`bench --results` names a file", bench_store_is_a_file, "rc 2, one line, before measuring"),
    Fault(2, "`bench --results` on a full disk", bench_store_full_before, "rc 2, one line, before measuring"),
    Fault(2, "the disk fills while `bench` measures the second model", bench_store_fills_mid_run,
          "the table is printed; rc 2 'measured but not stored'; the first row is on disk", ("monkeypatch",)),
    Fault(2, "`bench` of two different models named m.tflite (and one twice)", bench_same_name_two_folders,
          "two rows, one per content"),
    Fault(2, "Ctrl-C during `bench`'s second model", bench_ctrl_c_keeps_finished,
          "exit 130; the first model's row is stored"),
    Fault(3, "`export` to a full disk", export_full_disk, "rc 2 'No space left on device'; nothing written"),
    Fault(3, "the disk fills between the model and its sidecar", export_disk_fills_at_the_sidecar,
          "rc 2; no model without its sidecar", ("monkeypatch",)),
    Fault(4, "a logcat line with 20,000 spaces", parse_logcat_spaces, "parsed in well under 5 s"),
    Fault(5, "Inference (avg): -0.95", parse_negative_average, "the run fails: negative avg"),
    Fault(5, "a duplicated 'Running benchmark for 1 iterations' line", parse_duplicated_running_line,
          "the run fails: avg outside [min, max]"),
    Fault(5, "count=0", parse_zero_count, "the run fails: count 0"),
    Fault(5, "full-width digits in count=", parse_non_ascii_digits, "the run fails: not numbers"),
    Fault(5, "the phone's log names another model", device_log_of_another_model, "that run fails: mismatch",
          ("loopback_device", "adb_home")),
    Fault(5, "the phone's log names another thread count", device_log_of_other_threads,
          "that run fails: mismatch", ("loopback_device", "adb_home")),
    Fault(6, "a 16-bit greyscale calibration PNG", calibration_16_bit_greyscale, "scaled, not saturated"),
    Fault(6, "a calibration PNG past PIL's decompression-bomb limit", calibration_decompression_bomb,
          "skipped with a warning", ("monkeypatch", "caplog")),
    Fault(7, "`profile` on truncated and bit-flipped models", profile_corrupt_models, "rc 2, one line each"),
    Fault(7, "`report` on rows with an empty/NaN/negative/inf/-inf median", report_impossible_medians,
          "rc 2, one line naming the file"),
    Fault(7, "a folder given as a model to bench and profile", folder_given_as_model, "rc 2 'is a folder'"),
    Fault(8, "`device` with a model LiteRT cannot load", device_checks_models_locally,
          "that model's run fails with LiteRT's reason, unpushed; the other runs",
          ("loopback_device", "adb_home")),
    Fault(10, "~/.android/adbkey created under umask 000", adbkey_private_from_the_start,
          "mode 0600 from its first byte", ("monkeypatch",)),
    Fault(12, "SIGKILL of `bench` while a worker measures", bench_workers_die_with_bench,
          "the worker dies with it"),
    Fault(13, "`device --serial nosuch`, no model, no adb server", device_unknown_serial,
          "rc 2 at once, naming `mnbench devices`; nothing exported", ("adb_home", "monkeypatch")),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: f"{fault.item}-{fault.action.__name__}")
def test_fault(fault: Fault, request, tmp_path):
    fault.action(tmp_path, **{name: request.getfixturevalue(name) for name in fault.fixtures})
