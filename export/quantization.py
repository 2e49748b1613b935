"""Quantization modes and how each one sets up the TensorFlow Lite converter (the only place that does)."""

from __future__ import annotations

import enum

from mobilenets_tf.specs import HSwishForm

from .errors import ExportError


class Quant(str, enum.Enum):
    FP32 = "fp32"        # float32 weights and activations
    FP16 = "fp16"        # float16 weights, float32 activations (dequantized at load)
    DYNAMIC = "dynamic"  # int8 weights, float activations quantized on the fly
    INT8 = "int8"        # full integer: int8 weights (per channel) and activations, calibrated


class IoType(str, enum.Enum):
    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT = "float"


class Lowering(str, enum.Enum):
    """How an int8 model runs h-swish (see ``export.int8``): int8 layers, a fused int8 op, or float32."""

    DECOMPOSED = "decomposed"
    FUSED = "fused"
    FLOAT = "float"

    @property
    def form(self) -> HSwishForm:
        """How the Keras graph writes h-swish for this lowering."""
        return HSwishForm.DECOMPOSED if self is Lowering.DECOMPOSED else HSwishForm.BUILTIN


# No phone has been measured yet: the decomposed form is fully delegated by XNNPACK on every CPU it runs
# on, so it is the default everywhere until a device benchmark says otherwise.
DEFAULT_LOWERING = {"host": Lowering.DECOMPOSED, "android": Lowering.DECOMPOSED}


def configure_converter(converter, quant: Quant) -> None:
    """Set converter options for the float and dynamic-range modes (int8 goes through ``export.int8``)."""
    from mobilenets_tf import _quiet  # noqa: F401

    import tensorflow as tf

    if quant is Quant.INT8:
        raise ExportError("int8 models are converted by export.int8.quantize")
    if quant is Quant.FP32:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant is Quant.FP16:
        converter.target_spec.supported_types = [tf.float16]
