"""int8 lowerings of h-swish and the calibration-range correction: the graph has the promised structure."""

import collections

import numpy as np
import pytest

from export.int8 import correct_ranges, observed_ranges
from export.pipeline import ExportRequest, export
from export.quantization import IoType, Lowering, Quant
from export.stem import Stem
from device_bench.tflite_file import describe
from mobilenets_tf import configure

CONFIG = configure("v3-small", 0.5, 96)


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    # stem conv (the default, named anyway): every layer int8, so each h-swish lowering's structure shows
    # alone (stems: test_stem.py)
    return {lowering: export(ExportRequest(CONFIG, Quant.INT8, calib_samples=16, hswish=lowering,
                                           stem=Stem.CONV), out)
            | {"path": out} for lowering in Lowering}


def _ops(record):
    return {key.split(":")[0] for key in record["op_histogram"]}, record["op_histogram"]


def test_decomposed_is_one_partition_with_no_hardswish(lowered):
    record = lowered[Lowering.DECOMPOSED]
    names, histogram = _ops(record)
    assert record["file"] == "v3-small_a0.50_r96_int8.tflite" and record["hswish"] == "decomposed"
    assert "HARD_SWISH" not in names and all(key.endswith(":INT8") for key in histogram)
    assert record["delegation"] == {"partitions": 1, "ops_outside_delegate": {},
                                    "nodes": record["delegation"]["nodes"]}
    assert record["output"] == "logits" and "SOFTMAX:INT8" not in histogram
    info = describe(record["path"] / record["file"])
    assert set(info["tensor_types"]) <= {"int8", "int32"}


def test_int8_softmax_on_request_runs_outside_xnnpack(tmp_path):
    record = export(ExportRequest(CONFIG, Quant.INT8, calib_samples=8, int8_softmax=True), tmp_path)
    assert record["file"] == "v3-small_a0.50_r96_int8_softmax.tflite" and record["output"] == "probabilities"
    assert record["op_histogram"]["SOFTMAX:INT8"] == 1
    assert record["delegation"]["ops_outside_delegate"] == {"SOFTMAX": 1}


def test_fused_keeps_int8_hardswish_outside_the_delegate(lowered):
    record = lowered[Lowering.FUSED]
    assert record["file"].endswith("_int8_hswish-fused.tflite")
    assert record["op_histogram"]["HARD_SWISH:INT8"] == 19
    assert record["delegation"]["ops_outside_delegate"]["HARD_SWISH"] == 19
    assert record["delegation"]["partitions"] > 1


def test_float_lowering_keeps_hardswish_in_float_between_quantize_ops(lowered):
    record = lowered[Lowering.FLOAT]
    histogram = record["op_histogram"]
    assert histogram["HARD_SWISH:FLOAT32"] == 19
    assert histogram["DEQUANTIZE:FLOAT32"] >= 19 and histogram["QUANTIZE:INT8"] >= 19
    assert record["inputs"][0]["dtype"] == record["outputs"][0]["dtype"] == "int8"
    assert record["delegation"]["partitions"] == 1
    # XNNPACK takes the float islands; a strict integer delegate would not: each DEQUANTIZE, HARD_SWISH
    # and QUANTIZE is named, and no int8 operator is.
    integer = record["integer"]
    blocking = collections.Counter(entry.split(":")[1] for entry in integer["blocking_ops"])
    assert not integer["full_integer"] and integer["float_io"] == []
    assert blocking == {"HARD_SWISH": 19, "DEQUANTIZE": histogram["DEQUANTIZE:FLOAT32"],
                        "QUANTIZE": histogram["DEQUANTIZE:FLOAT32"]}
    assert integer["float_tensors"] >= 2 * 19


def test_float_io_is_not_full_integer(tmp_path):
    record = export(ExportRequest(CONFIG, Quant.INT8, IoType.FLOAT, calib_samples=4, verify=False), tmp_path)
    integer = record["integer"]
    assert not integer["full_integer"] and integer["input_types"] == integer["output_types"] == ["float32"]
    assert integer["float_io"] == [record["inputs"][0]["name"], record["outputs"][0]["name"]]
    assert integer["float_tensors"] == 2
    assert [entry.split(":")[1] for entry in integer["blocking_ops"]] == ["QUANTIZE", "DEQUANTIZE"]
    first, last = (int(entry.split(":")[0]) for entry in integer["blocking_ops"])
    assert first == 0 and last == sum(record["op_histogram"].values()) - 1


def test_every_lowering_keeps_the_signal(lowered):
    for record in lowered.values():
        logits = record["verification"]["logits"]
        assert logits["cosine"] > 0.9 and logits["sqnr_db"] > 8, record["file"]


def test_relu6_ranges_are_corrected_to_what_the_tensor_holds(lowered):
    from ai_edge_litert.tools import flatbuffer_utils
    from ai_edge_litert import schema_py_generated as schema

    record = lowered[Lowering.DECOMPOSED]
    assert record["conversion"]["ranges_corrected"] > 0
    data = (record["path"] / record["file"]).read_bytes()
    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph, codes = tree.subgraphs[0], tree.operatorCodes
    relu6_outputs = [op.outputs[0] for op in graph.operators
                     if max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode)
                     == schema.BuiltinOperator.ADD
                     and getattr(op.builtinOptions, "fusedActivationFunction",
                                 None) == schema.ActivationFunctionType.RELU6]
    assert len(relu6_outputs) >= 19                       # one ADD(+3)+RELU6 per h-swish
    for index in relu6_outputs:
        quant = graph.tensors[index].quantization
        low = (np.int32(-128) - quant.zeroPoint[0]) * quant.scale[0]
        high = (127 - quant.zeroPoint[0]) * quant.scale[0]
        assert -0.05 <= low <= 0.0 and 0.0 < high <= 6.05           # [0, 6], not the widened union


def test_observed_ranges_are_the_float_models_values():
    import tensorflow as tf

    inputs = tf.keras.Input((4,), batch_size=1)
    model = tf.keras.Model(inputs, tf.keras.layers.ReLU(6.0)(inputs * 2.0))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    data = converter.convert()
    images = np.array([[-1.0, 0.5, 2.0, 4.0], [0.0, 1.0, -3.0, 1.5]], np.float32)
    ranges = observed_ranges(data, images)
    assert sorted(ranges.values())[0] == (-3.0, 4.0)          # the input
    assert (0.0, 6.0) in ranges.values()                        # relu6(2x)
    assert correct_ranges(data,
                          images)[1] == 0                  # no recorded ranges to correct in a float model
