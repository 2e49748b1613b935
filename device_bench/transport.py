"""The narrow interface between the benchmark harness and a device: run a command, copy files.

Implementations: :mod:`device_bench.adb_direct` (adb-shell straight to a device's adbd over TCP or USB) and
:mod:`device_bench.adb_server` (through a running adb server, the usual USB setup); pick one with
:func:`device_bench.connect.open_transport`. Every argument that reaches the device shell must go through
:func:`quote` (or :func:`join` for a whole argv).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Union, runtime_checkable

ShellArg = Union[str, "os.PathLike[str]", int, float]


@dataclass(frozen=True)
class Completed:
    """A finished device command.

    Attributes:
        argv_or_cmd: the command string as passed to ``Transport.shell``.
        returncode: exit status; 128 + N when the command was killed by signal N (139 = SIGSEGV).
        stdout: standard output, decoded as UTF-8 (undecodable bytes replaced).
        stderr: standard error; empty when the transport cannot separate it (legacy ``shell:``
            service, i.e. no shell_v2), in which case it is merged into ``stdout``.
    """

    argv_or_cmd: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.returncode == 0


@dataclass(frozen=True)
class DeviceEntry:
    """One device as listed by an adb server (``host:devices-l``) or found on USB.

    Attributes:
        serial: what to pass to :func:`device_bench.connect.open_transport`.
        state: ``device``, ``unauthorized``, ``offline``, ``authorizing``, ``no permissions (...)``, ...
        model: ``ro.product.model`` as the adb server reports it (spaces become ``_``), or "".
        product: ``ro.product.name``, or "".
        transport_id: the adb server's transport id, or None when not listed by a server.
    """

    serial: str
    state: str
    model: str = ""
    product: str = ""
    transport_id: int | None = None


class ClosingTransport:
    """Mixin for transports: ``with transport:`` closes it on the way out."""

    def close(self) -> None:  # overridden by every transport
        """Release the connection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@runtime_checkable
class Transport(Protocol):
    """What the harness needs from a device connection."""

    def shell(self, cmd: str, timeout_s: float) -> Completed:
        """Run ``cmd`` with the device's ``sh``.

        Raises:
            CommandTimeout: not finished within timeout_s (the command is stopped).
            ConnectionLost: the connection dropped before the exit status arrived.
        """
        ...

    def push(self, local: Path, remote: str) -> None:
        """Copy a local file to the absolute device path ``remote`` (parent folders are created)."""
        ...

    def pull(self, remote: str, local: Path) -> None:
        """Copy the device file ``remote`` to ``local`` (written only when the transfer completed)."""
        ...

    def close(self) -> None:
        """Release the connection; further calls may reconnect."""
        ...


def quote(arg: ShellArg) -> str:
    """Quote one argument for the device's POSIX shell (mksh/toybox quote like POSIX ``sh``).

    Raises:
        TypeError: for bytes or other types that have no unambiguous text form.
    """
    if isinstance(arg, bool) or not isinstance(arg, (str, int, float, os.PathLike)):
        raise TypeError(f"cannot quote {type(arg).__name__} {arg!r} for the device shell")
    return shlex.quote(os.fspath(arg) if isinstance(arg, os.PathLike) else str(arg))


def join(argv: list[ShellArg]) -> str:
    """Quote and join an argv into one shell command line.

    Raises:
        ValueError: for an empty argv.
    """
    if not argv:
        raise ValueError("cannot run an empty argv on the device")
    return " ".join(quote(arg) for arg in argv)


# ---------------------------------------------------------------------------------------------------------
# Exit status over the legacy ``shell:`` service, which has none: run the command in a subshell, then print
# a per-call random marker and ``$?`` (adbutils' approach). A random marker cannot be produced by the
# program's own output, and a missing marker means the command never finished.
_MARKER_PREFIX = "MNBX"


def wrap_with_exit_marker(cmd: str) -> tuple[str, str]:
    """Return ``(wrapped command, marker)``; parse the output with :func:`split_exit_marker`.

    The subshell keeps ``exit N`` from skipping the marker; ``</dev/null`` stops a program that reads stdin
    from waiting forever (legacy shell has no close-stdin).

    Raises:
        ValueError: for an empty command (adbd would open an interactive shell).
    """
    if not cmd.strip():
        raise ValueError("cannot run an empty command on the device")
    marker = _MARKER_PREFIX + secrets.token_hex(8)
    return f"(\n{cmd}\n) </dev/null; printf '\\n{marker}:%s\\n' \"$?\"", marker


def split_exit_marker(output: bytes, marker: str) -> tuple[bytes, int | None]:
    """Split wrapped output into ``(program output, exit status)``; status None when the marker is missing."""
    match = re.search(rb"\r?\n" + marker.encode() + rb":(\d+)\r?\n?\Z", output)
    if match is None:
        return output, None
    return output[:match.start()], int(match.group(1))


def decode_output(data: bytes) -> str:
    """Decode device output the same way on every transport."""
    return data.decode("utf-8", "replace")


@contextlib.contextmanager
def replaced_when_complete(local: Path) -> Iterator[Path]:
    """Yield a partial file beside ``local``; it replaces ``local`` only if the block completes."""
    local = Path(local)
    partial = local.with_name(f".{local.name}.partial")
    try:
        yield partial
        os.replace(partial, local)
    finally:
        partial.unlink(missing_ok=True)
