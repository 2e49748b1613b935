"""Keras builders: shapes, cost of the built graph, knobs, keras.applications interchange."""

import csv
from pathlib import Path

import numpy as np
import pytest

from mobilenets_tf import configure, cost, list_versions
from mobilenets_tf.builder import build, build_from_config
from mobilenets_tf.keras_apps import keras_application, transfer_weights

from .helpers import images, randomize

import keras  # noqa: E402  (after mobilenets_tf, which silences TensorFlow's start-up logging)

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"

SMALL_CONFIGS = [(v, {}) for v in list_versions()] + [
    ("v1", {"separable": False}), ("v1", {"shallow": True}),
    ("v2", {"expansion": 4.0, "residual": False, "linear_bottleneck": False}),
    ("v3-large", {"activation": "swish", "stem_filters": 32, "last_stage": "original"}),
    ("v3-small", {"activation": "relu", "se": False}), ("v3-small", {"minimalistic": True}),
]


@pytest.mark.parametrize("version, knobs", SMALL_CONFIGS, ids=lambda v: str(v))
def test_builds_and_costs_agree_with_the_graph(version, knobs):
    config = configure(version, alpha=0.35, resolution=64, num_classes=10, knobs=knobs)
    model = build_from_config(config)
    assert model.output_shape == (None, 10)
    built, planned = cost(model), config.cost()
    assert [(r.name, r.params, r.macs) for r in built.rows] == [(r.name, r.params,
                                                                 r.macs) for r in planned.rows]
    out = model(images(version, resolution=64), training=False).numpy()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_layer_names_are_deterministic():
    first = [layer.name for layer in build("v3-small", resolution=64).layers]
    second = [layer.name for layer in build("v3-small", resolution=64).layers]
    assert first == second and "block01_se_reduce" in first and "head1" in first


def test_knobs_change_the_graph():
    def kinds(model):
        return {type(layer).__name__ for layer in model.layers} | {
            getattr(layer, "activation", None).__name__ for layer in model.layers if isinstance(layer,
                                                                                        keras.layers.Activation)}
    swish = kinds(build("v3-small", resolution=64, activation="swish"))
    assert "silu" in swish and "hard_silu" not in swish and "sigmoid" in swish
    no_residual = build("v2", resolution=64, residual=False)
    assert not any(isinstance(layer, keras.layers.Add) for layer in no_residual.layers)
    assert not any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in build("v1", resolution=64,
                                                                              separable=False).layers)


def test_include_top_false_and_fixed_batch():
    model = build("v2", alpha=0.5, resolution=96, include_top=False, batch_size=1)
    assert model.input_shape == (1, 96, 96, 3) and model.output_shape == (1, 3, 3, 1280)


INTERCHANGE = [("v1", 1.0, 128, False), ("v1", 0.25, 128, False), ("v2", 1.0, 96, False),
               ("v2", 1.4, 96, False),
               ("v2", 0.35, 96, False), ("v3-large", 1.0, 96, False), ("v3-large", 0.75, 96, False),
               ("v3-small", 1.0, 96, False), ("v3-small", 1.0, 96, True)]


@pytest.mark.parametrize("version, alpha, resolution, minimalistic", INTERCHANGE)
def test_keras_applications_weights_round_trip(version, alpha, resolution, minimalistic):
    knobs = {"minimalistic": True} if minimalistic else {}
    config = configure(version, alpha, resolution, knobs=knobs)
    # Logits, not probabilities: a softmax would hide differences.
    theirs = randomize(keras_application(config, classifier_activation=None), seed=3)
    ours = build_from_config(config, classifier_activation=None)
    transfer_weights(theirs, ours)
    x = images(version, resolution=resolution)
    expected = theirs(x, training=False).numpy()
    assert np.abs(ours(x, training=False).numpy() - expected).max() <= 1e-4
    assert np.abs(expected).max() > 1e-2                 # not a trivially zero output
    back = keras_application(config, classifier_activation=None)
    transfer_weights(ours, back)
    assert np.abs(back(x, training=False).numpy() - expected).max() == 0.0


def test_transfer_refuses_another_architecture():
    from mobilenets_tf.errors import SpecError
    with pytest.raises(SpecError, match="architectures differ"):
        transfer_weights(build("v3-small", resolution=64), build("v3-large", resolution=64))


def _keras_counts():
    with open(REFERENCE / "keras_param_counts.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            version = {"MobileNet": "v1", "MobileNetV2": "v2", "MobileNetV3Small": "v3-small",
                       "MobileNetV3Large": "v3-large"}[row["keras_function"]]
            yield (version, float(row["alpha"]), row["minimalistic"] == "True",
                   int(row["params_exact_computed"]))


@pytest.mark.parametrize("version, alpha, minimalistic, expected", list(_keras_counts()))
def test_total_parameters_equal_keras_applications(version, alpha, minimalistic, expected):
    # Keras counts BatchNorm moving statistics too; the same graph must give the same total.
    knobs = {"minimalistic": True} if minimalistic else {}
    assert build(version, alpha, 224, **knobs).count_params() == expected
