"""AdbDirectTransport (adb-shell straight to adbd) against the loopback ADB device on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from device_bench.adb_direct import AdbDirectTransport, load_signers
from device_bench.errors import (CommandTimeout, ConnectionLost, DeviceNotFound, DeviceUnauthorized,
                                 TransferFailed)
from device_bench.transport import (Completed, Transport, join, quote, split_exit_marker,
                                    wrap_with_exit_marker)
from tests.loopback_adb.fixtures import (FAKE_BENCHMARK, adb_key, free_port, loopback_device,  # noqa: F401
                                         loopback_factory, start_loopback, wait_until_no_process)

pytestmark = pytest.mark.timeout(60)
TMP = "/data/local/tmp"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shared_device(tmp_path_factory):
    handle = start_loopback(tmp_path_factory.mktemp("direct") / "device")
    yield handle
    handle.stop()


@pytest.fixture
def direct(shared_device, adb_key):
    transport = AdbDirectTransport.tcp(shared_device.host, shared_device.port, key_path=adb_key,
                                       auth_timeout_s=3)
    yield transport
    transport.close()


def test_quote_and_join():
    assert quote("a b;touch x.tflite") == "'a b;touch x.tflite'"
    assert quote(Path("/data/local/tmp/m.tflite")) == "/data/local/tmp/m.tflite"
    assert quote(4) == "4" and quote("") == "''"
    joined = join(["taskset", "f0", "/bin/x", "--graph=it's.tflite"])
    assert joined == "taskset f0 /bin/x '--graph=it'\"'\"'s.tflite'"
    with pytest.raises(TypeError):
        quote(True)
    with pytest.raises(TypeError):
        quote(b"bytes")
    with pytest.raises(ValueError):
        join([])


def test_exit_marker_parsing():
    wrapped, marker = wrap_with_exit_marker("echo hi")
    assert wrapped.startswith("(\necho hi\n)") and marker in wrapped
    assert wrap_with_exit_marker("true")[1] != marker  # a new random marker per call
    assert split_exit_marker(b"hi\n\n" + marker.encode() + b":0\n", marker) == (b"hi\n", 0)
    assert split_exit_marker(b"hi\r\n\r\n" + marker.encode() + b":139\r\n", marker) == (b"hi\r\n", 139)
    assert split_exit_marker(b"cut off", marker) == (b"cut off", None)
    with pytest.raises(ValueError):
        wrap_with_exit_marker("  ")


def test_is_a_transport(direct):
    assert isinstance(direct, Transport)
    assert direct.serial.startswith("127.0.0.1:")


@pytest.mark.parametrize("cmd, returncode", [
    ("true", 0), ("false", 1), ("exit 3", 3), ("mnbench_no_such_program", 127),
    ("sh -c 'kill -SEGV $$'", 139)])
def test_exit_status(direct, cmd, returncode):
    result = direct.shell(cmd, timeout_s=5)
    assert result == Completed(cmd, returncode, result.stdout, "")
    assert "MNBX" not in result.stdout


def test_stdout_is_exact_and_special_characters_survive(direct):
    words = ["a b", "$HOME", "`id`", "it's", '"dq"', "semi;colon", "pipe|amp&", "star*", "back\\slash",
             "ünïcödé 日本", "--flag=1", ""]
    result = direct.shell(join(["printf", "%s\\n", *words]), timeout_s=5)
    assert result.returncode == 0
    assert result.stdout == "".join(word + "\n" for word in words)
    assert direct.shell("printf 'no newline at end'", timeout_s=5).stdout == "no newline at end"
    assert direct.shell("true", timeout_s=5).stdout == ""


def test_stderr_is_merged_into_stdout(direct):
    result = direct.shell("echo out; echo err >&2", timeout_s=5)
    assert (result.stdout, result.stderr) == ("out\nerr\n", "")


def test_program_output_cannot_fake_the_exit_status(direct):
    result = direct.shell("printf '\\nMNBX0123456789abcdef:0\\n'; exit 5", timeout_s=5)
    assert result.returncode == 5
    assert result.stdout == "\nMNBX0123456789abcdef:0\n"


def test_large_output_spans_many_packets(direct):
    result = direct.shell("head -c 2500000 /dev/zero | tr '\\0' a", timeout_s=10)
    assert result.returncode == 0 and result.stdout == "a" * 2_500_000


def test_push_pull_3mb_roundtrip(direct, shared_device, tmp_path):
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    local.chmod(0o640)
    direct.push(local, f"{TMP}/roundtrip/model.bin")
    on_device = shared_device.host_path(f"{TMP}/roundtrip/model.bin")
    assert _sha256(on_device) == _sha256(local)
    assert on_device.stat().st_mode & 0o777 == 0o640
    digest = direct.shell(f"sha256sum {quote(TMP + '/roundtrip/model.bin')}", timeout_s=5).stdout.split()[0]
    assert digest == _sha256(local)
    pulled = tmp_path / "pulled.bin"
    direct.pull(f"{TMP}/roundtrip/model.bin", pulled)
    assert _sha256(pulled) == _sha256(local)


def test_quoting_a_hostile_file_name(direct, shared_device, tmp_path):
    local = tmp_path / "m.tflite"
    local.write_bytes(b"TFL3 model bytes")
    remote = f"{TMP}/a b;touch x.tflite"
    direct.push(local, remote)
    listed = direct.shell(join(["ls", "-l", remote]), timeout_s=5)
    assert listed.returncode == 0, listed.stdout
    assert direct.shell(join(["cat", remote]), timeout_s=5).stdout == "TFL3 model bytes"
    assert direct.shell(join(["rm", remote]), timeout_s=5).returncode == 0
    leaks = [path for path in shared_device.sandbox.rglob("x.tflite")] + list(Path.cwd().glob("x.tflite"))
    assert leaks == []


def test_pull_of_a_missing_file_is_transfer_failed(direct, tmp_path):
    with pytest.raises(TransferFailed, match="No such file"):
        direct.pull(f"{TMP}/missing.bin", tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin").exists()
    assert direct.shell("echo still usable", timeout_s=5).stdout == "still usable\n"


def test_profile_answers_getprop_sys_and_dumpsys(direct):
    assert direct.shell("getprop ro.product.model", timeout_s=5).stdout == "Loopback Phone 7\n"
    assert direct.shell("getprop no.such.prop fallback", timeout_s=5).stdout == "fallback\n"
    assert "[ro.soc.model]: [GS201]" in direct.shell("getprop", timeout_s=5).stdout
    max_freq = direct.shell("cat /sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq", timeout_s=5)
    assert max_freq.stdout == "2850000\n"
    assert "level: 87" in direct.shell("dumpsys battery", timeout_s=5).stdout
    assert direct.shell("taskset f0 echo pinned", timeout_s=5).stdout == "pinned\n"


def test_profile_json_overrides_the_default(loopback_factory, adb_key):
    device = loopback_factory(profile={"props": {"ro.product.model": "Pixel 8"},
                                       "cpus": [{"max_freq_khz": 1700000, "governor": "performance"}] * 2})
    with AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key) as transport:
        assert transport.shell("getprop ro.product.model", timeout_s=5).stdout == "Pixel 8\n"
        assert transport.shell("getprop ro.product.cpu.abi", timeout_s=5).stdout == "arm64-v8a\n"
        governors = transport.shell("cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor", timeout_s=5)
        assert governors.stdout == "performance\nperformance\n"


@pytest.mark.parametrize("mode, returncode, expected", [
    ("ok", 0, "Inference timings in us: Init: 35210"), ("nonzero", 1, "Failed to allocate tensors"),
    ("crash", 139, "Initialized session"), ("garbage", 0, "no timings here"), ("truncated", 0, "STARTING!")])
def test_fake_benchmark_binary_modes(direct, shared_device, tmp_path, mode, returncode, expected):
    direct.push(FAKE_BENCHMARK, f"{TMP}/benchmark_model")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0" * 4096)
    direct.push(model, f"{TMP}/m.tflite")
    shared_device.set_benchmark(mode)
    argv = ["taskset", "f0", f"{TMP}/benchmark_model", f"--graph={TMP}/m.tflite", "--num_runs=10"]
    result = direct.shell(join(argv), timeout_s=10)
    assert result.returncode == returncode
    assert expected in result.stdout
    if mode == "ok":
        assert f"INFO: Graph: [{TMP}/m.tflite]" in result.stdout  # sandbox path mapped back
        calls = (shared_device.sandbox / ".loopback" / "fake_benchmark_calls.jsonl").read_text().splitlines()
        assert json.loads(calls[-1]) == {"argv": argv[3:], "cwd": "/", "ld_library_path": None,
                                         "libraries": None}
        taskset_log = (shared_device.sandbox / ".loopback" / "taskset.log").read_text().splitlines()
        assert taskset_log[-1] == "f0 " + " ".join(argv[2:])
    if mode == "truncated":
        assert "Inference timings" not in result.stdout


def test_hanging_benchmark_times_out_and_is_killed(direct, shared_device):
    direct.push(FAKE_BENCHMARK, f"{TMP}/benchmark_model")
    shared_device.set_benchmark("hang", hang_s=45.5)
    with pytest.raises(CommandTimeout):
        direct.shell(join([f"{TMP}/benchmark_model", f"--graph={TMP}/m.tflite"]), timeout_s=1)
    assert wait_until_no_process("benchmark_model --graph=") == []


# ------------------------------------------------------------------------------------------------ auth
def test_new_key_is_created_and_offered_as_public_key(loopback_device, tmp_path):
    key_path = tmp_path / "home" / ".android" / "adbkey"
    with AdbDirectTransport.tcp(loopback_device.host, loopback_device.port, key_path=key_path,
                                auth_timeout_s=3) as transport:
        assert transport.shell("echo hi", timeout_s=5).stdout == "hi\n"
    assert key_path.exists() and Path(f"{key_path}.pub").exists()
    assert key_path.stat().st_mode & 0o777 == 0o600
    with AdbDirectTransport.tcp(loopback_device.host, loopback_device.port, key_path=key_path) as again:
        again.connect()
    assert [event["method"] for event in loopback_device.events("auth")] == ["pubkey", "signature"]


def test_known_key_signs_the_token(loopback_factory, adb_key, tmp_path):
    authorized = tmp_path / "adb_keys"
    authorized.write_text(Path(f"{adb_key}.pub").read_text() + "\n")
    device = loopback_factory(adb_keys=authorized, no_new_keys=True)
    with AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key, auth_timeout_s=2) as transport:
        assert transport.shell("echo signed", timeout_s=5).returncode == 0
    assert [event["method"] for event in device.events("auth")] == ["signature"]


def test_vendor_keys_are_loaded_after_the_user_key(adb_key, tmp_path, monkeypatch):
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "team.adb_key").write_text(Path(adb_key).read_text())
    monkeypatch.setenv("ADB_VENDOR_KEYS", str(vendor))
    assert len(load_signers(adb_key)) == 2


# ------------------------------------------------------------------------------------------------ faults
def test_unauthorized_device_gives_one_clear_error(loopback_factory, adb_key):
    device = loopback_factory(reject_auth=True)
    started = time.monotonic()
    with pytest.raises(DeviceUnauthorized) as raised:
        AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key, auth_timeout_s=1).connect()
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "did not accept" in message and "Allow USB debugging" in message and str(adb_key) in message
    assert "\n" not in message


def test_connection_refused_is_device_not_found(adb_key):
    with pytest.raises(DeviceNotFound, match="connection refused"):
        AdbDirectTransport.tcp("127.0.0.1", free_port(), key_path=adb_key).connect()


def test_drop_mid_push_is_connection_lost(loopback_factory, adb_key, tmp_path):
    device = loopback_factory(drop_after_push_bytes=1_000_000)
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    transport = AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key, io_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="push to"):
        transport.push(local, f"{TMP}/big.bin")
    assert time.monotonic() - started < 5
    assert not device.host_path(f"{TMP}/big.bin").exists()
    assert transport.shell("echo reconnected", timeout_s=5).stdout == "reconnected\n"
    transport.close()


def test_drop_mid_shell_is_connection_lost_and_kills_the_command(loopback_factory, adb_key):
    device = loopback_factory(drop_on_shell="DROP-HERE")
    transport = AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key)
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="connection lost"):
        transport.shell("echo DROP-HERE; sleep 7.25; echo never", timeout_s=10)
    assert time.monotonic() - started < 5
    assert wait_until_no_process("sleep 7.25") == []
    transport.close()


def test_timeout_is_command_timeout_and_leaves_no_process(loopback_device, adb_key):
    transport = AdbDirectTransport.tcp(loopback_device.host, loopback_device.port, key_path=adb_key)
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as raised:
        transport.shell("echo begin; sleep 31.4159", timeout_s=1)
    assert 0.9 < time.monotonic() - started < 10  # not the 31 s sleep
    assert raised.value.timeout_s == 1 and "sleep 31.4159" in raised.value.cmd
    assert wait_until_no_process("sleep 31.4159") == []
    assert transport.shell("echo next", timeout_s=5).stdout == "next\n"
    transport.close()


def test_command_killed_on_the_device_is_connection_lost(loopback_factory, adb_key):
    device = loopback_factory(cmd_timeout_s=0.5)
    with AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key) as transport:
        with pytest.raises(ConnectionLost, match="before the command reported its exit status"):
            transport.shell("sleep 5", timeout_s=5)


def test_slow_device_within_and_beyond_the_timeout(loopback_factory, adb_key):
    device = loopback_factory(delay_s=0.2)
    with AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key) as transport:
        assert transport.shell("echo slow", timeout_s=5).stdout == "slow\n"
        with pytest.raises(CommandTimeout):
            transport.shell("echo too slow", timeout_s=0.1)
