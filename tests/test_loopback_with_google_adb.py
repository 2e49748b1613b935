"""Cross-check the loopback ADB device with Google's own adb (Debian package ``adb``; skipped if missing).

The adb server is private: its own HOME (so ~/.android/adbkey is a fresh key) and a random
ANDROID_ADB_SERVER_PORT; devices are disconnected and the server killed at teardown.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from tests.loopback_adb.fixtures import (google_adb, loopback_device, loopback_factory,  # noqa: F401
                                         served_loopback, wait_until_no_process)

pytestmark = pytest.mark.timeout(60)
TMP = "/data/local/tmp"


def test_connect_reaches_device_state_and_key_is_private(google_adb, served_loopback):
    assert google_adb.run("-s", served_loopback.serial, "get-state").stdout.strip() == "device"
    assert (google_adb.home / ".android" / "adbkey").exists()
    methods = [event["method"] for event in served_loopback.events("auth")]
    assert methods[-1] == "pubkey"  # a fresh adb key is offered, then accepted like tapping 'Allow'
    banners = [event["banner"] for event in served_loopback.events("cnxn")]
    assert "shell_v2" in banners[-1]  # adb 29 advertises its features in the host banner


def test_devices_l_shows_the_banner(google_adb, served_loopback):
    listing = google_adb.run("devices", "-l").stdout
    line = next(line for line in listing.splitlines() if line.startswith(served_loopback.serial))
    assert "device product:loopback_phone model:Loopback_Phone_7 device:loopback" in line


@pytest.mark.parametrize("cmd, returncode", [("true", 0), ("false", 1), ("mnbench_no_such_program", 127),
                                             ("exit 42", 42), ("sh -c 'kill -SEGV $$'", 139)])
def test_adb_shell_exit_code(google_adb, served_loopback, cmd, returncode):
    assert google_adb.run("-s", served_loopback.serial, "shell", cmd).returncode == returncode


def test_adb_shell_v2_separates_stdout_and_stderr(google_adb, served_loopback):
    result = google_adb.run("-s", served_loopback.serial, "shell", "echo out; echo err >&2")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    model = google_adb.run("-s", served_loopback.serial, "shell", "getprop", "ro.product.model").stdout
    assert model == "Loopback Phone 7\n"
    opened = [event["service"] for event in served_loopback.events("open")]
    assert any(service.startswith("shell,v2,") for service in opened)


def test_adb_push_pull_sha256(google_adb, served_loopback, tmp_path):
    local = tmp_path / "model.tflite"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    pushed = google_adb.run("-s", served_loopback.serial, "push", str(local), f"{TMP}/new/dir/model.tflite")
    assert pushed.returncode == 0, pushed.stderr
    on_device = served_loopback.host_path(f"{TMP}/new/dir/model.tflite")  # fixed_push_mkdir made new/dir
    assert hashlib.sha256(on_device.read_bytes()).hexdigest() == digest
    remote_sum = google_adb.run("-s", served_loopback.serial, "shell", "sha256sum",
                                f"{TMP}/new/dir/model.tflite")
    assert remote_sum.stdout.split()[0] == digest
    pulled = tmp_path / "pulled.tflite"
    assert google_adb.run("-s", served_loopback.serial, "pull", f"{TMP}/new/dir/model.tflite",
                          str(pulled)).returncode == 0
    assert hashlib.sha256(pulled.read_bytes()).hexdigest() == digest
    requests = [event["request"] for event in served_loopback.events("sync")]
    assert "SEND" in requests and "RECV" in requests and "STA2" in requests


def test_interrupted_adb_shell_leaves_no_process(google_adb, served_loopback):
    client = subprocess.Popen(["adb", "-s", served_loopback.serial, "shell", "sleep 23.456 | cat"],
                              env=google_adb.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not served_loopback.events("spawn") or not any(
            "23.456" in event["command"] for event in served_loopback.events("spawn")):
        assert time.monotonic() < deadline, "the command never started on the device"
        time.sleep(0.05)
    client.kill()
    client.wait(5)
    assert wait_until_no_process("sleep 23.456") == []


def test_unauthorized_device(google_adb, loopback_factory):
    device = loopback_factory(reject_auth=True)
    try:
        assert google_adb.connect(device.serial, want="unauthorized") == "unauthorized"
        result = google_adb.run("-s", device.serial, "shell", "true")
        assert result.returncode != 0 and "unauthorized" in result.stderr
        assert [event["method"] for event in device.events("auth")][-1] == "rejected"
    finally:
        google_adb.disconnect(device.serial)


def test_device_without_features_gets_legacy_shell_and_stat_v1(google_adb, loopback_factory, tmp_path):
    device = loopback_factory(features="")
    try:
        assert google_adb.connect(device.serial) == "device"
        result = google_adb.run("-s", device.serial, "shell", "echo out; echo err >&2")
        assert result.stdout == "out\nerr\n"  # legacy shell merges stderr
        local = tmp_path / "small.bin"
        local.write_bytes(b"x" * 1000)
        assert google_adb.run("-s", device.serial, "push", str(local), f"{TMP}/small.bin").returncode == 0
        services = [event["service"] for event in device.events("open")]
        assert any(service.startswith("shell:") for service in services)
        assert not any(service.startswith("shell,v2") for service in services)
        assert "STAT" in [event["request"] for event in device.events("sync")]
    finally:
        google_adb.disconnect(device.serial)
