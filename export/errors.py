"""The errors of the exporter (the root of this package's expected failures is :class:`ExportError`)."""


class ExportError(Exception):
    """A model could not be converted, calibrated, verified or written."""
