"""The loopback ADB device: a TCP server on 127.0.0.1 that speaks the adbd side of the ADB protocol.

One thread per host connection reads packets (CNXN, AUTH, OPEN, OKAY, WRTE, CLSE); each opened service
(``shell:``, ``shell,v2,...:``, ``exec:``, ``sync:``) runs in its own thread and writes through a
:class:`Stream` that keeps one WRTE in flight and splits data at the host's maxdata. Checksums are always
sent and only checked while the negotiated version is below ``A_VERSION_SKIP_CHECKSUM``.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import protocol as proto
from .sandbox import Sandbox

DEVICE_VERSION = proto.A_VERSION_SKIP_CHECKSUM
DEVICE_MAXDATA_BYTES = 1024 * 1024
# Advertise only what the services implement (notes: a feature changes what adb 29 sends).
DEFAULT_FEATURES = "shell_v2,stat_v2,ls_v2,fixed_push_mkdir"
RESERVED_PORTS = range(5555, 5586)  # the adb server scans these as emulators


@dataclass
class Faults:
    """Fault-injection knobs.

    Attributes:
        reject_auth: never accept a key: the host stays ``unauthorized``.
        drop_after_push_bytes: close the TCP connection once a SEND has received this many file bytes.
        drop_on_shell: close the TCP connection after the first output of a command containing this text.
        delay_s: sleep this long before answering CNXN/AUTH and every OPEN.
    """

    reject_auth: bool = False
    drop_after_push_bytes: int | None = None
    drop_on_shell: str | None = None
    delay_s: float = 0.0


@dataclass
class DeviceConfig:
    """How the device behaves; ``adb_keys`` is the device's authorized-keys file (like /data/misc/adb)."""

    sandbox: Sandbox
    auth_required: bool = True
    accept_new_keys: bool = True
    features: str = DEFAULT_FEATURES
    maxdata_bytes: int = DEVICE_MAXDATA_BYTES
    cmd_timeout_s: float = 300.0
    faults: Faults = field(default_factory=Faults)
    adb_keys: Path | None = None


class StreamClosed(Exception):
    """The stream was closed by the host or the connection went away."""


class Stream:
    """One logical stream; the service thread writes, the connection thread delivers host data."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int, service: str) -> None:
        self.conn, self.local_id, self.remote_id, self.service = conn, local_id, remote_id, service
        self._can_write = threading.Event()
        self._can_write.set()
        self.closed = threading.Event()
        self._clse_sent = False
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # stdout and stderr writers share the one-WRTE-in-flight rule
        self._inbox: list[bytes | None] = []
        self._inbox_ready = threading.Condition()
        self._on_close: list[Callable[[], None]] = []

    def write(self, data: bytes) -> None:
        """Send data as WRTEs of at most the host's maxdata, waiting for each OKAY.

        Raises:
            StreamClosed: the host closed the stream or the connection dropped.
        """
        view = memoryview(data)
        with self._write_lock:
            while view:
                chunk, view = bytes(view[:self.conn.maxdata_bytes]), view[self.conn.maxdata_bytes:]
                while not self._can_write.wait(0.2):
                    if self.closed.is_set():
                        raise StreamClosed(self.service)
                if self.closed.is_set():
                    raise StreamClosed(self.service)
                self._can_write.clear()
                self.conn.send(proto.A_WRTE, self.local_id, self.remote_id, chunk)

    def wait_acked(self, timeout_s: float = 5.0) -> None:
        """Wait until the last WRTE is acknowledged (or the stream closed)."""
        self._can_write.wait(timeout_s)

    def read(self, timeout_s: float | None = None) -> bytes | None:
        """Next chunk of host data; None at close. Raises TimeoutError after timeout_s."""
        with self._inbox_ready:
            if not self._inbox_ready.wait_for(lambda: self._inbox, timeout_s):
                raise TimeoutError(self.service)
            return self._inbox.pop(0)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run callback (e.g. kill the process group) when the host closes or the connection drops."""
        self._on_close.append(callback)
        if self.closed.is_set():
            callback()

    def close(self) -> None:
        """Device-side close: send CLSE once; the host answers CLSE, which is then ignored."""
        with self._lock:
            if self._clse_sent:
                return
            self._clse_sent = True
        self.closed.set()
        self._can_write.set()
        with self._inbox_ready:
            self._inbox.append(None)
            self._inbox_ready.notify_all()
        self.conn.forget(self)
        self.conn.send(proto.A_CLSE, self.local_id, self.remote_id)

    # ------------------------------------------------------------ from the connection thread
    def host_okay(self) -> None:
        self._can_write.set()

    def host_data(self, data: bytes) -> None:
        with self._inbox_ready:
            self._inbox.append(data)
            self._inbox_ready.notify_all()

    def host_closed(self, answer: bool) -> None:
        """The host sent CLSE (answer it) or the connection died (answer=False)."""
        with self._lock:
            must_answer = answer and not self._clse_sent
            self._clse_sent = True
        if must_answer:
            self.conn.send(proto.A_CLSE, self.local_id, self.remote_id)
        self.closed.set()
        self._can_write.set()
        with self._inbox_ready:
            self._inbox.append(None)
            self._inbox_ready.notify_all()
        for callback in self._on_close:
            try:
                callback()
            except Exception:  # noqa: BLE001 - cleanup must go on for the other callbacks
                pass


class Connection:
    """One host connection: handshake, authentication and stream multiplexing."""

    def __init__(self, sock: socket.socket, device: "LoopbackDevice") -> None:
        self.sock, self.device, self.config = sock, device, device.config
        self.sandbox = device.config.sandbox
        self.version = proto.A_VERSION_MIN
        self.maxdata_bytes = 4096
        self.online = False
        self._token = b""
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_local_id = 1
        self._dropped = False

    # ----------------------------------------------------------------- io
    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        packet = proto.encode(command, arg0, arg1, data)
        with self._send_lock:
            try:
                self.sock.sendall(packet)
            except OSError as error:
                raise StreamClosed(f"connection lost: {error}") from error

    def _recv_exact(self, size: int) -> bytes:
        chunks, remaining = [], size
        while remaining:
            chunk = self.sock.recv(min(remaining, 1 << 20))
            if not chunk:
                raise EOFError("host closed the connection")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def drop(self, reason: str) -> None:
        """Fault injection and shutdown: cut the TCP connection without any ADB goodbye."""
        if not self._dropped:
            self._dropped = True
            self.sandbox.record("drop", reason=reason)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def forget(self, stream: Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.local_id, None)

    # ----------------------------------------------------------------- main loop
    def run(self) -> None:
        try:
            while True:
                packet = proto.read_packet(self._recv_exact)
                version = packet.arg0 if packet.command == proto.A_CNXN else self.version
                check = version < proto.A_VERSION_SKIP_CHECKSUM
                if check and not packet.checksum_matches():
                    self.sandbox.record("bad_checksum", command=packet.name)
                    break
                self._dispatch(packet)
        except (EOFError, OSError, StreamClosed, proto.ProtocolViolation) as error:
            self.sandbox.record("disconnect", reason=str(error))
        finally:
            with self._streams_lock:
                streams, self._streams = list(self._streams.values()), {}
            for stream in streams:
                stream.host_closed(answer=False)
            try:
                self.sock.close()
            except OSError:
                pass
            self.device.forget(self)

    def _dispatch(self, packet: proto.Packet) -> None:
        if packet.command == proto.A_CNXN:
            self._on_cnxn(packet)
        elif packet.command == proto.A_AUTH:
            self._on_auth(packet)
        elif not self.online:
            self.sandbox.record("ignored_before_online", command=packet.name)
        elif packet.command == proto.A_OPEN:
            self._on_open(packet)
        else:
            with self._streams_lock:
                stream = self._streams.get(packet.arg1)
            if stream is None:
                return  # e.g. the host's answer to our CLSE
            if packet.command == proto.A_OKAY:
                stream.host_okay()
            elif packet.command == proto.A_WRTE:
                self.send(proto.A_OKAY, stream.local_id, stream.remote_id)
                stream.host_data(packet.data)
            elif packet.command == proto.A_CLSE:
                self.forget(stream)
                stream.host_closed(answer=True)

    def _on_cnxn(self, packet: proto.Packet) -> None:
        self.version = min(packet.arg0, DEVICE_VERSION)
        self.maxdata_bytes = min(packet.arg1, self.config.maxdata_bytes)
        self.online = False
        self.sandbox.record("cnxn", version=hex(packet.arg0), maxdata=packet.arg1,
                            banner=packet.data.rstrip(b"\0").decode("utf-8", "replace"))
        self._delay()
        if self.config.auth_required:
            self._send_token()
        else:
            self._go_online("none")

    def _send_token(self) -> None:
        self._token = secrets.token_bytes(proto.TOKEN_SIZE_BYTES)
        self.send(proto.A_AUTH, proto.AUTH_TOKEN, 0, self._token)

    def _on_auth(self, packet: proto.Packet) -> None:
        if self.online or not self._token:
            return
        if packet.arg0 == proto.AUTH_SIGNATURE:
            known = self.device.known_keys()
            if not self.config.faults.reject_auth and any(
                    key.verify(self._token, packet.data) for key in known):
                self._go_online("signature")
            else:
                self._send_token()  # the host tries its next key, then sends its public key
        elif packet.arg0 == proto.AUTH_RSAPUBLICKEY:
            self._delay()
            if self.config.faults.reject_auth or not self.config.accept_new_keys:
                self.sandbox.record("auth", method="rejected")
                return  # a real phone shows a dialog; the host stays "unauthorized"
            try:
                self.device.add_key(proto.AdbPublicKey.from_text(packet.data))
            except ValueError as error:
                self.sandbox.record("auth", method="bad_public_key", error=str(error))
                return
            self._go_online("pubkey")

    def _go_online(self, method: str) -> None:
        self.online = True
        self.sandbox.record("auth", method=method)
        self.send(proto.A_CNXN, self.version, self.maxdata_bytes, self.sandbox.banner(self.config.features))

    def _on_open(self, packet: proto.Packet) -> None:
        from .services import start_service  # services import Stream from this module

        service = packet.data.rstrip(b"\0").decode("utf-8", "replace")
        self._delay()
        with self._streams_lock:
            local_id = self._next_local_id
            self._next_local_id += 1
        stream = Stream(self, local_id, packet.arg0, service)
        runner = start_service(stream, service)
        self.sandbox.record("open", service=service, accepted=runner is not None)
        if runner is None:
            self.send(proto.A_CLSE, 0, packet.arg0)
            return
        with self._streams_lock:
            self._streams[local_id] = stream
        self.send(proto.A_OKAY, local_id, packet.arg0)
        threading.Thread(target=runner, name=f"adb-{service[:24]}", daemon=True).start()

    def _delay(self) -> None:
        if self.config.faults.delay_s:
            threading.Event().wait(self.config.faults.delay_s)


class LoopbackDevice:
    """The device server. Use :meth:`start` / :meth:`stop` or a ``with`` block."""

    def __init__(self, config: DeviceConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self._requested_port = port
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._keys_path = config.adb_keys or config.sandbox.state_dir / "adb_keys"
        self._stopped = threading.Event()
        self._sessions: set[Any] = set()  # running ShellSessions, killed on stop()

    # ----------------------------------------------------------------- keys
    def known_keys(self) -> list[proto.AdbPublicKey]:
        try:
            return proto.load_keys(self._keys_path.read_text())
        except FileNotFoundError:
            return []

    def add_key(self, key: proto.AdbPublicKey) -> None:
        """Remember an accepted key ("Always allow from this computer")."""
        with self._lock, open(self._keys_path, "a") as handle:
            handle.write(key.line + "\n")

    def track(self, session: Any, running: bool) -> None:
        """Register (running=True) or unregister a shell session so :meth:`stop` can kill it."""
        with self._lock:
            if running:
                self._sessions.add(session)
            else:
                self._sessions.discard(session)

    def forget(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> "LoopbackDevice":
        self._listener = self._bind()
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="adb-accept", daemon=True).start()
        self.config.sandbox.record("listening", host=self.host, port=self.port, pid=os.getpid())
        return self

    def _bind(self) -> socket.socket:
        for _attempt in range(20):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self._requested_port))
            if listener.getsockname()[1] not in RESERVED_PORTS:
                listener.listen(16)
                return listener
            listener.close()
            if self._requested_port:
                break
        raise OSError(f"refusing to listen on a port in {RESERVED_PORTS} (the adb server scans them)")

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                sock, _address = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, self)
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=conn.run, name="adb-conn", daemon=True).start()

    def stop(self) -> None:
        """Stop listening, cut every connection (which kills every running command)."""
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
            sessions = list(self._sessions)
        for session in sessions:
            session.kill("device stopped")
        for conn in connections:
            conn.drop("device stopped")

    def __enter__(self) -> "LoopbackDevice":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
