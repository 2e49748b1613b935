"""AdbServerTransport and connect.py against a scripted smart-socket stub and Google's adb server.

The stub tests always run; the Google adb tests skip when the ``adb`` package is not installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from device_bench.adb_direct import AdbDirectTransport
from device_bench.adb_server import AdbServer, AdbServerTransport, list_devices, parse_devices_l, server_port
from device_bench.connect import list_reachable, open_transport, parse_tcp_serial
from device_bench.errors import (AdbServerUnavailable, CommandTimeout, ConnectionLost, DeviceNotFound,
                                 DeviceOffline, DeviceUnauthorized, TransferFailed)
from device_bench.transport import Completed, DeviceEntry, join
from device_bench.errors import DeviceError
from tests.loopback_adb.fixtures import (adb_key, free_port, google_adb, loopback_device,  # noqa: F401
                                         loopback_factory, served_loopback, wait_until_no_process)

pytestmark = pytest.mark.timeout(60)
TMP = "/data/local/tmp"
DEVICES_L = (
    "127.0.0.1:40001        device product:loopback_phone model:Loopback_Phone_7 device:loopback "
    "transport_id:1\n"
    "0123456789ABCDEF       unauthorized usb:1-1 transport_id:2\n"
    "emulator-5554          offline transport_id:3\n"
    "ZX1G22                 no permissions (user in plugdev group; are your udev rules wrong?); "
    "see [http://developer.android.com/tools/device.html] usb:1-2 transport_id:4\n")


# ------------------------------------------------------------------------------------------ no adb needed
def test_parse_devices_l():
    assert parse_devices_l(DEVICES_L) == [
        DeviceEntry("127.0.0.1:40001", "device", "Loopback_Phone_7", "loopback_phone", 1),
        DeviceEntry("0123456789ABCDEF", "unauthorized", "", "", 2),
        DeviceEntry("emulator-5554", "offline", "", "", 3),
        DeviceEntry("ZX1G22", "no permissions (user in plugdev group; are your udev rules wrong?); "
                              "see [http://developer.android.com/tools/device.html]", "", "", 4)]
    assert parse_devices_l("") == []


def test_server_port_from_environment(monkeypatch):
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT", raising=False)
    assert server_port() == 5037
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "41234")
    assert server_port() == AdbServer().port == 41234
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "adb")
    with pytest.raises(DeviceError, match="ANDROID_ADB_SERVER_PORT"):
        server_port()


def test_parse_tcp_serial():
    assert parse_tcp_serial("192.168.1.7:5555") == ("192.168.1.7", 5555)
    assert parse_tcp_serial("[::1]:40001") == ("::1", 40001)
    assert parse_tcp_serial("emulator-5554") is None and parse_tcp_serial("usb:1-1") is None


def test_no_server_is_not_an_error_for_listing():
    server = AdbServer(port=free_port(), timeout_s=1)
    assert not server.is_running()
    assert list_reachable(server=server, include_usb=False) == []
    with pytest.raises(AdbServerUnavailable, match="no adb server"):
        list_devices(server)


@contextlib.contextmanager
def scripted_server(answers: dict[str, bytes]):
    """A smart-socket stub: each request gets ``answers[request]`` (default FAIL) and the socket closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                while True:
                    try:
                        length = int(conn.recv(4, socket.MSG_WAITALL), 16)
                        request = conn.recv(length, socket.MSG_WAITALL).decode()
                    except (ValueError, OSError):
                        break
                    answer = answers.get(request, b"FAIL0007unknown")
                    conn.sendall(answer)
                    if not answer.startswith(b"OKAY") or not request.startswith("host:transport:"):
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield AdbServer(port=listener.getsockname()[1], timeout_s=2)
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def _string(text: str) -> bytes:
    return b"%04x" % len(text.encode()) + text.encode()


def test_server_fail_messages_become_typed_errors():
    answers = {
        "host:transport:UNAUTH": b"FAIL" + _string("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS "
                                                   "is not set\nTry 'adb kill-server' if that seems wrong."),
        "host:transport:OFF": b"FAIL" + _string("device offline"),
        "host:transport:GONE": b"FAIL" + _string("device 'GONE' not found"),
        "host:devices-l": b"OKAY" + _string(DEVICES_L),
    }
    with scripted_server(answers) as server:
        cases = (("UNAUTH", DeviceUnauthorized), ("OFF", DeviceOffline), ("GONE", DeviceNotFound))
        for serial, error in cases:
            with pytest.raises(error) as raised:
                AdbServerTransport(serial, server=server).pull("/x", Path("unused"))
            assert "\n" not in str(raised.value) and serial in str(raised.value)
        with pytest.raises(DeviceUnauthorized, match="Allow USB debugging"):
            open_transport("0123456789ABCDEF", server=server)
        with pytest.raises(DeviceOffline):
            open_transport("emulator-5554", server=server)
        with pytest.raises(DeviceNotFound, match="lists 127.0.0.1:40001 \\(device\\)"):
            open_transport("NOT-THERE", server=server)
        assert isinstance(open_transport("127.0.0.1:40001", server=server), AdbServerTransport)
        assert [entry.state for entry in list_reachable(server=server)] == [
            "device", "unauthorized", "offline", parse_devices_l(DEVICES_L)[3].state]


def test_unlisted_host_port_goes_direct(loopback_device, adb_key):
    transport = open_transport(loopback_device.serial, server=AdbServer(port=free_port(), timeout_s=1),
                               key_path=adb_key, auth_timeout_s=3)
    assert isinstance(transport, AdbDirectTransport)
    assert transport.shell("echo direct", timeout_s=5).stdout == "direct\n"
    transport.close()


def test_without_server_a_plain_serial_tries_usb(adb_key):
    pytest.importorskip("usb1", reason="needs adb-shell[usb] (libusb1) to scan USB")
    server = AdbServer(port=free_port(), timeout_s=1)
    with pytest.raises(DeviceError, match="no adb server answers"):
        open_transport("R58M123ABC", server=server, key_path=adb_key)


def test_missing_libusb_gives_an_install_hint(monkeypatch, adb_key):
    monkeypatch.setitem(sys.modules, "adb_shell.transport.usb_transport", None)
    with pytest.raises(DeviceError, match=r"pip install 'adb-shell\[usb\]'"):
        open_transport("usb:", server=AdbServer(port=free_port(), timeout_s=1), key_path=adb_key)


# ------------------------------------------------------------------------------------ through Google's adb
def test_list_devices_and_features(google_adb, served_loopback):
    server = AdbServer(port=google_adb.server_port)
    entry = next(item for item in server.list_devices() if item.serial == served_loopback.serial)
    assert (entry.state, entry.model, entry.product) == ("device", "Loopback_Phone_7", "loopback_phone")
    assert isinstance(entry.transport_id, int)
    assert "shell_v2" in server.features(served_loopback.serial)


def test_env_port_selects_the_server_and_shell_v2_statuses(google_adb, served_loopback, monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(google_adb.server_port))
    transport = open_transport(served_loopback.serial)
    assert isinstance(transport, AdbServerTransport)
    for cmd, returncode in (("true", 0), ("false", 1), ("mnbench_no_such_program", 127), ("exit 7", 7)):
        assert transport.shell(cmd, timeout_s=5).returncode == returncode
    both = transport.shell("echo out; echo err >&2; exit 3", timeout_s=5)
    assert both == Completed("echo out; echo err >&2; exit 3", 3, "out\n", "err\n")
    words = ["a b", "$HOME", "it's", "semi;colon", "ünï 日本", ""]
    assert transport.shell(join(["printf", "%s\\n", *words]), timeout_s=5).stdout == "".join(
        word + "\n" for word in words)


def test_push_pull_3mb_through_the_server(google_adb, served_loopback, tmp_path):
    transport = AdbServerTransport(served_loopback.serial, server=AdbServer(port=google_adb.server_port))
    local = tmp_path / "model.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    transport.push(local, f"{TMP}/srv/model.bin")
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    on_device = served_loopback.host_path(f"{TMP}/srv/model.bin")
    assert hashlib.sha256(on_device.read_bytes()).hexdigest() == digest
    transport.pull(f"{TMP}/srv/model.bin", tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    with pytest.raises(TransferFailed, match="No such file"):
        transport.pull(f"{TMP}/srv/missing", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_timeout_through_the_server_leaves_no_process(google_adb, served_loopback):
    transport = AdbServerTransport(served_loopback.serial, server=AdbServer(port=google_adb.server_port))
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        transport.shell("sleep 27.1828", timeout_s=1)
    assert time.monotonic() - started < 10  # not the 27 s sleep
    assert wait_until_no_process("sleep 27.1828") == []


@contextlib.contextmanager
def served(google_adb, device, want: str = "device"):
    state = google_adb.connect(device.serial, want=want)
    assert state == want, f"adb shows {device.serial} as {state!r}, expected {want!r}"
    try:
        yield AdbServer(port=google_adb.server_port)
    finally:
        google_adb.disconnect(device.serial)


def test_legacy_shell_fallback_uses_the_exit_marker(google_adb, loopback_factory):
    device = loopback_factory(features="")
    with served(google_adb, device) as server:
        transport = AdbServerTransport(device.serial, server=server)
        assert transport.features == frozenset()
        result = transport.shell("echo out; echo err >&2; exit 4", timeout_s=5)
        assert result == Completed("echo out; echo err >&2; exit 4", 4, "out\nerr\n", "")


def test_unauthorized_through_the_server(google_adb, loopback_factory):
    device = loopback_factory(reject_auth=True)
    with served(google_adb, device, want="unauthorized") as server:
        states = [entry.state for entry in server.list_devices() if entry.serial == device.serial]
        assert states == ["unauthorized"]
        with pytest.raises(DeviceUnauthorized) as raised:
            open_transport(device.serial, server=server)
        assert "\n" not in str(raised.value)


def test_drops_through_the_server_are_connection_lost(google_adb, loopback_factory, tmp_path):
    device = loopback_factory(drop_after_push_bytes=1_000_000, drop_on_shell="DROP-HERE")
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    with served(google_adb, device) as server:
        transport = AdbServerTransport(device.serial, server=server, io_timeout_s=5)
        with pytest.raises(ConnectionLost, match="push to"):
            transport.push(local, f"{TMP}/big.bin")
    with served(google_adb, device) as server:
        transport = AdbServerTransport(device.serial, server=server)
        with pytest.raises(ConnectionLost):
            transport.shell("echo DROP-HERE; sleep 6.5; echo never", timeout_s=10)
    assert wait_until_no_process("sleep 6.5") == []
