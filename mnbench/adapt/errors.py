"""Errors of ``mnbench adapt``: bad options or a run that cannot proceed."""

from mnbench.errors import MnbenchError


class AdaptError(MnbenchError):
    """An adapt option or state that cannot work (exit code 2)."""
