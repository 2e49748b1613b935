"""Mixed precision: explicit float blocks have the promised structure; the auto decision follows its rules."""

import json
from pathlib import Path

import pytest

from export import mixed
from export.pipeline import ExportRequest, export
from export.quantization import Quant
from export.stem import Stem
from device_bench.tflite_file import describe
from export.errors import ExportError
from mobilenets_tf import configure
from tests.loopback_adb.fixtures import FAKE_BENCHMARK

from .test_cli_models import run

CONFIG = configure("v3-small", 0.5, 96)


def test_float_blocks_stay_float_inside_one_int8_partition(tmp_path):
    int8 = export(ExportRequest(CONFIG, Quant.INT8, calib_samples=16, stem=Stem.CONV), tmp_path)
    record = export(ExportRequest(CONFIG, Quant.INT8, calib_samples=16, float_blocks=("stem", "block01")),
                    tmp_path)
    assert record["file"] == "v3-small_a0.50_r96_int8_float-stem-block01.tflite"
    assert record["int8_choices"]["float_blocks"] == ["stem", "block01"]
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


class FakeTimer:
    """Block and whole-model times given by the test."""

    name, threads = "host", 2

    def __init__(self, blocks: dict, whole: dict | None = None) -> None:
        self.blocks, self.whole = blocks, whole

    def block_us(self, model: bytes, tag: str) -> dict:
        return self.blocks[tag]

    def whole_ms(self, models: dict) -> dict:
        return self.whole


@pytest.mark.parametrize("times, sqnr, chosen, reason", [
    ({"int8": 1.0, "mixed": 0.8}, {b"int8": 15.0, b"mixed": 15.2}, "mixed", "faster whole"),
    ({"int8": 1.0, "mixed": 1.1}, {b"int8": 15.0, b"mixed": 15.2}, "int8", "not faster"),
    ({"int8": 1.0, "mixed": 0.8}, {b"int8": 15.0, b"mixed": 14.0}, "int8", "lost more than"),
])
def test_decide(times, sqnr, chosen, reason):
    timer = FakeTimer({"fp32": {"stem": 100.0, "block01": 50.0}, "int8": {"stem": 200.0, "block01": 40.0}},
                      times)
    built = []
    model, record = mixed.decide(b"fp32", b"int8", lambda blocks: built.append(blocks) or b"mixed",
                                 lambda data: sqnr[data], timer)
    assert built == [("stem",)] and record["float_blocks"] == ["stem"]
    assert record["chosen"] == chosen and model == chosen.encode() and reason in record["reason"]


def test_decide_keeps_int8_when_no_block_is_faster_in_float():
    timer = FakeTimer({"fp32": {"stem": 10.0}, "int8": {"stem": 10.0}})
    model, record = mixed.decide(b"fp32", b"int8", None, None, timer)
    assert model == b"int8" and record["float_blocks"] == [] and "every block" in record["reason"]


@pytest.mark.timeout(300)
def test_auto_precision_on_a_phone_times_blocks_with_benchmark_model(adb_home, loopback_device, tmp_path):
    # Every block costs the same in fp32 and int8 except the stem; the mixed model is faster whole.
    loopback_device.set_benchmark("ok", avg_us_by_graph={"fp32-block-stem.": 100.0, "int8-block-stem.": 300.0,
                                                         "block-": 50.0, "mixed": 900.0, "int8": 1000.0})
    request = ExportRequest(CONFIG, Quant.INT8, calib_samples=8, precision="auto",
                            target=loopback_device.serial, benchmark_binary=FAKE_BENCHMARK)
    record = export(request, tmp_path / "models")
    decision = record["conversion"]["precision"]
    assert decision["target"] == loopback_device.serial and decision["threads"] == 2
    assert decision["float_blocks"] == ["stem"] and decision["chosen"] == "mixed"
    assert (decision["int8_ms"], decision["mixed_ms"]) == (1.0, 0.9)
    assert {row["block"]: (row["fp32_us"], row["int8_us"]) for row in decision["blocks"]}["stem"] == (100.0,
                                                                                                      300.0)
    assert record["op_histogram"]["CONV_2D:FLOAT32"] == 1
    assert "_precision-auto-127-0-0-1-" in record["file"]
    calls = [json.loads(line) for line in
             loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text().splitlines()]
    graphs = [Path(arg.split("=", 1)[1]).name
              for call in calls for arg in call["argv"] if arg.startswith("--graph=")]
    assert {"fp32-block-stem.tflite", "int8-block-stem.tflite", "int8.tflite", "mixed.tflite"} <= set(graphs)
    assert all("--num_threads=2" in call["argv"] for call in calls)


def test_auto_precision_on_a_phone_that_fails_is_one_line(adb_home, loopback_device, tmp_path):
    loopback_device.set_benchmark("crash")
    code, _, err = run("export", "--version", "v3-small", "--alpha", "0.5", "--resolution", "96", "--quant",
                       "int8",
                       "--calib-samples", "4", "--precision", "auto", "--target", loopback_device.serial,
                       "--benchmark-binary", str(FAKE_BENCHMARK), "--out", str(tmp_path / "m"))
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert loopback_device.serial in err and not list((tmp_path / "m").glob("*.tflite"))
    code, _, err = run("export", "--version", "v3-small", "--target", "R58M123")
    assert code != 0 and "only applies to --precision auto" in err


def test_auto_precision_on_the_host_records_every_block(tmp_path):
    record = export(ExportRequest(CONFIG, Quant.INT8, calib_samples=4, precision="auto", threads=1), tmp_path)
    decision = record["conversion"]["precision"]
    assert record["file"] == "v3-small_a0.50_r96_int8_precision-auto-t1.tflite"
    assert decision["target"] == "host" and decision["threads"] == 1
    blocks = [row["block"] for row in decision["blocks"]]
    assert blocks[0] == "stem" and blocks[-1] == "logits" and "block01" in blocks
    timed = {row["block"]: row for row in decision["blocks"]}
    assert timed["stem"]["fp32_us"] > 0 and timed["stem"]["int8_us"] > 0 and timed["block01"]["int8_us"] > 0
    assert decision["float_blocks"] == [row["block"] for row in decision["blocks"] if row["float"]]
    # Every stem lowering is timed whole beside the default (conv stem) model and the mix, if any.
    assert {"int8", "int8-stem-float", "int8-stem-s2d"} <= set(decision["candidates"])
    assert decision["chosen"] in decision["candidates"] and decision["reason"]
    fastest = min(decision["candidates"].values(), key=lambda c: c["ms"])
    assert decision["candidates"][decision["chosen"]]["ms"] == fastest["ms"] or "SQNR" in decision["reason"]
    stem = record["int8_choices"]["stem"]
    assert stem == {"int8-stem-float": "float", "int8-stem-s2d": "s2d"}.get(decision["chosen"], "conv")
    assert ("SPACE_TO_DEPTH:INT8" in record["op_histogram"]) == (stem == "s2d")
    float_convs = record["op_histogram"].get("CONV_2D:FLOAT32", 0)
    assert (float_convs > 0) == (decision["chosen"] == "mixed" or stem == "float")
    assert record["int8_choices"]["by"] == "precision auto" and record["int8_choices"]["measured_on"]["model"]
