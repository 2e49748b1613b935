"""Stem lowerings of int8 models: the space-to-depth rewrite is the same function, each lowering has the
promised graph, the default (conv) keeps every version full integer, the sidecar and `inspect` say what was
chosen, where, and whether the model is full integer."""

import json

import numpy as np
import pytest

from device_bench.host import cpu_facts
from export.mixed import decide
from export.pipeline import ExportRequest, export
from export.quantization import Quant
from export.stem import Stem, default_stem, effective_stem, rewrite_stem, s2d_applies, s2d_kernel
from export.errors import ExportError
from mobilenets_tf import configure

from .test_cli_models import run

CONFIG = configure("v3-small", 0.5, 96)


def _same_conv_stride2(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """TensorFlow 'same' 3x3 stride-2 convolution of an (H, W, C) image, written out by hand."""
    height, width = image.shape[:2]
    out_h, out_w = -(-height // 2), -(-width // 2)
    pad_h, pad_w = max((out_h - 1) * 2 + 3 - height, 0), max((out_w - 1) * 2 + 3 - width, 0)
    padded = np.pad(image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    return np.stack([np.stack([np.einsum("yxc,yxco->o", padded[2 * i:2 * i + 3, 2 * j:2 * j + 3], kernel)
                               for j in range(out_w)]) for i in range(out_h)])


def _s2d_then_conv(image: np.ndarray, kernel2: np.ndarray) -> np.ndarray:
    """space_to_depth(image, 2) (TensorFlow's channel order), then a 2x2 stride-1 'same' convolution."""
    height, width, channels = image.shape
    blocks = image.reshape(height // 2, 2, width // 2, 2, channels).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(height // 2, width // 2, 4 * channels)
    padded = np.pad(blocks, ((0, 1), (0, 1), (0, 0)))        # 'same' for 2x2 stride 1: one after
    return np.stack([np.stack([np.einsum("yxc,yxco->o", padded[i:i + 2, j:j + 2], kernel2)
                               for j in range(width // 2)]) for i in range(height // 2)])


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_s2d_kernel_computes_the_same_convolution(size):
    rng = np.random.default_rng(0)
    image, kernel = rng.normal(size=(*size, 3)), rng.normal(size=(3, 3, 3, 5))
    expected = _same_conv_stride2(image, kernel)
    assert np.abs(_s2d_then_conv(image, s2d_kernel(kernel)) - expected).max() < 1e-9
    wrong = s2d_kernel(kernel)[::-1]                 # taps in the other order: not the same function
    assert np.abs(_s2d_then_conv(image, wrong) - expected).max() > 0.1


def test_default_stem_is_the_integer_convolution_for_every_version():
    for config in (configure("v1"), configure("v2", 0.35, 96), configure("v3-large"), configure("v3-small"),
                   configure("v3-small", knobs={"activation": "relu"})):
        assert default_stem(config) is Stem.CONV


@pytest.fixture(scope="module")
def keras_model():
    from export.weights import build_model

    images = np.random.default_rng(1).uniform(0, 255, (4, 96, 96, 3)).astype(np.float32)
    return build_model(CONFIG, None, images)[0], images


def test_s2d_rewrite_equals_keras(keras_model):
    model, images = keras_model
    rewritten = rewrite_stem(model, Stem.S2D)
    assert type(rewritten.get_layer("stem")).__name__ == "SpaceToDepthConv"
    assert rewritten.get_layer("stem").get_weights()[0].shape == (2, 2, 12, 16)
    expected = model.predict(images, verbose=0)
    assert np.abs(rewritten.predict(images, verbose=0) - expected).max() < 1e-4
    assert rewrite_stem(model, Stem.CONV) is model


def test_s2d_needs_an_even_input():
    from mobilenets_tf.builder import build_from_config

    odd = build_from_config(configure("v3-small", 0.5, 97), batch_size=1)
    assert "not of even height and width" in s2d_applies(odd)
    stem, note = effective_stem(odd, Stem.S2D)
    assert stem is Stem.CONV and "s2d does not apply" in note["fallback"]
    with pytest.raises(ExportError, match="--stem s2d: the input"):
        rewrite_stem(odd, Stem.S2D)


@pytest.fixture(scope="module")
def stems(tmp_path_factory):
    out = tmp_path_factory.mktemp("stems")
    return {stem: export(ExportRequest(CONFIG, Quant.INT8, calib_samples=16, stem=stem), out) | {"path": out}
            for stem in Stem}


def test_float_stem_is_float_then_quantized(stems):
    record = stems[Stem.FLOAT]
    assert record["file"] == "v3-small_a0.50_r96_int8_stem-float.tflite"
    histogram = record["op_histogram"]
    assert histogram["CONV_2D:FLOAT32"] == 1 and histogram["HARD_SWISH:FLOAT32"] == 1   # builtin h-swish
    assert histogram["DEQUANTIZE:FLOAT32"] == 1 and histogram["QUANTIZE:INT8"] == 1
    assert record["inputs"][0]["dtype"] == record["outputs"][0]["dtype"] == "int8"
    assert record["delegation"]["partitions"] == 1 and record["delegation"]["ops_outside_delegate"] == {}
    choices = record["int8_choices"]
    assert choices["stem"] == "float" and choices["float_blocks"] == ["stem"] and choices["by"] == "fixed"
    assert choices["exported_on"]["model"] == cpu_facts()["model"]


def test_conv_and_s2d_stems_are_full_integer(stems):
    conv, s2d = stems[Stem.CONV], stems[Stem.S2D]
    assert conv["file"] == "v3-small_a0.50_r96_int8.tflite"            # the default: no suffix
    assert s2d["file"].endswith("_int8_stem-s2d.tflite")
    for record in (conv, s2d):
        assert all(key.endswith(":INT8") for key in record["op_histogram"]), record["op_histogram"]
        assert record["integer"]["full_integer"] and record["integer"]["blocking_ops"] == []
        assert record["delegation"]["partitions"] == 1 and record["delegation"]["ops_outside_delegate"] == {}
    assert s2d["op_histogram"]["SPACE_TO_DEPTH:INT8"] == 1
    assert "SPACE_TO_DEPTH:INT8" not in conv["op_histogram"]
    assert s2d["op_histogram"]["CONV_2D:INT8"] == conv["op_histogram"]["CONV_2D:INT8"]
    assert s2d["int8_choices"]["stem"] == "s2d" and conv["int8_choices"]["stem"] == "conv"


def test_float_stem_names_what_a_strict_integer_delegate_would_not_take(stems):
    """The float stem: its input DEQUANTIZE, the float input scaling (MUL, ADD), convolution and HARD_SWISH,
    and the QUANTIZE after it; inspect says so in one line, and "yes" for the default."""
    integer = stems[Stem.FLOAT]["integer"]
    assert not integer["full_integer"] and integer["float_io"] == []
    assert integer["input_types"] == integer["output_types"] == ["int8"]
    ops = [entry.split(":")[1] for entry in integer["blocking_ops"]]
    assert ops[0] == "DEQUANTIZE" and ops[-1] == "QUANTIZE" and {"CONV_2D", "HARD_SWISH"} <= set(ops)
    assert len(ops) == 6 and integer["float_tensors"] == 9
    record = stems[Stem.FLOAT]
    code, out, err = run("inspect", str(record["path"] / record["file"]))
    assert code == 0, err
    assert "full integer: no (9 floating-point tensor(s)); operators a strict integer delegate would not " \
           "take: DEQUANTIZE x1, " in out and "HARD_SWISH x1" in out
    default = stems[Stem.CONV]
    code, out, err = run("inspect", str(default["path"] / default["file"]))
    assert code == 0 and "full integer: yes (no floating-point tensor; input int8, output int8)" in out


def test_default_export_of_every_version_is_full_integer(tmp_path):
    """V1, V2 and V3-Large as `mnbench export --quant int8` writes them by default (V3-Small: above)."""
    code, out, err = run("export", "--version", "v1", "--version", "v2", "--version", "v3-large",
                         "--alpha", "0.35", "--resolution", "64", "--quant", "int8", "--calib-samples", "4",
                         "--no-verify", "--out", str(tmp_path), "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [r["file"] for r in records] == [f"{v}_a0.35_r64_int8.tflite" for v in ("v1", "v2", "v3-large")]
    for record in records:
        assert record["integer"]["full_integer"], (record["file"], record["integer"])
        assert record["inputs"][0]["dtype"] == record["outputs"][0]["dtype"] == "int8"
        assert all(key.endswith(":INT8") for key in record["op_histogram"]), record["op_histogram"]
        assert record["int8_choices"]["stem"] == "conv" and record["int8_choices"]["float_blocks"] == []
        assert record["delegation"]["partitions"] == 1 and record["delegation"]["ops_outside_delegate"] == {}
    assert "note:" not in err                                   # nothing to say about a full-integer model


def test_stem_lowerings_keep_the_fidelity(stems):
    conv = stems[Stem.CONV]["verification"]["logits"]["sqnr_db"]
    assert stems[Stem.S2D]["verification"]["logits"]["sqnr_db"] >= conv - 0.2       # same int8 weights
    assert stems[Stem.FLOAT]["verification"]["logits"]["sqnr_db"] >= conv - 0.2     # float cannot lose


def test_inspect_says_what_was_chosen_and_on_which_cpu(tmp_path):
    record = export(ExportRequest(CONFIG, Quant.INT8, calib_samples=16, stem=Stem.S2D), tmp_path)
    path = tmp_path / record["file"]
    code, out, err = run("inspect", str(path))
    assert code == 0, err
    expected = "int8 choices: stem s2d, float blocks: none; fixed defaults, exported on "
    expected += cpu_facts()["model"]
    assert expected in out
    code, out, _ = run("inspect", str(path), "--json")
    assert json.loads(out)["embedded"]["int8_choices"]["stem"] == "s2d"


def test_cli_stem_option(tmp_path):
    code, _, err = run("export", "--version", "v3-small", "--quant", "int8", "--stem", "sideways")
    assert code == 2 and "Traceback" not in err


def test_cpu_facts_reads_the_int8_flags():
    intel = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f avx512_vnni " \
            "avx_vnni " \
            "amx_bf16 amx_int8 amx_tile\n"
    assert cpu_facts(intel)["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_facts(intel)["flags"] == ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nHardware\t: Qualcomm SM8650\n"
    assert cpu_facts(arm)["flags"] == ["neon_dotprod", "neon_i8mm"]
    assert cpu_facts(arm)["model"] == "Qualcomm SM8650"


class Timer:
    name, threads, cpu = "host", 1, {"model": "Test CPU", "flags": ["avx512_vnni"]}

    def __init__(self, whole: dict) -> None:
        self.whole = whole

    def block_us(self, model, tag):
        return {"stem": 10.0, "block01": 10.0}

    def whole_ms(self, models):
        return {name: self.whole[name] for name in models}


@pytest.mark.parametrize("whole, sqnr, chosen", [
    ({"int8": 1.0, "int8-stem-conv": 0.8, "int8-stem-s2d": 0.9}, {}, "int8-stem-conv"),
    ({"int8": 1.0, "int8-stem-conv": 1.1, "int8-stem-s2d": 1.2}, {}, "int8"),
    ({"int8": 1.0, "int8-stem-conv": 0.8, "int8-stem-s2d": 0.9}, {b"int8-stem-conv": 10.0}, "int8-stem-s2d"),
])
def test_auto_compares_every_stem_lowering_whole(whole, sqnr, chosen):
    alternatives = {"int8-stem-conv": b"int8-stem-conv", "int8-stem-s2d": b"int8-stem-s2d"}
    model, record = decide(b"fp32", b"int8", None, lambda data: sqnr.get(data, 15.0), Timer(whole),
                           alternatives)
    assert record["chosen"] == chosen and model == chosen.encode()
    assert set(record["candidates"]) == {"int8", *alternatives}
    assert record["measured_on"] == Timer.cpu
