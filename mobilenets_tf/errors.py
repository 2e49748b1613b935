"""The errors of the model builders (the root of this package's expected failures is :class:`SpecError`)."""


class SpecError(ValueError):
    """An architecture, width, resolution or knob that the builders do not accept."""
