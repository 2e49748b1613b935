"""Pytest fixtures for the loopback ADB device and for Google's ``adb`` server.

Import them into a test module or ``tests/conftest.py``::

    from tests.loopback_adb.fixtures import (  # noqa: F401
        adb_key, google_adb, loopback_device, loopback_factory)

``loopback_device`` yields a :class:`LoopbackHandle`; it unpacks as ``host, port, sandbox = loopback_device``
and also has ``serial``, ``events()``, ``host_path()`` and ``set_benchmark()``. The device runs as a
subprocess (``python -m tests.loopback_adb``) on a free high port (never 5555-5585) and is stopped, with
every command it started, at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

__all__ = ["FAKE_BENCHMARK", "GoogleAdb", "LoopbackHandle", "adb_home", "adb_key", "free_port", "google_adb",
           "loopback_device", "loopback_factory", "pids_with", "served_loopback", "set_fake_benchmark",
           "start_loopback", "wait_until_no_process"]

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_BENCHMARK = Path(__file__).with_name("fake_benchmark_model.py")
STARTUP_TIMEOUT_S = 10.0
_RESERVED_PORTS = range(5555, 5586)


def set_fake_benchmark(sandbox: Path, mode: str = "ok", **options: Any) -> None:
    """Choose what the pushed fake ``benchmark_model`` does (see ``fake_benchmark_model.py``)."""
    (Path(sandbox) / ".loopback" / "fake_benchmark.json").write_text(json.dumps({"mode": mode, **options}))


@dataclass
class LoopbackHandle:
    """A running loopback device; iterates as ``(host, port, sandbox)``."""

    host: str
    port: int
    sandbox: Path
    process: subprocess.Popen = field(repr=False)
    log_path: Path = field(repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.host, self.port, self.sandbox))

    @property
    def serial(self) -> str:
        """``host:port``, the serial adb and :func:`device_bench.connect.open_transport` use."""
        return f"{self.host}:{self.port}"

    def host_path(self, device_path: str) -> Path:
        """Where a device path lives in the sandbox."""
        return self.sandbox / device_path.lstrip("/")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The device's event log (cnxn, auth, open, spawn, exit, killed, sync, drop, disconnect)."""
        path = self.sandbox / ".loopback" / "events.jsonl"
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [event for event in events if name is None or event["event"] == name]

    def set_benchmark(self, mode: str = "ok", **options: Any) -> None:
        """See :func:`set_fake_benchmark`."""
        set_fake_benchmark(self.sandbox, mode, **options)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; the device kills its commands' process groups on the way out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_loopback(workdir: Path, *, profile: dict[str, Any] | None = None, adb_keys: Path | None = None,
                   no_auth: bool = False, no_new_keys: bool = False, reject_auth: bool = False,
                   features: str | None = None, cmd_timeout_s: float | None = None,
                   drop_after_push_bytes: int | None = None, drop_on_shell: str | None = None,
                   delay_s: float = 0.0) -> LoopbackHandle:
    """Start ``python -m tests.loopback_adb`` with its sandbox under workdir and wait for its port.

    Raises:
        RuntimeError: the device did not report a port within STARTUP_TIMEOUT_S.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox, port_file, log_path = workdir / "sandbox", workdir / "port", workdir / "device.log"
    argv = [sys.executable, "-m", "tests.loopback_adb", "--port", "0", "--port-file", str(port_file),
            "--sandbox", str(sandbox)]
    if profile is not None:
        (workdir / "profile.json").write_text(json.dumps(profile))
        argv += ["--profile", str(workdir / "profile.json")]
    options = {"--adb-keys": adb_keys, "--features": features, "--cmd-timeout-s": cmd_timeout_s,
               "--drop-after-push-bytes": drop_after_push_bytes, "--drop-on-shell": drop_on_shell,
               "--delay-s": delay_s or None}
    argv += [item for flag, value in options.items() if value is not None for item in (flag, str(value))]
    argv += [flag for flag, on in (("--no-auth", no_auth), ("--no-new-keys", no_new_keys),
                                   ("--reject-auth", reject_auth)) if on]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(5)
            raise RuntimeError(f"loopback device did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.02)
    return LoopbackHandle("127.0.0.1", int(port_file.read_text()), sandbox, process, log_path)


@pytest.fixture
def loopback_device(tmp_path: Path) -> Iterator[LoopbackHandle]:
    """A loopback device that accepts any new key (like tapping 'Allow'); stopped at teardown."""
    handle = start_loopback(tmp_path / "loopback")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def loopback_factory(tmp_path: Path) -> Iterator[Callable[..., LoopbackHandle]]:
    """``loopback_factory(**knobs)`` starts more devices (faults, profiles); all stopped at teardown."""
    handles: list[LoopbackHandle] = []

    def start(**knobs: Any) -> LoopbackHandle:
        handle = start_loopback(tmp_path / f"loopback{len(handles)}", **knobs)
        handles.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in handles:
            handle.stop()


@pytest.fixture(scope="session")
def adb_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ADB key pair (``adbkey`` + ``adbkey.pub``) for the session; never the user's ~/.android."""
    from adb_shell.auth.keygen import keygen

    path = tmp_path_factory.mktemp("adbkey") / "adbkey"
    keygen(str(path))
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 outside 5555-5585 and 5037."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _RESERVED_PORTS and port != 5037:
            return port


class GoogleAdb:
    """Google's adb client/server isolated by a private HOME and ANDROID_ADB_SERVER_PORT."""

    def __init__(self, home: Path, server_port: int) -> None:
        self.home, self.server_port = home, server_port
        private = ("ANDROID_SDK_HOME", "ANDROID_USER_HOME", "ADB_VENDOR_KEYS", "ANDROID_SERIAL")
        self.env = {key: value for key, value in os.environ.items() if key not in private}
        self.env.update(HOME=str(home), ANDROID_ADB_SERVER_PORT=str(server_port))
        self._connected: set[str] = set()

    def run(self, *args: str, timeout_s: float = 20.0) -> subprocess.CompletedProcess:
        """Run ``adb <args>`` (stdin from /dev/null, so shell v2 closes stdin at once)."""
        return subprocess.run(["adb", *args], env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout_s)

    def connect(self, serial: str, want: str = "device", timeout_s: float = 10.0) -> str:
        """``adb connect`` then poll ``get-state`` (connect's output is no proof of a handshake)."""
        self._connected.add(serial)
        self.run("connect", serial)
        deadline, state = time.monotonic() + timeout_s, ""
        while time.monotonic() < deadline:
            if want == "device":
                state = self.run("-s", serial, "get-state", timeout_s=5).stdout.strip()
            else:
                state = self.state(serial)
            if state == want:
                return state
            time.sleep(0.1)
        return state

    def state(self, serial: str) -> str:
        """The state ``adb devices`` shows (``get-state`` prints only ``device``, errors go to stderr)."""
        for line in self.run("devices", timeout_s=5).stdout.splitlines()[1:]:
            name, _, state = line.partition("\t")
            if name == serial:
                return state.strip()
        return ""

    def disconnect(self, serial: str) -> None:
        self._connected.discard(serial)
        self.run("disconnect", serial, timeout_s=10)

    def stop(self) -> None:
        for serial in list(self._connected):
            self.disconnect(serial)
        self.run("kill-server", timeout_s=10)


@pytest.fixture(scope="module")
def google_adb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoogleAdb]:
    """A private Google adb server (module scope); skipped when the ``adb`` package is not installed."""
    if shutil.which("adb") is None:
        pytest.skip("Google's adb is not installed (Debian/Ubuntu: apt-get install -y adb)")
    home = tmp_path_factory.mktemp("adbhome")
    adb = GoogleAdb(home, free_port())
    started = adb.run("start-server", timeout_s=30)
    if started.returncode != 0:
        pytest.fail(f"adb start-server failed: {started.stderr}")
    try:
        yield adb
    finally:
        adb.stop()


@pytest.fixture
def served_loopback(google_adb: GoogleAdb, loopback_device: LoopbackHandle) -> Iterator[LoopbackHandle]:
    """The loopback device connected to the private adb server (``adb connect``), disconnected at teardown."""
    state = google_adb.connect(loopback_device.serial)
    assert state == "device", f"adb shows {loopback_device.serial} as {state!r}"
    try:
        yield loopback_device
    finally:
        google_adb.disconnect(loopback_device.serial)


def pids_with(text: str) -> list[int]:
    """Host processes whose command line contains text (device commands run on this host)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def wait_until_no_process(text: str, timeout_s: float = 5.0) -> list[int]:
    """Poll until no process matches text; returns the leftovers (empty on success)."""
    deadline = time.monotonic() + timeout_s
    while (left := pids_with(text)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def adb_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, adb_key: Path) -> Path:
    """A private ~/.android holding the session's test key, no adb server unless a test starts one, a private
    download cache, and prebuilt binaries from a dead loopback URL."""
    android = tmp_path / "android-home"
    android.mkdir()
    shutil.copy(adb_key, android / "adbkey")
    shutil.copy(f"{adb_key}.pub", android / "adbkey.pub")
    monkeypatch.setenv("ANDROID_USER_HOME", str(android))
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNBENCH_CACHE_DIR", raising=False)
    monkeypatch.delenv("ADB_SERVER_SOCKET", raising=False)
    # Never the internet: prebuilt downloads go to a loopback port where nothing listens, unless a test
    # serves them (tests/loopback_http.py).
    monkeypatch.setenv("MNBENCH_BINARIES_URL", f"http://127.0.0.1:{free_port()}/litert/binaries")
    return android
