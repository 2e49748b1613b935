"""The delegates benchmark_model can run a model with on a phone (``mnbench device --delegate``)."""

import enum


class Delegate(str, enum.Enum):
    CPU = "cpu"            # the plain CPU kernels, without XNNPACK
    XNNPACK = "xnnpack"
    GPU = "gpu"
    NNAPI = "nnapi"


DELEGATES = tuple(delegate.value for delegate in Delegate)
