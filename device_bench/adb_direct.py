"""Transport straight to a device's adbd with adb-shell 0.4.4: TCP ``host:port`` or USB (no adb server).

adb-shell only opens the legacy ``shell:`` service (no exit status, stderr merged into stdout), so every
command is wrapped with a per-call random exit marker (:func:`device_bench.transport.wrap_with_exit_marker`).
Its TCP transport also spins until a read timeout when the peer closes, and sends large buffers only
partially; :class:`_TcpTransport` replaces it so a dropped connection is reported at once and a shell
deadline bounds every read. After any failure the connection is closed (adbd then kills the command's
process group) and the next call reconnects.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import stat
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from adb_shell.transport.base_transport import BaseTransport

from .errors import DeviceError

from .errors import (CommandTimeout, ConnectionLost, DeviceNotFound, DeviceUnauthorized, ProtocolError,
                     TransferFailed)
from .transport import (ClosingTransport, Completed, decode_output, replaced_when_complete, split_exit_marker,
                        wrap_with_exit_marker)

logger = logging.getLogger(__name__)

DEFAULT_AUTH_TIMEOUT_S = 10.0  # long enough to tap "Allow" on a phone
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_IO_TIMEOUT_S = 30.0  # push/pull: longest silence tolerated from the device
_T = TypeVar("_T")


def android_user_dir() -> Path:
    """Where adb keeps ``adbkey``: $ANDROID_USER_HOME, $ANDROID_SDK_HOME/.android, or ~/.android."""
    if os.environ.get("ANDROID_USER_HOME"):
        return Path(os.environ["ANDROID_USER_HOME"])
    if os.environ.get("ANDROID_SDK_HOME"):
        return Path(os.environ["ANDROID_SDK_HOME"]) / ".android"
    return Path.home() / ".android"


def default_key_path() -> Path:
    """The private key adb itself uses, so a phone that trusts ``adb`` trusts mnbench too."""
    return android_user_dir() / "adbkey"


def load_signers(key_path: Path | None = None) -> list[PythonRSASigner]:
    """Signers for AUTH: the user key (created like adb does when absent) then $ADB_VENDOR_KEYS.

    The first signer's public key is the one offered to the device when no signature is accepted.
    """
    key_path = Path(key_path) if key_path else default_key_path()
    if not key_path.exists():
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        logger.info("creating ADB key pair %s(.pub)", key_path)
        _create_key_pair(key_path)
    elif not Path(f"{key_path}.pub").exists():
        from adb_shell.auth.keygen import write_public_keyfile

        write_public_keyfile(str(key_path), f"{key_path}.pub")
    signers = [PythonRSASigner.FromRSAKeyPath(str(key_path))]
    for entry in filter(None, os.environ.get("ADB_VENDOR_KEYS", "").split(os.pathsep)):
        path = Path(entry)
        candidates = sorted(path.glob("*.adb_key")) if path.is_dir() else [path]
        for candidate in candidates:
            try:
                signers.append(PythonRSASigner(None, candidate.read_text()))
            except (OSError, ValueError) as error:
                logger.warning("ignoring ADB_VENDOR_KEYS entry %s: %s", candidate, error)
    return signers


def _create_key_pair(key_path: Path) -> None:
    """Write ``adbkey`` (mode 0600 from its first byte, whatever the umask) and ``adbkey.pub``, each under a
    temporary name renamed into place, so no other user can ever read the private key."""
    from adb_shell.auth.keygen import write_public_keyfile
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # as adb_shell's keygen
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    temp = key_path.with_name(f".{key_path.name}.{os.getpid()}.partial")
    temp_pub = Path(f"{temp}.pub")
    try:
        handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode is already 0600 minus the umask; make it exact
            file.write(pem)
        write_public_keyfile(str(temp), str(temp_pub))
        os.replace(temp_pub, f"{key_path}.pub")
        os.replace(temp, key_path)
    finally:
        temp.unlink(missing_ok=True)
        temp_pub.unlink(missing_ok=True)


class _PeerClosed(ConnectionError):
    """The device closed the TCP connection."""


class _DeadlinePassed(TimeoutError):
    """The caller's deadline passed while waiting for the device."""


class _TcpTransport(BaseTransport):
    """TCP transport that reports EOF at once and always writes the whole buffer."""

    def __init__(self, host: str, port: int, connect_timeout_s: float) -> None:
        self._address = (host, port)
        self._connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None

    def connect(self, transport_timeout_s: float | None) -> None:  # noqa: ARG002 - own connect timeout
        self._sock = socket.create_connection(self._address, timeout=self._connect_timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setblocking(False)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def _live(self) -> socket.socket:
        if self._sock is None:
            raise _PeerClosed("connection already closed")
        return self._sock

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        sock = self._live()
        readable, _, _ = select.select([sock], [], [], transport_timeout_s)
        if not readable:
            raise adb_exc.TcpTimeoutException(f"no data from {self._address} for {transport_timeout_s} s")
        data = sock.recv(numbytes)
        if not data:
            raise _PeerClosed(f"{self._address[0]}:{self._address[1]} closed the connection")
        return data

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        sock, view = self._live(), memoryview(data)
        while view:
            _, writable, _ = select.select([], [sock], [], transport_timeout_s)
            if not writable:
                raise adb_exc.TcpTimeoutException(
                    f"{self._address} accepted no data for {transport_timeout_s} s")
            view = view[sock.send(view):]
        return len(data)


class _DeadlineTransport(BaseTransport):
    """Bounds every read and write of an inner transport by an optional absolute deadline."""

    def __init__(self, inner: BaseTransport) -> None:
        self.inner = inner
        self.deadline: float | None = None

    def _timeout_s(self, transport_timeout_s: float | None) -> float | None:
        if self.deadline is None:
            return transport_timeout_s
        remaining_s = self.deadline - time.monotonic()
        if remaining_s <= 0:
            raise _DeadlinePassed("deadline passed")
        return remaining_s if transport_timeout_s is None else min(transport_timeout_s, remaining_s)

    def connect(self, transport_timeout_s: float | None) -> None:
        self.inner.connect(transport_timeout_s)

    def close(self) -> None:
        self.inner.close()

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        return self.inner.bulk_read(numbytes, self._timeout_s(transport_timeout_s))

    def bulk_write(self, data: bytes, transport_timeout_s: float | None) -> int:
        return self.inner.bulk_write(data, self._timeout_s(transport_timeout_s))


_TIMEOUTS = (_DeadlinePassed, adb_exc.TcpTimeoutException, adb_exc.AdbTimeoutError, socket.timeout)
_PROTOCOL = (adb_exc.InvalidChecksumError, adb_exc.InvalidCommandError, adb_exc.InvalidResponseError)


def _is_usb_timeout(error: BaseException) -> bool:
    return type(getattr(error, "usb_error", None)).__name__ == "USBErrorTimeout"


class AdbDirectTransport(ClosingTransport):
    """:class:`~device_bench.transport.Transport` over adb-shell, straight to adbd.

    Build one with :meth:`tcp` or :meth:`usb`; it connects lazily (or call :meth:`connect`).
    ``Completed.stderr`` is always empty: the legacy shell merges stderr into stdout. Not thread-safe:
    one call at a time per instance.
    """

    def __init__(self, transport: BaseTransport, serial: str, *, key_path: Path | None = None,
                 auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S, io_timeout_s: float = DEFAULT_IO_TIMEOUT_S,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        self._guard = _DeadlineTransport(transport)
        self._device = AdbDevice(self._guard, default_transport_timeout_s=io_timeout_s)
        self._serial = serial
        self._key_path = Path(key_path) if key_path else default_key_path()
        self._signers: list[PythonRSASigner] | None = None
        self._auth_timeout_s = auth_timeout_s
        self._io_timeout_s = io_timeout_s
        self._connect_timeout_s = connect_timeout_s

    @classmethod
    def tcp(cls, host: str, port: int = 5555, **options: Any) -> "AdbDirectTransport":
        """A transport to adbd on ``host:port`` (wireless debugging, emulators, the loopback device).

        Args:
            host: IP address or name.
            port: adbd's TCP port.
            **options: ``key_path``, ``auth_timeout_s``, ``io_timeout_s``, ``connect_timeout_s``.
        """
        connect_timeout_s = options.get("connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S)
        return cls(_TcpTransport(host, port, connect_timeout_s), f"{host}:{port}", **options)

    @classmethod
    def usb(cls, serial: str | None = None, **options: Any) -> "AdbDirectTransport":
        """A transport to a USB device (the first one when serial is None); needs ``adb-shell[usb]``.

        Raises:
            DeviceError: libusb1 or the libusb-1.0 system library is missing.
            DeviceNotFound: no USB device with an ADB interface (and that serial).
        """
        try:
            from adb_shell.transport.usb_transport import UsbTransport
        except (ImportError, OSError) as error:
            raise DeviceError(
                "direct USB access needs libusb1: pip install 'adb-shell[usb]' and the system library "
                f"libusb-1.0 (apt-get install libusb-1.0-0); or start an adb server instead ({error})"
            ) from error
        try:
            usb = UsbTransport.find_adb(serial, None, options.get("io_timeout_s", DEFAULT_IO_TIMEOUT_S))
        except adb_exc.UsbDeviceNotFoundError as error:
            which = f" and serial {serial}" if serial else ""
            raise DeviceNotFound(f"no USB device with an ADB interface{which} (is USB debugging on, and "
                                 "do you have permission on the USB device?)") from error
        except Exception as error:  # noqa: BLE001 - libusb errors (no USB bus, no permission) vary by host
            raise DeviceError(f"USB scan failed ({type(error).__name__}: {error})") from error
        return cls(usb, serial or usb.serial_number, **options)

    @property
    def serial(self) -> str:
        """``host:port`` or the USB serial number."""
        return self._serial

    # ------------------------------------------------------------------------------------ connection
    def connect(self) -> None:
        """Open the connection and authenticate if not done yet.

        Raises:
            DeviceUnauthorized: the device did not accept our key within auth_timeout_s.
            DeviceNotFound: nothing listens at the address.
            ConnectionLost: the device dropped or did not answer the handshake.
        """
        if self._device.available:
            return
        if self._signers is None:
            self._signers = load_signers(self._key_path)
        offered_key: list[bool] = []
        self._guard.deadline = time.monotonic() + self._connect_timeout_s + self._auth_timeout_s
        try:
            self._device.connect(rsa_keys=self._signers, transport_timeout_s=self._connect_timeout_s,
                                 auth_timeout_s=self._auth_timeout_s,
                                 read_timeout_s=self._connect_timeout_s + self._auth_timeout_s,
                                 auth_callback=lambda _device: offered_key.append(True))
        except ConnectionRefusedError as error:
            self._drop()
            raise DeviceNotFound(f"{self._serial}: connection refused (no adbd listening; is wireless or "
                                 "TCP debugging enabled?)") from error
        except (adb_exc.DeviceAuthError, *_TIMEOUTS, ConnectionError, adb_exc.UsbReadFailedError) as error:
            self._drop()
            if offered_key or isinstance(error, adb_exc.DeviceAuthError):
                raise DeviceUnauthorized(
                    f"{self._serial}: the device did not accept this computer's ADB key "
                    f"({self._key_path}.pub) "
                    f"within {self._auth_timeout_s:g} s: unlock the phone, confirm 'Allow USB debugging?' "
                    "(tick 'Always allow'), then retry") from error
            raise ConnectionLost(
                f"{self._serial}: no ADB handshake ({type(error).__name__}: {error})") from error
        except OSError as error:
            self._drop()
            raise DeviceNotFound(f"{self._serial}: cannot connect: {error}") from error
        except Exception as error:
            self._drop()
            if not type(error).__name__.startswith("USBError"):
                raise
            busy = "Busy" in type(error).__name__
            hint = " (an adb server owns the device: use it, or run 'adb kill-server')" if busy else ""
            raise DeviceError(f"{self._serial}: cannot open the USB device: {error}{hint}") from error
        finally:
            self._guard.deadline = None

    def close(self) -> None:
        """Close the connection; the device kills commands still running on it."""
        self._drop()

    def _drop(self) -> None:
        try:
            self._device.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not raise
            logger.debug("error while closing %s", self._serial, exc_info=True)

    # ------------------------------------------------------------------------------------ operations
    def shell(self, cmd: str, timeout_s: float) -> Completed:
        """Run cmd with the device shell; see :meth:`device_bench.transport.Transport.shell`.

        Raises:
            CommandTimeout: not finished within timeout_s (the connection is closed, so adbd kills it).
            ConnectionLost: the connection dropped, or the stream closed before the exit status came.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        wrapped, marker = wrap_with_exit_marker(cmd)
        self.connect()
        raw = self._call(
            lambda: self._device.shell(wrapped, transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
                                       timeout_s=timeout_s, decode=False),
            action=f"shell {cmd!r}", cmd=cmd, timeout_s=timeout_s)
        output, returncode = split_exit_marker(raw, marker)
        if returncode is None:
            self._drop()
            raise ConnectionLost(f"{self._serial}: the shell stream closed before the command reported its "
                                 f"exit status (killed on the device, or adbd restarted): {cmd}")
        return Completed(cmd, returncode, decode_output(output), "")

    def push(self, local: Path, remote: str) -> None:
        """Copy a local file to the device path ``remote`` keeping its permission bits.

        Raises:
            FileNotFoundError: local does not exist. ValueError: it is not a file or remote is not absolute.
            TransferFailed: the device refused the file. ConnectionLost: the connection dropped.
        """
        local = Path(local)
        info = local.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{local} is not a regular file")
        _check_remote(remote)
        self.connect()
        self._call(lambda: self._device.push(
            str(local), remote, st_mode=stat.S_IFREG | stat.S_IMODE(info.st_mode), mtime=int(info.st_mtime),
            transport_timeout_s=self._io_timeout_s, read_timeout_s=self._io_timeout_s),
            action=f"push to {remote}")

    def pull(self, remote: str, local: Path) -> None:
        """Copy the device file ``remote`` to ``local``; local is only replaced after a complete transfer.

        Raises:
            TransferFailed: the device refused (e.g. no such file). ConnectionLost: the connection dropped.
        """
        _check_remote(remote)
        self.connect()
        with replaced_when_complete(local) as partial:
            self._call(lambda: self._device.pull(remote, str(partial), transport_timeout_s=self._io_timeout_s,
                                                 read_timeout_s=self._io_timeout_s), action=f"pull {remote}")

    def _call(self, operation: Callable[[], _T], *, action: str, cmd: str | None = None,
              timeout_s: float | None = None) -> _T:
        """Run an adb-shell call under the shell deadline, translating its exceptions."""
        self._guard.deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        try:
            return operation()
        except Exception as error:
            self._drop()
            translated = self._translate(error, action, cmd, timeout_s)
            if translated is error:
                raise
            raise translated from error
        finally:
            self._guard.deadline = None

    def _translate(self, error: Exception, action: str, cmd: str | None,
                   timeout_s: float | None) -> Exception:
        where = f"{self._serial}: {action}"
        if isinstance(error, _TIMEOUTS) or _is_usb_timeout(error):
            if cmd is not None and timeout_s is not None:
                return CommandTimeout(cmd, timeout_s, detail=f"on {self._serial}")
            return ConnectionLost(f"{where}: the device sent nothing for {self._io_timeout_s:g} s")
        if isinstance(error, (adb_exc.AdbCommandFailureException, adb_exc.PushFailedError,
                              adb_exc.DevicePathInvalidError)):
            reason = str(error).removeprefix("Command failed: ")
            return TransferFailed(f"{where} failed on the device: {reason}")
        if isinstance(error, _PROTOCOL):
            return ProtocolError(f"{where}: unexpected data from the device ({error})")
        if isinstance(error, (OSError, adb_exc.UsbReadFailedError, adb_exc.UsbWriteFailedError,
                              adb_exc.AdbConnectionError)):
            return ConnectionLost(f"{where}: connection lost ({error})")
        return error


def _check_remote(remote: str) -> None:
    if not remote.startswith("/") or remote.endswith("/"):
        raise ValueError(f"remote must be an absolute device file path, got {remote!r}")
