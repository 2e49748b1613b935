"""mnbench finetune / evaluate: a tiny labeled set made here, a real training run, fp32 and int8 exports.

The module trains V3-Small (alpha 0.35, 32 px) for a few epochs on 3 classes of drawn shapes (chance is
1/3), exports fp32 and int8 from the weights alone (configuration carried by their sidecar), and evaluates
both. Stated margin: int8 top-1 within INT8_MARGIN of fp32 on the held-out images.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mnbench.accuracy import datasets, metrics
from mnbench.accuracy.errors import WeightsFileError
from mnbench.accuracy.weights_file import carried_config, read_sidecar
from mnbench.cli import cli
from mnbench.commands.accuracy import evaluate, finetune

from .test_cli_models import run

CLASSES = ("disc", "square", "triangle")
INT8_MARGIN = 0.10          # int8 top-1 may be at most 10 points below fp32 (3 of 30 test images)
FAR_ABOVE_CHANCE = 0.8      # chance is 1/3


@pytest.fixture(scope="module", autouse=True)
def accuracy_commands():
    """Register the commands for these tests only (mnbench/commands/__init__.py lists the shipped ones)."""
    import mnbench.commands

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mnbench.commands, "COMMANDS", [*mnbench.commands.COMMANDS, evaluate, finetune])
        yield
    if evaluate not in mnbench.commands.COMMANDS:
        for command in (evaluate, finetune):
            cli.commands.pop(command.name, None)


def _draw(kind: str, rng: np.random.Generator, size: int = 40):
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(0, 90, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    half = int(rng.integers(9, 15))
    cx, cy = (int(v) for v in rng.integers(half + 2, size - half - 2, 2))
    colour = {"disc": (230, 60, 40), "square": (40, 220, 60), "triangle": (60, 80, 235)}[kind]
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
    box = (cx - half, cy - half, cx + half, cy + half)
    if kind == "disc":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    noise = rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8))


def make_shapes(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True)
        for index in range(per_class):
            suffix = ".png" if index % 2 else ".jpg"
            _draw(kind, rng).save(root / kind / f"{index:03d}{suffix}")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes(root / "train", 30, seed=1), make_shapes(root / "test", 10, seed=2)


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "shapes.weights.h5"
    code, stdout, stderr = run("finetune", "--version", "v3-small", "--alpha", "0.35", "--resolution", "32",
                               "--data", str(shapes[0]), "--epochs", "8", "--batch-size", "16", "--lr",
                               "3e-3", "--out", str(out), "--json")
    assert code == 0, stderr
    return out, json.loads(stdout)


@pytest.fixture(scope="module")
def exported(trained, shapes, tmp_path_factory):
    from export.pipeline import ExportRequest, export_many
    from export.quantization import Quant

    weights = trained[0]
    config = carried_config(weights)           # no flags: the configuration comes with the weights
    out = tmp_path_factory.mktemp("models")
    records = export_many([ExportRequest(config, quant, weights=weights, calib_dir=shapes[0],
                                         calib_samples=48)
                           for quant in (Quant.FP32, Quant.INT8)], out)
    return [out / record["file"] for record in records]


def test_finetune_writes_weights_that_carry_their_configuration(trained):
    weights, report = trained
    carried = read_sidecar(weights)
    assert carried.class_names == CLASSES and carried.config.num_classes == 3
    assert (carried.config.version, carried.config.alpha, carried.config.resolution) == ("v3-small", 0.35, 32)
    assert carried.record["preprocessing"]["input_range"] == [0.0, 255.0]
    assert report["train_images"] + report["val_images"] == 90 and report["val_images"] == 18
    assert 1 <= report["best_epoch"] <= report["epochs_run"] <= 8
    assert carried_config(weights, version="v3-small",
                          resolution=64).resolution == 64   # conv weights: any size
    with pytest.raises(WeightsFileError, match="alpha=0.35, not 0.5"):
        carried_config(weights, alpha=0.5)


def test_inference_mode_matches_batch_statistics_after_a_short_run(trained):
    bn = trained[1]["batchnorm"]
    assert bn["layers"] > 20 and bn["val_top1"] >= FAR_ABOVE_CHANCE
    assert abs(bn["val_top1"] - bn["val_top1_batch_statistics"]) <= 0.12


def test_reestimation_repairs_statistics_a_high_momentum_run_leaves_behind(trained, shapes):
    """The issue's case: moving statistics near their initial 0/1 (momentum 0.999, few steps)."""
    from mnbench.accuracy import batchnorm, pixels
    from mobilenets_tf.builder import build_from_config

    weights, _ = trained
    carried = read_sidecar(weights)
    model = build_from_config(carried.config, dropout=0.0)
    model.load_weights(weights)
    data = datasets.load(shapes[1])
    x = pixels.eval_inputs(pixels.load_pixels(data, 32), carried.config)
    y = np.asarray(data.labels)

    def inference_top1():
        return float(np.mean(np.argmax(np.asarray(model(x, training=False)), 1) == y))

    reference = batchnorm.batch_statistics_top1(model, x, y, batch_size=15)
    for layer in batchnorm.batchnorm_layers(model):
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    stale = inference_top1()
    train = datasets.load(shapes[0])
    batchnorm.reestimate(model, [pixels.eval_inputs(pixels.load_pixels(train, 32), carried.config)])
    assert reference >= FAR_ABOVE_CHANCE and stale < reference - 0.2
    assert abs(inference_top1() - reference) <= 0.12


def test_evaluate_fp32_and_int8_exports(exported, shapes, tmp_path):
    code, stdout, stderr = run("evaluate", *map(str, exported), "--data", str(shapes[1]), "--results",
                               str(tmp_path / "acc"), "--json")
    assert code == 0, stderr
    fp32, int8 = json.loads(stdout)
    assert (fp32["quant"], int8["quant"]) == ("fp32", "int8") and fp32["count"] == int8["count"] == 30
    assert fp32["top1"] >= FAR_ABOVE_CHANCE and int8["top1"] >= FAR_ABOVE_CHANCE
    assert int8["top1"] >= fp32["top1"] - INT8_MARGIN
    assert 0.0 <= fp32["top1"] <= fp32["top5"] <= 1.0 and fp32["top5_k"] == 3
    assert [c["class"] for c in fp32["per_class"]] == list(CLASSES)
    assert "weights" in fp32["class_names_source"] and int8["vs_first"]["agreement"] >= 0.8
    from mnbench.accuracy.results import COLUMN_NAMES, load

    frame = load(tmp_path / "acc")
    assert list(frame.columns) == list(COLUMN_NAMES) and len(frame) == 2
    assert set(frame["model_sha256"]) == {fp32["model_sha256"], int8["model_sha256"]}
    assert frame["top1"].tolist() == pytest.approx([fp32["top1"], int8["top1"]])


def test_evaluate_text_a_labels_file_and_limit(exported, shapes, tmp_path):
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for kind in CLASSES:
            for image in sorted((shapes[1] / kind).iterdir())[:4]:
                writer.writerow([image.resolve(), kind])
    code, stdout, stderr = run("evaluate", str(exported[1]), "--data", str(labels), "--no-store")
    assert code == 0, stderr
    assert "int8" in stdout and "12" in stdout and "labels file, 3 classes, 12 images" in stdout
    data = datasets.limit(datasets.load(shapes[1]), 5)
    assert len(data) == 5 and sorted(set(data.labels)) == [0, 1, 2]


def _corrupt(folder: Path) -> Path:
    (folder / "disc" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return folder


@pytest.mark.parametrize("layout, args, message", [
    ("empty", [], "is empty"),
    ("loose", [], "images but no class sub-folders: the images are unlabeled"),
    ("empty class", [], "holds no .jpg, .jpeg or .png images"),
    ("missing", [], "does not exist"),
    ("unreadable", [], "1 of 31 images in"),
    ("four classes", [], "has 3 classes but"),
    ("unknown class", ["--class-names", "NAMES"], "class(es) that"),
    ("labels missing image", [], "names 1 image(s) that do not exist"),
])
def test_evaluate_bad_input_is_one_line(exported, shapes, tmp_path, layout, args, message):
    data = tmp_path / "data"
    if layout == "loose":
        data.mkdir()
        _draw("disc", np.random.default_rng(0)).save(data / "a.png")
    elif layout == "empty class":
        make_shapes(data, 1, 0)
        (data / "zebra").mkdir()
    elif layout == "empty":
        data.mkdir()
    elif layout == "unreadable":
        _corrupt(make_shapes(data, 10, 0))
    elif layout in ("four classes", "unknown class"):
        make_shapes(data, 2, 0)
        (data / "zebra").mkdir()
        _draw("disc", np.random.default_rng(0)).save(data / "zebra" / "z.png")
        (tmp_path / "names.txt").write_text("\n".join(CLASSES) + "\n")
        args = [a.replace("NAMES", str(tmp_path / "names.txt")) for a in args]
    elif layout == "labels missing image":
        data = tmp_path / "labels.txt"
        data.write_text("nowhere.png disc\n")
    model = exported[0] if layout != "four classes" else _without_names(exported[0], tmp_path)
    code, stdout, stderr = run("evaluate", str(model), "--data", str(data), "--no-store", *args)
    assert code != 0 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("mnbench: error: ") and message in stderr, stderr


def _without_names(model: Path, tmp_path: Path) -> Path:
    """The same model file with no export sidecar beside it: nothing says what its outputs are called."""
    copy = tmp_path / "bare" / model.name
    copy.parent.mkdir()
    copy.write_bytes(model.read_bytes())
    return copy


def test_skip_unreadable_and_not_a_model(exported, tmp_path):
    data = _corrupt(make_shapes(tmp_path / "data", 3, 0))
    code, stdout, stderr = run("evaluate", str(exported[1]), "--data", str(data), "--no-store",
                               "--skip-unreadable", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)[0]["count"] == 9 and json.loads(stdout)[0]["skipped"] == 1
    (tmp_path / "fake.tflite").write_bytes(b"not a model at all")
    code, _, stderr = run("evaluate", str(tmp_path / "fake.tflite"), "--data", str(data), "--no-store")
    assert code != 0 and "not a .tflite model" in stderr and stderr.count("\n") == 1


@pytest.mark.parametrize("case, message", [
    ("one class", "training needs at least 2"),
    ("bad out", "must end in .weights.h5"),
    ("exists", "exists; pass --force"),
    ("one image per class", "a validation split needs at least 2 per class"),
    ("weights of another width", "are for alpha=0.35, not 0.5"),
])
def test_finetune_bad_input_is_one_line(trained, tmp_path, case, message):
    import shutil

    data = make_shapes(tmp_path / "data", 1 if case == "one image per class" else 3, 0)
    if case == "one class":
        shutil.rmtree(data / "square")
        shutil.rmtree(data / "triangle")
    out = tmp_path / ("w.h5" if case == "bad out" else "w.weights.h5")
    if case == "exists":
        out.write_bytes(b"")
    alpha = "0.5" if case == "weights of another width" else "0.35"
    extra = ["--weights", str(trained[0])] if case == "weights of another width" else []
    code, stdout, stderr = run("finetune", "--version", "v3-small", "--alpha", alpha, "--resolution", "32",
                               "--data", str(data), "--out", str(out), *extra)
    assert code != 0 and stderr.count("\n") == 1 and message in stderr, stderr


@pytest.fixture(scope="module")
def export_like():
    """A command with export's configuration options that prints what ``carried_options`` resolves."""
    import click

    from mnbench.commands.accuracy import carried_options
    from mnbench.commands.models import config_options

    @click.command()
    @click.option("--version", "versions", multiple=True)
    @config_options
    @click.option("--classes", "num_classes", type=int, default=1000)
    @click.option("--weights", type=click.Path(path_type=Path))
    @click.option("--calib-dir", type=click.Path(path_type=Path))
    @click.pass_context
    def probe(ctx, versions, alpha, resolution, knobs, num_classes, weights, calib_dir):
        click.echo(json.dumps(carried_options(ctx, versions, alpha, resolution, knobs, num_classes, weights,
                                              calib_dir), default=str))

    return probe


def test_export_options_come_from_the_weights(trained, shapes, export_like):
    from click.testing import CliRunner

    weights = str(trained[0])
    result = CliRunner().invoke(export_like, ["--weights", weights])
    carried = json.loads(result.output)
    assert carried["versions"] == ["v3-small"] and (carried["alpha"], carried["resolution"]) == (0.35, 32)
    assert carried["num_classes"] == 3 and carried["knobs"]["activation"] == "hswish"
    assert Path(carried["calib_dir"]) == shapes[0].resolve()   # calibrate on what the model was trained on
    result = CliRunner().invoke(export_like,
                                ["--weights", weights, "--resolution", "64", "--calib-dir", "elsewhere"])
    shown = json.loads(result.output)
    assert shown["resolution"] == 64 and shown["calib_dir"] == "elsewhere"
    for wrong, message in ((["--classes", "10"], "num_classes=3, not 10"),
                           (["--set", "activation=relu"], "knobs"),
                           (["--version", "v2"], "version=v3-small, not v2")):
        result = CliRunner().invoke(export_like, ["--weights", weights, *wrong])
        assert isinstance(result.exception, WeightsFileError) and message in str(result.exception)
    result = CliRunner().invoke(export_like, [])
    assert result.exit_code == 2 and "Missing option '--version'" in result.output
    plain = json.loads(CliRunner().invoke(export_like, ["--version", "v2", "--alpha", "0.5"]).output)
    assert (plain["versions"], plain["alpha"], plain["resolution"], plain["num_classes"]) == (["v2"], 0.5,
                                                                                              224, 1000)


def test_transfer_learning_starts_from_every_kind_of_weights_file(trained, tmp_path):
    """finetune --weights: our finetune output (other classes), keras.applications' ImageNet layout (1000)."""
    from mnbench.accuracy.finetune import initial_weights
    from mobilenets_tf import configure
    from mobilenets_tf.builder import build_from_config
    from mobilenets_tf.keras_apps import keras_application

    config = configure("v3-small", 0.35, 32, num_classes=2)
    model = build_from_config(config)
    described = initial_weights(model, config, trained[0])
    assert described["layers_new"] == ["logits"] and described["layers_copied"] > 30
    source = build_from_config(read_sidecar(trained[0]).config)
    source.load_weights(trained[0])
    assert np.array_equal(model.get_layer("stem").get_weights()[0], source.get_layer("stem").get_weights()[0])
    imagenet = tmp_path / "imagenet_layout.weights.h5"                # keras.applications' alphas: 0.75, 1.0
    keras_application(configure("v3-small", 0.75, 32)).save_weights(imagenet)
    config = configure("v3-small", 0.75, 32, num_classes=2)
    described = initial_weights(build_from_config(config), config, imagenet)
    assert described["layers_new"] == ["logits"] and described["layers_copied"] > 30   # 1000-class file


def test_stale_sidecar_is_refused(trained, tmp_path):
    weights = tmp_path / "copy.weights.h5"
    weights.write_bytes(trained[0].read_bytes() + b"changed")
    (tmp_path / "copy.weights.json").write_text(trained[0].with_suffix(".json").read_text())
    with pytest.raises(WeightsFileError, match="sha256 differs"):
        read_sidecar(weights)


def test_square_crop_centre_is_export_calibration_crop():
    from PIL import Image

    from export.calibration import preprocess
    from mnbench.accuracy.pixels import centre, square_crop

    rng = np.random.default_rng(3)
    for size in [(40, 40), (57, 33), (300, 451), (20, 90)]:
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        for resolution in (32, 64, 96):
            ours = centre(square_crop(image, resolution)[None], resolution)[0].astype(np.float32)
            np.testing.assert_array_equal(ours, preprocess(image, resolution, (0.0, 255.0)))


def test_top_k_counts_ties_fairly_and_the_intervals():
    scores = np.array([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [0.0, 0.0, 0.0]])
    assert metrics.topk_hits(scores, np.array([1, 1, 2]), 1).tolist() == [0.5, 1.0, 1 / 3]
    assert metrics.topk_hits(scores, np.array([1, 1, 2]), 2).tolist() == [1.0, 1.0, 2 / 3]
    low, high = metrics.wilson_interval(30, 30)
    assert 0.88 < low < 0.89 and high == 1.0
    assert metrics.mcnemar_p(0, 0) == 1.0 and metrics.mcnemar_p(0, 6) == pytest.approx(0.03125)
    assert metrics.mcnemar_p(600, 700) < 0.01                                    # big counts: no overflow
    assert datasets.sort_names(["10", "2", "1"]) == ["1", "2",
                                                     "10"] and datasets.sort_names(["b", "A"]) == ["A", "b"]
