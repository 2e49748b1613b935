"""MobileNet V1, V2 and V3 (Large, Small) as Keras models, with exact cost accounting.

``build()`` needs TensorFlow; ``configure()``, ``cost()`` and the tables do not (import stays light).
"""

from .config import ModelConfig, configure
from .cost import CostReport, CostRow, cost, layer_cost
from .registry import VERSIONS, get_version, list_versions


def build(*args, **kwargs):
    """Build a Keras MobileNet (see :func:`mobilenets_tf.builder.build`)."""
    from .builder import build as _build

    return _build(*args, **kwargs)


__all__ = ["ModelConfig", "configure", "CostReport", "CostRow", "cost", "layer_cost", "VERSIONS",
           "get_version", "list_versions", "build"]
