"""Transport through a running adb server: the usual setup when a phone is plugged in over USB.

Speaks the server's smart-socket protocol directly (AOSP ``SERVICES.TXT``/``SYNC.TXT``): a request is
``<4 hex digits length><service>``, answered by ``OKAY`` or ``FAIL<4 hex length><message>``. Per operation a
fresh socket asks for ``host:transport:<serial>`` and then opens one device service on it:
``shell,v2,raw:<cmd>`` when the device lists ``shell_v2`` (separate stderr, real exit status), else the
legacy ``shell:`` with an exit marker; ``sync:`` for push and pull. The port is
``$ANDROID_ADB_SERVER_PORT`` or 5037 on 127.0.0.1, or ``$ADB_SERVER_SOCKET`` (``tcp:HOST:PORT``) as Google's
adb reads it; a lab passes other hosts' servers explicitly (:mod:`device_bench.lab`).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from pathlib import Path

from .errors import DeviceError

from .errors import (AdbServerUnavailable, CommandTimeout, ConnectionLost, DeviceNotFound, DeviceOffline,
                     DeviceUnauthorized, ProtocolError, TransferFailed)
from .transport import (ClosingTransport, Completed, DeviceEntry, decode_output, replaced_when_complete,
                        split_exit_marker, wrap_with_exit_marker)

__all__ = ["AdbServer", "AdbServerTransport", "DeviceEntry", "list_devices", "parse_devices_l",
           "server_address", "server_port"]

DEFAULT_SERVER_PORT = 5037
DEFAULT_SERVER_TIMEOUT_S = 5.0
DEFAULT_IO_TIMEOUT_S = 30.0
SYNC_DATA_MAX_BYTES = 64 * 1024
_SHELL_STDOUT, _SHELL_STDERR, _SHELL_EXIT, _SHELL_CLOSE_STDIN = 1, 2, 3, 4
_DEVICE_PROPERTIES = ("usb", "product", "model", "device", "transport_id", "features")


def server_port() -> int:
    """The adb server port: ``$ANDROID_ADB_SERVER_PORT`` or 5037.

    Raises:
        DeviceError: the variable is not a port number.
    """
    text = os.environ.get("ANDROID_ADB_SERVER_PORT", "").strip()
    if not text:
        return DEFAULT_SERVER_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DeviceError(f"ANDROID_ADB_SERVER_PORT must be a TCP port number, got {text!r}")
    return int(text)


def server_address() -> tuple[str, int]:
    """Where the default adb server listens, as Google's adb decides: ``$ADB_SERVER_SOCKET``
    (``tcp:HOST:PORT`` or ``tcp:PORT``), else 127.0.0.1 and :func:`server_port`.

    Raises:
        DeviceError: a variable that does not name a TCP address.
    """
    text = os.environ.get("ADB_SERVER_SOCKET", "").strip()
    if not text:
        return "127.0.0.1", server_port()
    kind, _, address = text.partition(":")
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if kind != "tcp" or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeviceError(f"ADB_SERVER_SOCKET must be tcp:HOST:PORT or tcp:PORT, got {text!r}")
    return host, int(port)


def parse_devices_l(text: str) -> list[DeviceEntry]:
    """Parse ``host:devices-l`` output (``adb devices -l``).

    Each line is ``<serial> <state> [usb:.. product:.. model:.. device:.. transport_id:N]``; the state may
    contain spaces (``no permissions (...); see [...]``), so properties are taken from the end.
    """
    entries = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        properties: dict[str, str] = {}
        while len(words) > 2 and words[-1].partition(":")[0] in _DEVICE_PROPERTIES and ":" in words[-1]:
            key, _, value = words.pop().partition(":")
            properties[key] = value
        transport_id = properties.get("transport_id", "")
        entries.append(DeviceEntry(serial=words[0], state=" ".join(words[1:]),
                                   model=properties.get("model", ""), product=properties.get("product", ""),
                                   transport_id=int(transport_id) if transport_id.isdigit() else None))
    return entries


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionResetError("the adb server closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class _ServerFail(Exception):
    """The server answered FAIL; args[0] is its message."""


def _fail_error(serial: str, message: str) -> DeviceError:
    text = message.strip()
    if "unauthorized" in text:
        return DeviceUnauthorized(f"{serial}: device unauthorized: unlock the phone and confirm "
                                  "'Allow USB debugging?' (the adb server holds the key)")
    if "offline" in text:
        return DeviceOffline(f"{serial}: device offline (replug it or run 'adb reconnect')")
    if "not found" in text or "no devices" in text:
        return DeviceNotFound(f"{serial}: not listed by the adb server ({text})")
    return DeviceError(f"{serial}: adb server refused: {text}")


class AdbServer:
    """A client of one adb server.

    Args:
        host: where the server listens: this host, or another host of a lab (``adb -a ... server``);
            default from :func:`server_address`.
        port: the server port; default from :func:`server_address`.
        timeout_s: limit for host requests (listing, features, opening services).
    """

    def __init__(self, host: str | None = None, port: int | None = None,
                 timeout_s: float = DEFAULT_SERVER_TIMEOUT_S) -> None:
        default_host, default_port = server_address() if host is None or port is None else (host, port)
        self.host = host if host is not None else default_host
        self.port = port if port is not None else default_port
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"AdbServer({self.address})"

    @property
    def address(self) -> str:
        """``HOST:PORT`` (``[v6]:PORT``), as ``--adb-server`` takes it and result rows record it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # --------------------------------------------------------------------------------- smart sockets
    def _connect(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as error:
            raise AdbServerUnavailable(f"no adb server at {self.host}:{self.port} ({error})") from error

    @staticmethod
    def _request(sock: socket.socket, service: str) -> None:
        payload = service.encode()
        if len(payload) > 0xFFFF:
            raise ValueError(f"adb request of {len(payload)} bytes is longer than 65535")
        sock.sendall(b"%04x" % len(payload) + payload)
        status = _recv_exact(sock, 4)
        if status == b"FAIL":
            raise _ServerFail(AdbServer._read_string(sock))
        if status != b"OKAY":
            raise ProtocolError(f"adb server answered {status!r} to {service.split(':', 2)[:2]}")

    @staticmethod
    def _read_string(sock: socket.socket) -> str:
        length_text = _recv_exact(sock, 4)
        try:
            length = int(length_text, 16)
        except ValueError as error:
            raise ProtocolError(f"bad length {length_text!r} from the adb server") from error
        return _recv_exact(sock, length).decode("utf-8", "replace")

    def query(self, service: str, serial: str = "") -> str:
        """Send one host request and return its string answer (``host:version``, ``host:devices-l``...).

        Raises:
            AdbServerUnavailable: nothing listens.
            DeviceNotFound, DeviceUnauthorized, DeviceOffline, DeviceError: the server answered FAIL.
        """
        with self._connect() as sock:
            try:
                self._request(sock, service)
                return self._read_string(sock)
            except _ServerFail as fail:
                raise _fail_error(serial or service, fail.args[0]) from None
            except OSError as error:
                raise AdbServerUnavailable(
                    f"adb server {self.host}:{self.port} failed on {service}: {error}") from error

    def open_service(self, serial: str, service: str, timeout_s: float | None = None) -> socket.socket:
        """A socket connected to ``service`` on the device ``serial`` (after ``host:transport:<serial>``)."""
        sock = self._connect()
        sock.settimeout(timeout_s if timeout_s is not None else self.timeout_s)
        try:
            self._request(sock, f"host:transport:{serial}")
            self._request(sock, service)
        except _ServerFail as fail:
            sock.close()
            raise _fail_error(serial, fail.args[0]) from None
        except OSError as error:
            sock.close()
            raise ConnectionLost(f"{serial}: could not open {service.split(':')[0]} via {self!r}: {error}") \
                from error
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock

    # --------------------------------------------------------------------------------- host services
    def is_running(self) -> bool:
        """Whether an adb server answers ``host:version``."""
        try:
            self.version()
            return True
        except (AdbServerUnavailable, ProtocolError):
            return False

    def version(self) -> int:
        """The server's protocol version (41 for adb 1.0.41)."""
        return int(self.query("host:version"), 16)

    def list_devices(self) -> list[DeviceEntry]:
        """Every device the server knows, in any state (``host:devices-l``)."""
        return parse_devices_l(self.query("host:devices-l"))

    def features(self, serial: str) -> frozenset[str]:
        """The device's features from its banner (``host-serial:<serial>:features``), e.g. ``shell_v2``."""
        return frozenset(filter(None, self.query(f"host-serial:{serial}:features", serial).split(",")))

    def transport(self, serial: str, **options: float) -> "AdbServerTransport":
        """A :class:`AdbServerTransport` for one of this server's devices."""
        return AdbServerTransport(serial, server=self, **options)


def list_devices(server: AdbServer | None = None) -> list[DeviceEntry]:
    """Devices of the default adb server; raises AdbServerUnavailable when none runs."""
    return (server or AdbServer()).list_devices()


class AdbServerTransport(ClosingTransport):
    """:class:`~device_bench.transport.Transport` to one device through an adb server.

    Args:
        serial: the serial the server lists (``adb devices``).
        server: the server; default :class:`AdbServer` on ``$ANDROID_ADB_SERVER_PORT`` or 5037.
        io_timeout_s: push/pull: longest silence tolerated from the server.
    """

    def __init__(self, serial: str, server: AdbServer | None = None,
                 io_timeout_s: float = DEFAULT_IO_TIMEOUT_S) -> None:
        self._serial = serial
        self._server = server or AdbServer()
        self._io_timeout_s = io_timeout_s
        self._features: frozenset[str] | None = None

    @property
    def serial(self) -> str:
        """The device serial as the server lists it."""
        return self._serial

    @property
    def features(self) -> frozenset[str]:
        """The device's features (asked once)."""
        if self._features is None:
            self._features = self._server.features(self._serial)
        return self._features

    def close(self) -> None:
        """Nothing to release: every operation uses its own socket."""

    # ------------------------------------------------------------------------------------ shell
    def shell(self, cmd: str, timeout_s: float) -> Completed:
        """Run cmd; shell v2 when available (stdout/stderr apart), else legacy shell with an exit marker.

        Raises:
            CommandTimeout: not finished in timeout_s; the socket is closed, so adbd kills the command.
            ConnectionLost: the device went away before the exit status arrived.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if not cmd.strip():
            raise ValueError("cannot run an empty command on the device")
        deadline = time.monotonic() + timeout_s
        if "shell_v2" in self.features:
            sock = self._server.open_service(self._serial, f"shell,v2,raw:{cmd}", timeout_s)
            with sock:
                sock.sendall(bytes([_SHELL_CLOSE_STDIN]) + struct.pack("<I", 0))
                return self._read_shell_v2(sock, cmd, timeout_s, deadline)
        wrapped, marker = wrap_with_exit_marker(cmd)
        with self._server.open_service(self._serial, f"shell:{wrapped}", timeout_s) as sock:
            raw = bytearray()
            while chunk := self._recv_until(sock, deadline, cmd, timeout_s, eof_ok=True):
                raw += chunk
        output, returncode = split_exit_marker(bytes(raw), marker)
        if returncode is None:
            raise ConnectionLost(f"{self._serial}: the shell stream closed before the command reported its "
                                 f"exit status (killed on the device, or the device disconnected): {cmd}")
        return Completed(cmd, returncode, decode_output(output), "")

    def _recv_until(self, sock: socket.socket, deadline: float, cmd: str, timeout_s: float,
                    eof_ok: bool = False) -> bytes:
        remaining_s = deadline - time.monotonic()
        try:
            if remaining_s <= 0:
                raise socket.timeout
            sock.settimeout(remaining_s)
            chunk = sock.recv(65536)
        except socket.timeout:
            raise CommandTimeout(cmd, timeout_s, detail=f"on {self._serial}") from None
        except OSError as error:
            raise ConnectionLost(f"{self._serial}: connection lost during shell {cmd!r}: {error}") from error
        if not chunk and not eof_ok:
            raise ConnectionLost(f"{self._serial}: the shell stream closed before the command reported its "
                                 f"exit status (the device disconnected, or adbd killed the command): {cmd}")
        return chunk

    def _read_shell_v2(self, sock: socket.socket, cmd: str, timeout_s: float, deadline: float) -> Completed:
        buffer, streams = bytearray(), {_SHELL_STDOUT: bytearray(), _SHELL_STDERR: bytearray()}
        while True:
            buffer += self._recv_until(sock, deadline, cmd, timeout_s)
            while len(buffer) >= 5:
                packet_id, length = buffer[0], struct.unpack_from("<I", buffer, 1)[0]
                if len(buffer) < 5 + length:
                    break
                payload = bytes(buffer[5:5 + length])
                del buffer[:5 + length]
                if packet_id == _SHELL_EXIT:
                    stdout, stderr = streams[_SHELL_STDOUT], streams[_SHELL_STDERR]
                    return Completed(cmd, payload[0] if payload else 255, decode_output(stdout),
                                     decode_output(stderr))
                if packet_id in streams:
                    streams[packet_id] += payload

    # ------------------------------------------------------------------------------------ sync
    def push(self, local: Path, remote: str) -> None:
        """Copy a local file to the device path ``remote`` with SEND/DATA/DONE, keeping permission bits.

        Raises:
            TransferFailed: the device refused. ConnectionLost: the device or server went away.
        """
        local = Path(local)
        info = local.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{local} is not a regular file")
        _check_remote(remote)
        spec = f"{remote},{stat.S_IFREG | stat.S_IMODE(info.st_mode)}".encode()
        with self._sync() as sock:
            try:
                sock.sendall(b"SEND" + struct.pack("<I", len(spec)) + spec)
                with open(local, "rb") as handle:
                    while chunk := handle.read(SYNC_DATA_MAX_BYTES):
                        sock.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                sock.sendall(b"DONE" + struct.pack("<I", int(info.st_mtime)))
                reply, length = struct.unpack("<4sI", _recv_exact(sock, 8))
                if reply == b"FAIL":
                    raise TransferFailed(f"{self._serial}: push to {remote} failed on the device: "
                                         f"{_recv_exact(sock, length).decode('utf-8', 'replace')}")
                if reply != b"OKAY":
                    raise ProtocolError(f"{self._serial}: unexpected sync reply {reply!r} to SEND")
                sock.sendall(b"QUIT" + struct.pack("<I", 0))
            except OSError as error:
                raise ConnectionLost(
                    f"{self._serial}: connection lost during push to {remote}: {error}") from error

    def pull(self, remote: str, local: Path) -> None:
        """Copy the device file ``remote`` to ``local`` with RECV; local is only replaced when complete.

        Raises:
            TransferFailed: the device refused (e.g. no such file). ConnectionLost: the connection dropped.
        """
        _check_remote(remote)
        path = remote.encode()
        with replaced_when_complete(local) as partial:
            with self._sync() as sock, open(partial, "wb") as handle:
                try:
                    sock.sendall(b"RECV" + struct.pack("<I", len(path)) + path)
                    while True:
                        reply, length = struct.unpack("<4sI", _recv_exact(sock, 8))
                        if reply == b"DONE":
                            break
                        if reply == b"FAIL":
                            raise TransferFailed(f"{self._serial}: pull {remote} failed on the device: "
                                                 f"{_recv_exact(sock, length).decode('utf-8', 'replace')}")
                        if reply != b"DATA" or length > SYNC_DATA_MAX_BYTES:
                            raise ProtocolError(f"{self._serial}: unexpected sync reply {reply!r} to RECV")
                        handle.write(_recv_exact(sock, length))
                    sock.sendall(b"QUIT" + struct.pack("<I", 0))
                except OSError as error:
                    raise ConnectionLost(f"{self._serial}: connection lost during pull {remote}: {error}") \
                        from error

    def _sync(self) -> socket.socket:
        sock = self._server.open_service(self._serial, "sync:")
        sock.settimeout(self._io_timeout_s)
        return sock


def _check_remote(remote: str) -> None:
    if not remote.startswith("/") or remote.endswith("/"):
        raise ValueError(f"remote must be an absolute device file path, got {remote!r}")
