"""The errors of the exporter (the root of this package's expected failures is :class:`ExportError`)."""


class ExportError(Exception):
    """A model could not be converted, calibrated, verified or written."""


class ExportWriteError(ExportError):
    """The disk refused a model or its sidecar (no space left, read-only, quota): bad input (exit 2)."""
