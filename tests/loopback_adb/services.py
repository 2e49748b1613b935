"""Services of the loopback device: ``shell:`` (legacy), ``shell,v2,...:``, ``exec:`` and ``sync:``.

Commands run as ``/bin/sh -c <command with device paths mapped>`` in the sandbox, in their own session
(``start_new_session=True``); the whole process group is killed when the host closes the stream, the
connection drops or ``cmd_timeout_s`` passes, so an abandoned command leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import stat
import struct
import subprocess
import threading
from typing import Callable

from .device import Stream, StreamClosed

SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW = range(6)
SYNC_DATA_MAX_BYTES = 64 * 1024
SYNC_PATH_MAX_BYTES = 1024
# 72 bytes: id, errno, dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime
_STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")
_DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")  # 76 bytes before the name


def start_service(stream: Stream, service: str) -> Callable[[], None] | None:
    """The runner for a service name, or None for services this device does not offer."""
    if service.startswith("sync:"):
        return SyncSession(stream).run
    if service.startswith("exec:") and service[5:]:
        return ShellSession(stream, service[5:], protocol_v2=False).run
    if service.startswith("shell") and ":" in service:
        options, _, command = service.partition(":")
        args = options.split(",")[1:] if "," in options else []
        if options != "shell" and not options.startswith("shell,"):
            return None
        if not command.strip():
            return None  # interactive shells are not offered
        return ShellSession(stream, command, protocol_v2="v2" in args).run
    return None


def _exit_status(returncode: int) -> int:
    """adbd's exit byte: the status, or 128 + signal number for a killed process."""
    return (128 - returncode) & 0xFF if returncode < 0 else returncode & 0xFF


class ShellSession:
    """One command: pipes its output into the stream, v2-framed or raw."""

    def __init__(self, stream: Stream, command: str, protocol_v2: bool) -> None:
        self.stream, self.command, self.protocol_v2 = stream, command, protocol_v2
        self.conn = stream.conn
        self.sandbox = stream.conn.sandbox
        self.proc: subprocess.Popen[bytes] | None = None
        self._dropped = False

    def run(self) -> None:
        mapped = self.sandbox.map_command(self.command)
        proc = self.proc = subprocess.Popen(
            ["/bin/sh", "-c", mapped], cwd=self.sandbox.root, env=self.sandbox.environment(),
            stdin=subprocess.PIPE if self.protocol_v2 else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if self.protocol_v2 else subprocess.STDOUT, start_new_session=True)
        self.sandbox.record("spawn", pid=proc.pid, command=self.command, v2=self.protocol_v2)
        self.conn.device.track(self, running=True)
        self.stream.on_close(lambda: self.kill("stream closed by host or connection lost"))
        timer = threading.Timer(self.conn.config.cmd_timeout_s, self.kill, args=("cmd_timeout_s",))
        timer.daemon = True
        timer.start()
        pumps = [threading.Thread(target=self._pump, args=(proc.stdout, SHELL_STDOUT), daemon=True)]
        if self.protocol_v2:
            pumps.append(threading.Thread(target=self._pump, args=(proc.stderr, SHELL_STDERR), daemon=True))
            threading.Thread(target=self._pump_stdin, daemon=True).start()
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        returncode = proc.wait()
        timer.cancel()
        self.conn.device.track(self, running=False)
        self.sandbox.record("exit", pid=proc.pid, returncode=returncode)
        try:
            if self.protocol_v2:
                status = bytes([_exit_status(returncode)])
                self.stream.write(bytes([SHELL_EXIT]) + struct.pack("<I", 1) + status)
            self.stream.wait_acked()
            self.stream.close()
        except StreamClosed:
            pass

    def kill(self, reason: str) -> None:
        """Kill the command's whole process group (the shell and everything it started)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            self.sandbox.record("killed", pid=proc.pid, reason=reason)
        except (ProcessLookupError, PermissionError):
            pass

    def _pump(self, pipe, channel: int) -> None:  # noqa: ANN001 - a binary pipe
        unmapper = self.sandbox.output_unmapper()
        fd = pipe.fileno()
        try:
            while True:
                data = os.read(fd, 65536)
                chunk = unmapper.feed(data) if data else unmapper.flush()
                if chunk:
                    self._send(channel, chunk)
                if not data:
                    return
        except (StreamClosed, OSError):
            self.kill("output could not be delivered")
        finally:
            pipe.close()

    def _send(self, channel: int, data: bytes) -> None:
        if self.protocol_v2:
            data = bytes([channel]) + struct.pack("<I", len(data)) + data
        self.stream.write(data)
        fault = self.conn.config.faults.drop_on_shell
        if fault and fault in self.command and not self._dropped:
            self._dropped = True
            self.stream.wait_acked(1.0)
            self.conn.drop(f"fault: drop_on_shell {fault!r}")

    def _pump_stdin(self) -> None:
        """Feed v2 stdin packets (id 0) to the process; id 4 or stream close ends stdin."""
        assert self.proc is not None and self.proc.stdin is not None
        buffer = bytearray()
        stdin = self.proc.stdin
        try:
            while True:
                data = self.stream.read()
                if data is None:
                    return
                buffer += data
                while len(buffer) >= 5:
                    channel, length = buffer[0], struct.unpack_from("<I", buffer, 1)[0]
                    if len(buffer) < 5 + length:
                        break
                    payload, buffer = bytes(buffer[5:5 + length]), buffer[5 + length:]
                    if channel == SHELL_STDIN:
                        stdin.write(payload)
                        stdin.flush()
                    elif channel == SHELL_CLOSE_STDIN:
                        return
        except OSError:
            return
        finally:
            try:
                stdin.close()
            except OSError:
                pass


class SyncSession:
    """The file-sync service; requests form a byte stream not aligned to WRTE boundaries."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.conn = stream.conn
        self.sandbox = stream.conn.sandbox
        self._buffer = bytearray()

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self.stream.read()
            if data is None:
                raise EOFError("sync stream closed")
            self._buffer += data
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _header(self) -> tuple[bytes, int]:
        ident, length = struct.unpack("<4sI", self._read_exact(8))
        return ident, length

    def _fail(self, message: str) -> None:
        payload = message.encode()
        self.stream.write(b"FAIL" + struct.pack("<I", len(payload)) + payload)

    def run(self) -> None:
        handlers = {b"STAT": self._stat_v1, b"STA2": self._stat_v2, b"LST2": self._stat_v2,
                    b"LIST": self._list, b"LIS2": self._list, b"SEND": self._send, b"RECV": self._recv}
        try:
            while True:
                ident, length = self._header()
                if ident == b"QUIT":
                    break
                handler = handlers.get(ident)
                if handler is None or length > SYNC_PATH_MAX_BYTES:
                    self._fail(f"unknown sync request {ident!r} or path of {length} bytes")
                    break
                path = self._read_exact(length).decode("utf-8", "surrogateescape")
                self.sandbox.record("sync", request=ident.decode(), path=path)
                if handler(ident, path) is False:
                    break
            self.stream.wait_acked()
            self.stream.close()
        except (EOFError, StreamClosed):
            return

    def _stat_v1(self, _ident: bytes, path: str) -> None:
        try:
            info = os.lstat(self.sandbox.host_path(path))
            values = (info.st_mode, info.st_size & 0xFFFFFFFF, int(info.st_mtime))
        except OSError:
            values = (0, 0, 0)  # v1 has no errno: all zeros means "missing"
        self.stream.write(b"STAT" + struct.pack("<III", *values))

    def _stat_v2(self, ident: bytes, path: str) -> None:
        try:
            host = self.sandbox.host_path(path)
            info = os.lstat(host) if ident == b"LST2" else os.stat(host)
            self.stream.write(_STAT_V2.pack(ident, 0, *_stat_fields(info)))
        except OSError as error:
            self.stream.write(_STAT_V2.pack(ident, error.errno or 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    def _list(self, ident: bytes, path: str) -> None:
        out = bytearray()
        try:
            folder = self.sandbox.host_path(path)
            names = [".", ".."] + sorted(os.listdir(folder))
        except OSError:
            names, folder = [], None
        for name in names:
            try:
                info = os.lstat(folder / name)  # type: ignore[operator]
            except OSError:
                continue
            encoded = name.encode("utf-8", "surrogateescape")
            if ident == b"LIST":
                out += struct.pack("<4sIIII", b"DENT", info.st_mode, info.st_size & 0xFFFFFFFF,
                                   int(info.st_mtime), len(encoded)) + encoded
            else:
                out += _DENT_V2.pack(b"DNT2", 0, *_stat_fields(info), len(encoded)) + encoded
        # DONE is padded to a full dent header: adb-shell unpacks it with "<5I" (20 bytes).
        out += b"DONE" + bytes((20 if ident == b"LIST" else _DENT_V2.size) - 4)
        self.stream.write(bytes(out))

    def _send(self, _ident: bytes, spec: str) -> bool:
        path, comma, mode_text = spec.rpartition(",")
        if not comma:
            path, mode_text = spec, "33188"  # 0o100644
        mode = int(mode_text) if mode_text.isdigit() else 0o100644
        error, handle, symlink_target = None, None, bytearray()
        try:
            host = self.sandbox.host_path(path)
            host.parent.mkdir(parents=True, exist_ok=True)  # fixed_push_mkdir
            if host.is_symlink() or (host.exists() and not host.is_dir()):
                host.unlink()
            if not stat.S_ISLNK(mode):
                handle = open(host, "wb")
        except OSError as exc:
            error, host = f"{path}: {exc.strerror or exc}", None
        received_bytes, limit = 0, self.conn.config.faults.drop_after_push_bytes
        while True:
            ident, length = self._header()
            if ident == b"DONE":
                mtime = length
                break
            if ident != b"DATA" or length > SYNC_DATA_MAX_BYTES:
                self._fail(f"invalid data message {ident!r}")
                return False
            data = self._read_exact(length)
            received_bytes += len(data)
            if limit is not None and received_bytes >= limit:
                if handle:
                    handle.close()
                    os.unlink(handle.name)
                self.conn.drop(f"fault: drop_after_push_bytes={limit}")
                raise EOFError("dropped mid-push")
            if handle:
                handle.write(data)
            elif error is None:
                symlink_target += data
        if error is not None or host is None:
            self._fail(error or f"{path}: cannot write")
            return False
        if handle:
            handle.close()
            os.chmod(host, mode & 0o777)
            os.utime(host, (mtime, mtime))
        else:
            os.symlink(bytes(symlink_target).rstrip(b"\0").decode("utf-8", "surrogateescape"), host)
        self.stream.write(b"OKAY" + struct.pack("<I", 0))
        return True

    def _recv(self, _ident: bytes, path: str) -> bool:
        try:
            handle = open(self.sandbox.host_path(path), "rb")
        except OSError as exc:
            self._fail(exc.strerror or str(exc))
            return False
        with handle:
            while True:
                data = handle.read(SYNC_DATA_MAX_BYTES)
                if not data:
                    break
                self.stream.write(b"DATA" + struct.pack("<I", len(data)) + data)
        self.stream.write(b"DONE" + struct.pack("<I", 0))
        return True


def _stat_fields(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_mode, info.st_nlink, info.st_uid, info.st_gid,
            info.st_size, int(info.st_atime), int(info.st_mtime), int(info.st_ctime))
