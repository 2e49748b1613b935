"""Export: real TensorFlow conversion, the real LiteRT interpreter, sidecars, caching, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from export.pipeline import ExportRequest, export, model_stem
from export.quantization import IoType, Quant
from export.stem import Stem
from device_bench.tflite_file import describe, open_interpreter, read_bytes, sha256
from mobilenets_tf import configure

from .helpers import images, randomize
from .test_cli_models import run


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def int8_224(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    code, stdout, stderr = run("export", "--version", "v3-small", "--quant", "int8", "--stem", "conv",
                               "--calib-samples", "16", "--out", str(out), "--json")
    assert code == 0, stderr
    return out / "v3-small_a1.00_r224_int8.tflite", json.loads(stdout)[0]


def test_int8_is_full_integer_with_int8_io(int8_224):
    path, record = int8_224
    info = describe(path)
    assert {t["dtype"] for t in info["inputs"] + info["outputs"]} == {"int8"}
    assert set(info["tensor_types"]) <= {"int8", "int32"}          # no float tensor anywhere
    assert info["float_ops"] == [] and record["float_ops"] == []
    assert record["integer"] == info["integer"] == {"full_integer": True, "float_tensors": 0, "float_io": [],
                                                    "input_types": ["int8"], "output_types": ["int8"],
                                                    "blocking_ops": []}
    assert all(key.endswith(":INT8") for key in info["op_histogram"])


def test_int8_weights_are_per_channel(int8_224):
    interpreter = open_interpreter(read_bytes(int8_224[0]))
    conv_weights = [d for d in interpreter.get_tensor_details()
                    if d["dtype"] == np.int8 and len(d["shape"]) == 4
                    and d["quantization_parameters"]["scales"].size > 1]
    assert len(conv_weights) > 40


def test_sidecar_describes_the_file(int8_224):
    path, record = int8_224
    assert record == {**_sidecar(path), "cached": False}
    assert record["sha256"] == sha256(path.read_bytes()) and record["size_bytes"] == path.stat().st_size
    assert (record["params"], record["macs"]) == (2_536_800, 56_510_400)
    calibration = record["calibration"]
    assert calibration["samples"] == 16 and "scikit-image photographs" in calibration["source"]
    assert set(record["tool_versions"]) == {"mnbench", "tensorflow", "keras", "ai-edge-litert"}
    logits = record["verification"]["logits"]
    assert logits["images"] == 16 and 0.8 < logits["cosine"] <= 1.0 and logits["sqnr_db"] > 5
    assert record["inputs"][0]["scale"] > 0 and record["delegation"]["partitions"] >= 1


def test_configuration_is_embedded_in_the_model(int8_224):
    path, record = int8_224
    embedded = describe(path)["embedded"]
    assert embedded["config"] == record["config"] and embedded["quant"] == "int8"
    assert embedded["input_range"] == [0.0, 255.0]


def test_up_to_date_model_is_reused_and_force_rebuilds(int8_224, tmp_path):
    path, record = int8_224
    request = ExportRequest(configure("v3-small"), Quant.INT8, calib_samples=16, stem=Stem.CONV)
    again = export(request, path.parent)
    assert again["cached"] and again["sha256"] == record["sha256"]
    path.write_bytes(path.read_bytes()[:-1] + b"\0")               # tampered file: rebuilt
    rebuilt = export(request, path.parent)
    assert not rebuilt["cached"] and sha256(path.read_bytes()) == rebuilt["sha256"]


@pytest.mark.parametrize("version, quant", [("v2", "fp32"), ("v1", "fp16"), ("v3-large", "dynamic")])
def test_float_modes_at_224(tmp_path, version, quant):
    record = export(ExportRequest(configure(version), Quant(quant), calib_samples=8), tmp_path)
    info = describe(tmp_path / record["file"])
    assert info["inputs"][0]["dtype"] == info["outputs"][0]["dtype"] == "float32"
    assert info["inputs"][0]["shape"] == [1, 224, 224, 3]               # static batch of 1
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & {k.split(":")[0] for k in info["op_histogram"]}
    check = record["verification"]["outputs"]
    if quant == "fp32":
        assert check["max_abs_diff"] <= 1e-4 and info["delegation"]["partitions"] == 1
    else:
        assert record["verification"]["logits"]["cosine"] > 0.99
    expected = {"fp32": 4, "fp16": 2, "dynamic": 1}[quant]
    assert info["size_bytes"] < 4 * configure(version).cost().params * expected / 4 * 1.1


def test_uint8_io_and_file_name_encode_the_configuration(tmp_path):
    config = configure("v3-small", 0.5, 96, knobs={"activation": "relu"})
    record = export(ExportRequest(config, Quant.INT8, IoType.UINT8, calib_samples=8, verify=False), tmp_path)
    assert record["file"] == "v3-small_a0.50_r96_activation-relu_int8_iouint8.tflite"
    assert record["inputs"][0]["dtype"] == record["outputs"][0]["dtype"] == "uint8"
    # uint8 I/O is TFLite's QUANTIZE uint8 -> int8 after the input (and back before the output): integer
    assert record["integer"]["full_integer"] and record["integer"]["input_types"] == ["uint8"]
    assert model_stem(configure("v1", 0.25, 128), Quant.FP16) == "v1_a0.25_r128_fp16"


def test_fp32_export_with_our_weights_matches_the_keras_model(tmp_path):
    from mobilenets_tf.builder import build

    model = randomize(build("v2", 0.5, 96, num_classes=10), seed=7)
    weights = tmp_path / "w.weights.h5"
    model.save_weights(weights)
    code, out, err = run("export", "--version", "v2", "--alpha", "0.5", "--resolution", "96", "--classes",
                         "10",
                         "--weights", str(weights), "--calib-samples", "8", "--out", str(tmp_path), "--json")
    assert code == 0, err
    record = json.loads(out)[0]
    assert record["weights"]["sha256"] and "same layer layout" in record["weights"]["source"]
    x = images("v2", count=4, resolution=96)
    interpreter = open_interpreter(read_bytes(tmp_path / record["file"]))
    for image, expected in zip(x, model.predict(x, verbose=0)):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
        assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(model.predict(x, verbose=0)).max() > 0.2          # a real, peaked output


@pytest.mark.parametrize("version, application, how", [
    ("v3-small", "MobileNetV3Small", "same layer layout"),        # loads directly
    ("v2", "MobileNetV2",
     "keras.applications weights, transferred"),  # Dense head: goes through the interchange
])
def test_keras_applications_weights_file(tmp_path, version, application, how):
    import keras

    theirs = randomize(getattr(keras.applications, application)(input_shape=(96, 96, 3), weights=None,
                                                                classes=10), seed=5)
    weights = tmp_path / "keras_app.weights.h5"
    theirs.save_weights(weights)
    record = export(ExportRequest(configure(version, 1.0, 96, 10), Quant.FP32, weights=weights,
                                  calib_samples=8), tmp_path)
    assert how in record["weights"]["source"]
    x = images(version, count=2, resolution=96)
    interpreter = open_interpreter(read_bytes(tmp_path / record["file"]))
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[:1])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert np.abs(got - theirs.predict(x[:1], verbose=0)).max() <= 1e-4


def test_weights_of_another_architecture_are_refused_and_nothing_is_written(tmp_path):
    from mobilenets_tf.builder import build

    weights = tmp_path / "v1.weights.h5"
    build("v1", 0.25, 64).save_weights(weights)
    out = tmp_path / "out"
    code, stdout, err = run("export", "--version", "v3-small", "--resolution", "64", "--weights",
                            str(weights), "--calib-samples", "4", "--out", str(out))
    assert code != 0 and err.startswith("mnbench: error: weights") and err.count("\n") == 1
    assert not list(out.glob("*.tflite")) and not list(out.glob("*.partial"))


def _write_images(folder: Path, count: int, seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")


def test_calibration_folder_recursive_with_an_unreadable_image(tmp_path, caplog):
    _write_images(tmp_path / "calib" / "a", 3)
    _write_images(tmp_path / "calib" / "b" / "c", 2, seed=1)
    (tmp_path / "calib" / "broken.jpg").write_bytes(b"not a jpeg")
    record = export(ExportRequest(configure("v1", 0.25, 64), Quant.INT8, calib_dir=tmp_path / "calib",
                                  calib_samples=100), tmp_path / "out")
    calibration = record["calibration"]
    assert calibration["samples"] == 5 and str(tmp_path / "calib") in calibration["source"]
    assert "skipping unreadable image" in caplog.text and "broken.jpg" in caplog.text


@pytest.mark.parametrize("args, message", [
    (["--calib-dir", "{tmp}/missing"], "does not exist"),
    (["--calib-dir", "{tmp}/empty"], "holds no .jpg, .jpeg or .png files"),
    (["--calib-dir", "{tmp}/broken"], "no readable image in calibration folder"),
    (["--out", "/proc/forbidden"], "cannot create output folder"),
    (["--alpha", "0"], "alpha must be in (0, 2]"),
    (["--resolution", "31"], "resolution must be an integer >= 32"),
    (["--quant", "int4"], "'int4' is not one of"),
    (["--calib-samples", "0"], "0 is not in the range x>=1"),
    (["--weights", "{tmp}/none.h5"], "weights file"),
])
def test_bad_input(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG garbage")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "out"
    if "--out" not in args:
        args += ["--out", str(out)]
    code, stdout, err = run("export", "--version", "v1", "--resolution", "64", "--quant", "int8", *args)
    assert code != 0 and stdout == "" and err.count("\n") == 1 and message in err, err
    assert not out.exists() or not any(out.iterdir())


def test_inspect_cli(int8_224):
    code, out, _ = run("inspect", str(int8_224[0]))
    assert code == 0 and "v3-small alpha=1 resolution=224" in out and "CONV_2D:INT8" in out
    code, out, _ = run("inspect", str(int8_224[0]), "--json")
    assert json.loads(out)["delegation"]["partitions"] >= 1


def test_cache_key_code_covers_the_slicing_that_mixed_precision_uses(tmp_path):
    """Editing device_bench (whose slicing decides --float-blocks and --precision auto models) makes every
    cached model out of date; editing the command line does not."""
    import shutil

    from export.pipeline import code_digest

    root = Path(__file__).resolve().parents[1]
    for package in ("mobilenets_tf", "device_bench", "export", "mnbench"):
        shutil.copytree(root / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(tmp_path)
    assert before == code_digest(root)
    with open(tmp_path / "mnbench" / "cli.py", "a") as handle:
        handle.write("# an edit above the exporter\n")
    assert code_digest(tmp_path) == before
    with open(tmp_path / "device_bench" / "slices.py", "a") as handle:
        handle.write("# an edit to the slicing\n")
    assert code_digest(tmp_path) != before
