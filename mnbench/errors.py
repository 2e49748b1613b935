"""Errors of the features composed on top of the stages (accuracy, reports, command-line checks).

Each stage package owns its errors (``mobilenets_tf.errors``, ``export.errors``, ``device_bench.errors``);
``mnbench.cli`` is the one place that turns them into exit codes.
"""

from device_bench.errors import BenchError
from export.errors import ExportError
from mobilenets_tf.errors import SpecError


class MnbenchError(Exception):
    """Bad input to a composed feature (a data folder, a report, an option that does not fit)."""


class MnbenchFailure(MnbenchError):
    """A composed feature that could not finish (e.g. training whose loss became NaN)."""


# Every expected failure: the roots of each stage's errors and ours. Anything else is a bug.
EXPECTED = (SpecError, ExportError, BenchError, MnbenchError)
