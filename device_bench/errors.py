"""The errors of the benchmark tools; :class:`BenchError` is the root of this package's expected failures.

Three kinds sit under it, which the command line turns into exit codes (``mnbench.cli.EXIT_CODES``): a tool
or run that failed (:class:`BenchError` itself), input the tools cannot use (:class:`BenchInputError`: a
results folder, a model file, an option), and a device that could not be reached (:class:`DeviceError`).
"""

from __future__ import annotations


class BenchError(Exception):
    """A benchmark could not be run or its output could not be read."""


class BenchInputError(BenchError):
    """Input the benchmark tools cannot use: a results file, a model file or an option that does not fit."""


class DeviceError(BenchError):
    """A device could not be reached, refused us, or dropped the connection."""


class ToolOutputParseError(BenchError):
    """Benchmark tool output that does not hold the figures we need."""


class ModelFileError(BenchInputError):
    """A file that is missing or is not a readable .tflite model."""


class DeviceNotFound(DeviceError):
    """No device with that serial: not listed by the adb server, not reachable over TCP or USB."""


class UnknownSerial(DeviceNotFound):
    """No adb server and no USB phone has this serial: a typo or an unplugged phone (bad input: exit 2)."""


class DeviceUnauthorized(DeviceError):
    """The device did not accept our RSA key (the "Allow USB debugging?" dialog was not confirmed)."""


class DeviceOffline(DeviceError):
    """The adb server lists the device as offline (it stopped answering)."""


class AdbServerUnavailable(DeviceError):
    """No adb server answers on localhost:<ANDROID_ADB_SERVER_PORT or 5037>."""


class ConnectionLost(DeviceError):
    """The connection to the device dropped during a command or a transfer."""


class ProtocolError(DeviceError):
    """The device or adb server sent something the ADB protocol does not allow."""


class TransferFailed(DeviceError):
    """The device refused a push or pull (missing file, read-only path, no space)."""


class DownloadFailed(BenchError):
    """A file could not be downloaded into the cache, or its sha256 is not the trusted one."""


class DeviceBusy(BenchError):
    """Another mnbench process holds the phone's lock (see :mod:`device_bench.phone_lock`)."""


class AmbiguousDevice(BenchInputError):
    """A serial is listed by several adb servers; qualify it as ``HOST:PORT/SERIAL``."""


class CommandTimeout(DeviceError):
    """A device command did not finish in time; the harness killed it.

    Attributes:
        cmd: the command as given to ``Transport.shell``.
        timeout_s: the time limit that passed.
    """

    def __init__(self, cmd: str, timeout_s: float, detail: str = "") -> None:
        self.cmd = cmd
        self.timeout_s = timeout_s
        message = f"device command did not finish within {timeout_s:g} s and was stopped: {_short(cmd)}"
        super().__init__(f"{message} ({detail})" if detail else message)


class CommandFailed(BenchError):
    """A device command exited with a non-zero status where success was required.

    Attributes:
        argv: the command (string or argv list) that failed.
        returncode: its exit status (128 + N when killed by signal N).
        stderr: its error output (merged into stdout on transports without shell_v2).
    """

    def __init__(self, argv: str | list[str], returncode: int, stderr: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        shown = argv if isinstance(argv, str) else " ".join(argv)
        tail = stderr.strip().splitlines()[-1:] if stderr else []
        detail = f": {tail[0]}" if tail else ""
        super().__init__(f"device command exited with status {returncode}: {_short(shown)}{detail}")


def _short(text: str, limit_chars: int = 160) -> str:
    return text if len(text) <= limit_chars else text[:limit_chars - 3] + "..."


class FarmError(BenchError):
    """A device farm (DeviceFarmer STF) refused or failed a request mid-run (see :mod:`device_bench.stf`)."""


class FarmInputError(BenchInputError):
    """A farm that cannot be used as given: unreachable URL, a rejected token, a phone it does not have."""


class LeaseNotReleased(BenchError):
    """A phone leased from the farm could not be given back; the message names each serial."""
