"""Errors of the accuracy tools: bad data, models and labels that do not fit, training that cannot run."""

from ..errors import MnbenchError, MnbenchFailure


class DatasetError(MnbenchError):
    """A data folder or labels file that is missing, empty, unlabeled or holds unreadable images."""


class ClassMismatchError(MnbenchError):
    """A model whose classes (count or names) do not fit the labels of the data."""


class WeightsFileError(MnbenchError):
    """A weights file (or its configuration sidecar) that is missing, corrupt or does not fit the model."""


class TrainingError(MnbenchFailure):
    """Training could not start or produced no usable model (e.g. a loss that became NaN)."""
