"""Quantization modes and how each one sets up the TensorFlow Lite converter (the only place that does)."""

from __future__ import annotations

import enum
from typing import Callable, Iterable

import numpy as np

from mnbench.errors import ExportError


class Quant(str, enum.Enum):
    FP32 = "fp32"        # float32 weights and activations
    FP16 = "fp16"        # float16 weights, float32 activations (dequantized at load)
    DYNAMIC = "dynamic"  # int8 weights, float activations quantized on the fly
    INT8 = "int8"        # full integer: int8 weights (per channel) and activations, calibrated


class IoType(str, enum.Enum):
    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT = "float"


def configure_converter(converter, quant: Quant, io: IoType,
                        representative: Callable[[], Iterable[list[np.ndarray]]] | None) -> None:
    """Set converter options for ``quant``; ``io`` only applies to full-integer models."""
    from mobilenets_tf import _quiet  # noqa: F401

    import tensorflow as tf

    if quant is Quant.FP32:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant is Quant.FP16:
        converter.target_spec.supported_types = [tf.float16]
    elif quant is Quant.INT8:
        if representative is None:
            raise ExportError("int8 export needs calibration images")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = {IoType.INT8: tf.int8, IoType.UINT8: tf.uint8, IoType.FLOAT: tf.float32}[io]
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
