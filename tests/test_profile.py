"""Profiling slices: they partition the model, and each computes exactly what the whole model computes."""

import numpy as np
import pytest

from device_bench.profile import _tree, cut, groups, profile
from export.pipeline import ExportRequest, export
from export.quantization import Quant
from export.tflite_file import open_interpreter
from mobilenets_tf import configure

from .test_cli_models import run


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    record = export(ExportRequest(configure("v3-small", 0.35, 64), Quant.INT8, calib_samples=4, verify=False), out)
    return out / record["file"]


def test_blocks_partition_the_operators(int8_model):
    tree = _tree(int8_model.read_bytes())
    blocks = groups(tree, "block")
    labels = [label for label, _ in blocks]
    assert labels[:2] == ["stem", "block01"] and labels[-1] == "logits" and "other" not in labels
    indices = sorted(i for _, ops in blocks for i in ops)
    assert indices == list(range(len(tree.subgraphs[0].operators)))
    assert len(groups(tree, "op")) == len(indices)


def test_a_slice_computes_what_the_whole_model_computes(int8_model):
    data = int8_model.read_bytes()
    whole = open_interpreter(data, preserve_all_tensors=True)
    x = np.random.default_rng(0).integers(-128, 128, whole.get_input_details()[0]["shape"]).astype(np.int8)
    whole.set_tensor(whole.get_input_details()[0]["index"], x)
    whole.invoke()
    tree = _tree(data)
    for label, indices in groups(tree, "block")[3:6]:
        part = open_interpreter(cut(tree, indices))
        for detail in part.get_input_details():
            part.set_tensor(detail["index"], whole.get_tensor(detail["index"]))
        part.invoke()
        for detail in part.get_output_details():
            np.testing.assert_array_equal(part.get_tensor(detail["index"]), whole.get_tensor(detail["index"]),
                                          err_msg=label)


def test_profile_report(int8_model):
    report = profile(int8_model, by="op")
    assert report["whole_us"] > 0 and all(row["median_us"] > 0 for row in report["slices"])
    assert report["sum_us"] == pytest.approx(sum(row["median_us"] for row in report["slices"]))
    assert report["sum_us"] == pytest.approx(sum(report["by_op_type"].values()))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= set(report["by_op_type"])


def test_profile_cli_and_phone_target(int8_model):
    code, out, _ = run("profile", str(int8_model))
    assert code == 0 and "sum of slices" in out and "stem" in out
    code, _, err = run("profile", str(int8_model), "--target", "R58M123")
    assert code != 0 and "mnbench device" in err
