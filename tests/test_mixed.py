"""Mixed precision: explicit float blocks have the promised structure; the auto decision follows its rules."""

import pytest

from export import mixed
from export.pipeline import ExportRequest, export
from export.quantization import Quant
from export.tflite_file import describe
from mnbench.errors import ExportError
from mobilenets_tf import configure

CONFIG = configure("v3-small", 0.5, 96)


def test_float_blocks_stay_float_inside_one_int8_partition(tmp_path):
    int8 = export(ExportRequest(CONFIG, Quant.INT8, calib_samples=16), tmp_path)
    record = export(ExportRequest(CONFIG, Quant.INT8, calib_samples=16, float_blocks=("stem", "block01")), tmp_path)
    assert record["file"] == "v3-small_a0.50_r96_int8_float-stem-block01.tflite"
    histogram = record["op_histogram"]
    assert histogram["CONV_2D:FLOAT32"] == 4 and histogram["DEPTHWISE_CONV_2D:FLOAT32"] == 1  # stem + block01
    assert histogram["DEQUANTIZE:FLOAT32"] >= 1 and histogram["QUANTIZE:INT8"] >= 1
    assert histogram["CONV_2D:INT8"] == int8["op_histogram"]["CONV_2D:INT8"] - 4
    assert record["inputs"][0]["dtype"] == record["outputs"][0]["dtype"] == "int8"
    assert describe(tmp_path / record["file"])["delegation"]["partitions"] == 1
    assert record["verification"]["logits"]["sqnr_db"] >= int8["verification"]["logits"]["sqnr_db"] - 0.5


def test_unknown_block_is_refused(tmp_path):
    with pytest.raises(ExportError, match="unknown block.*stem, block01"):
        export(ExportRequest(CONFIG, Quant.INT8, calib_samples=4, float_blocks=("block99",)), tmp_path)


def test_choose_float_blocks():
    fp32 = {"stem": 100.0, "block01": 50.0, "pool": 1.0}
    int8 = {"stem": 150.0, "block01": 52.0, "pool": 4.0}
    assert mixed.choose_float_blocks(fp32, int8) == ["stem"]     # block01: < 10 %; pool: < 5 us


@pytest.mark.parametrize("times, sqnr, chosen, reason", [
    ({"int8": 1.0, "mixed": 0.8}, {b"int8": 15.0, b"mixed": 15.2}, "mixed", "faster whole"),
    ({"int8": 1.0, "mixed": 1.1}, {b"int8": 15.0, b"mixed": 15.2}, "int8", "not faster"),
    ({"int8": 1.0, "mixed": 0.8}, {b"int8": 15.0, b"mixed": 14.0}, "int8", "lost more than"),
])
def test_decide(monkeypatch, times, sqnr, chosen, reason):
    monkeypatch.setattr(mixed, "block_times", lambda model, threads: (
        {"stem": 100.0, "block01": 50.0} if model == b"fp32" else {"stem": 200.0, "block01": 40.0}))
    monkeypatch.setattr(mixed, "whole_model_ms", lambda models, threads: times)
    built = []
    model, record = mixed.decide(b"fp32", b"int8", lambda blocks: built.append(blocks) or b"mixed",
                                 lambda data: sqnr[data], threads=2)
    assert built == [("stem",)] and record["float_blocks"] == ["stem"]
    assert record["chosen"] == chosen and model == chosen.encode() and reason in record["reason"]


def test_decide_keeps_int8_when_no_block_is_faster_in_float(monkeypatch):
    monkeypatch.setattr(mixed, "block_times", lambda model, threads: {"stem": 10.0})
    model, record = mixed.decide(b"fp32", b"int8", None, None, threads=1)
    assert model == b"int8" and record["float_blocks"] == [] and "every block" in record["reason"]
