"""Errors the command line turns into a one-line message and a non-zero exit code.

Every package raises subclasses of :class:`MnbenchError` for bad input or failed tools; anything else is a
bug and is reported with a traceback only under ``mnbench -v``.
"""


class MnbenchError(Exception):
    """Base of all expected failures; ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class SpecError(MnbenchError, ValueError):
    """An architecture, width, resolution or knob that the builders do not accept."""


class ExportError(MnbenchError):
    """A model could not be converted, calibrated, verified or written."""

    exit_code = 1


class BenchError(MnbenchError):
    """A benchmark could not be run or its output could not be read."""

    exit_code = 1


class DeviceError(BenchError):
    """A device could not be reached, refused us, or dropped the connection."""

    exit_code = 3


class ToolOutputParseError(BenchError):
    """Benchmark tool output that does not hold the figures we need."""
