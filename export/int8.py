"""Full-integer int8 conversion: calibrate, correct the recorded ranges, quantize with a chosen h-swish
lowering.

Lowerings of h-swish (V3 only; V1/V2 have none):
    decomposed  h-swish as x * relu6(x + 3) * 0.16666666: int8 ADD(+RELU6) and MULs, all run by XNNPACK.
    fused       TFLite's HARD_SWISH op in int8. XNNPACK takes it only in float, so on x86 it runs a scalar
                kernel outside the delegate and splits the graph (20-22 partitions); on ARM TFLite's kernel
                is NEON-vectorised, so a phone may prefer it: measure with `mnbench device`.
    float       HARD_SWISH kept in float32 inside the int8 graph (DEQUANTIZE/QUANTIZE around each), delegated.

Range correction: TensorFlow's calibrator logs an op's input tensors again after the op has run, so when
the memory planner let the op write over its input, the input's recorded range is the union of both
(tensorflow#127842; e.g. a relu6 output recorded as [-2.2, 23.7]). The calibrated model is therefore run
again with every tensor preserved, and each recorded min/max is replaced by the range actually seen.
"""

from __future__ import annotations

import numpy as np

from device_bench.quiet import captured

from .errors import ExportError
from .quantization import IoType, Lowering


def observed_ranges(model: bytes, images: np.ndarray) -> dict[int, tuple[float, float]]:
    """min/max of every float tensor over ``images``, with no tensor sharing its buffer."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with captured():
        interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    floats = [d["index"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float32]
    low, high = {}, {}
    for image in images:
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
        for index in floats:
            try:
                values = interpreter.get_tensor(index)
            except ValueError:          # constants folded away or never allocated
                continue
            if values.size:
                low[index] = min(low.get(index, np.inf), float(values.min()))
                high[index] = max(high.get(index, -np.inf), float(values.max()))
    return {index: (low[index], high[index]) for index in low}


def correct_ranges(calibrated: bytes, images: np.ndarray) -> tuple[bytes, int]:
    """Replace each recorded activation range by the observed one; return the model and how many changed."""
    from ai_edge_litert.tools import flatbuffer_utils

    ranges = observed_ranges(calibrated, images)
    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    changed = 0
    for index, tensor in enumerate(tree.subgraphs[0].tensors):
        quant = tensor.quantization
        if quant is None or quant.min is None or len(quant.min) != 1 or index not in ranges:
            continue
        low, high = ranges[index]
        tolerance = 1e-6 * max(1.0, abs(low), abs(high))
        if abs(quant.min[0] - low) > tolerance or abs(quant.max[0] - high) > tolerance:
            changed += 1
        quant.min, quant.max = np.array([low], np.float32), np.array([high], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree)), changed


def float_nodes(calibrated: bytes, blocks: tuple[str, ...]) -> list[str]:
    """Names (first output tensor) of the operators of ``blocks``: what the quantizer's denylist matches."""
    from device_bench.slices import groups
    from device_bench.tflite_file import tree as model_tree

    tree = model_tree(calibrated)
    found = dict(groups(tree, "block"))
    unknown = [b for b in blocks if b not in found]
    if unknown:
        raise ExportError(f"unknown block(s) {', '.join(unknown)}; this model has {', '.join(found)}")
    graph = tree.subgraphs[0]
    return [graph.tensors[graph.operators[i].outputs[0]].name.decode() for b in blocks for i in found[b]]


def quantize(frozen_function, images: np.ndarray, io: IoType, lowering: Lowering,
             float_blocks: tuple[str, ...] = ()) -> tuple[bytes, dict]:
    """Frozen float graph -> int8 model (per-channel int8 weights, int8 activations).

    ``float_blocks`` (e.g. ``("stem", "block01")``) stay float32 inside the int8 graph (mixed precision),
    with QUANTIZE/DEQUANTIZE at their borders.
    """
    from mobilenets_tf import _quiet  # noqa: F401

    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert
    from tensorflow.lite.python.util import modify_model_io_type

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_function])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # Private but stable since TF 2.3: calibrate, do not quantize.
    converter._experimental_calibrate_only = True
    # The quantizer writes int8 or float I/O; uint8 I/O is TFLite's own post-pass, as in TFLiteConverter.
    io_dtype = tf.int8 if io is IoType.INT8 else tf.float32
    try:
        with captured():
            calibrated = converter.convert()
        calibrated, corrected = correct_ranges(calibrated, images)
        denylisted_nodes = float_nodes(calibrated, float_blocks) if float_blocks else None
        with captured():
            # fully_quantize also quantizes the model's inputs and outputs; without it they stay float, with
            # one QUANTIZE after the input and one DEQUANTIZE before the output.
            model = tflite_convert.mlir_quantize(
                calibrated, fully_quantize=io is IoType.INT8, input_data_type=io_dtype,
                output_data_type=io_dtype,
                denylisted_ops=["HARD_SWISH"] if lowering is Lowering.FLOAT else None,
                denylisted_nodes=denylisted_nodes)
            if io is IoType.UINT8:
                model = modify_model_io_type(model, tf.uint8, tf.uint8)
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(f"int8 conversion failed: {' '.join(str(error).split())[:300]}") from None
    return model, {"ranges_corrected": corrected, "float_blocks": list(float_blocks)}
