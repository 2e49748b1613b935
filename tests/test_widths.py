"""Per-layer widths (NetAdapt's configuration): plan, constraints, cost, Keras graph, files carrying them."""

import json

import numpy as np
import pytest

from mobilenets_tf.errors import SpecError
from mobilenets_tf import ModelConfig, configure, cost, list_versions
from mobilenets_tf.builder import build_from_config

from .helpers import images

import keras  # noqa: E402


def test_every_block_expansion_and_every_stage_output_is_settable():
    plan = configure("v3-small", 1.0, 224, 10).plan()
    widths = plan.widths()
    expanding = [layer.name for layer in plan.layers if getattr(layer, "expand", False)]
    assert [k for k in widths if k.endswith(".expand")] == [f"{name}.expand" for name in expanding]
    assert len(expanding) == 10                       # block01 (expansion 1) has no expansion layer
    stages = plan.stages()
    assert stages["stem"] == "stage01" and stages["head2"] == "stage08"
    # the three 40-channel blocks are joined by residual sums: one stage, one setting
    assert stages["block04"] == stages["block05"] == stages["block06"] == "stage04"
    assert widths["stage04.out"] == 40 and widths["block05.expand"] == 240


def test_residual_joined_blocks_share_the_width_they_are_given():
    config = configure("v3-small", 1.0, 224, 10, widths={"stage04.out": 32, "block05.expand": 200})
    layers = {layer.name: layer for layer in config.plan().layers}
    assert [layers[b].filters for b in ("block04", "block05", "block06")] == [32, 32, 32]
    assert [layers[b].in_channels for b in ("block05", "block06", "block07")] == [32, 32, 32]
    assert layers["block05"].residual and layers["block06"].residual
    assert layers["block05"].expanded == 200 and layers["block05"].se_filters == 48   # SE follows its width
    assert layers["block06"].expanded == 240                                          # others keep theirs


def test_a_stage_width_reaches_a_following_expansion_free_block():
    config = configure("v3-large", 1.0, 224, widths={"stage01.out": 8})
    layers = {layer.name: layer for layer in config.plan().layers}
    assert layers["block01"].residual and not layers["block01"].expand
    assert (layers["stem"].filters, layers["block01"].expanded, layers["block01"].filters) == (8, 8, 8)


@pytest.mark.parametrize("widths, message", [
    ({"block01.expand": 8}, "no width 'block01.expand'"),       # no expansion layer to set
    ({"block05.out": 8}, "no width 'block05.out'"),             # output widths are per stage
    ({"stage04.out": 0}, "positive integer"),
    ({"stage04.out": 12.5}, "positive integer"),
    ({"stage99.out": 8}, "no width 'stage99.out'"),
])
def test_bad_widths_are_refused(widths, message):
    with pytest.raises(SpecError, match=message):
        configure("v3-small", 1.0, 224, 10, widths=widths)


def test_widths_equal_to_alpha_are_dropped_and_cost_follows():
    uniform = configure("v3-small", 0.75, 96, 10)
    same = configure("v3-small", 0.75, 96, 10, widths=uniform.plan().widths())
    assert same == uniform and "widths" not in same.as_dict()
    thinner = configure("v3-small", 0.75, 96, 10, widths={"block10.expand": 256})
    assert thinner.widths == {"block10.expand": 256}
    assert thinner.cost().macs < uniform.cost().macs and thinner.cost().params < uniform.cost().params
    assert ModelConfig.from_dict(json.loads(thinner.to_json())) == thinner


@pytest.mark.parametrize("version", list_versions())
def test_keras_graph_has_the_planned_widths_and_weights_load_by_file(version, tmp_path):
    base = configure(version, 0.35, 64, 5)
    keys = list(base.plan().widths())
    widths = {key: max(1, base.plan().widths()[key] - 8) for key in keys[1::2]}
    config = configure(version, 0.35, 64, 5, widths=widths)
    model = build_from_config(config)
    assert [(r.name, r.params, r.macs) for r in cost(model).rows] == \
        [(r.name, r.params, r.macs) for r in config.cost().rows]
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    again = build_from_config(ModelConfig.from_dict(json.loads(config.to_json())))
    again.load_weights(path)
    batch = images(version, resolution=64)
    np.testing.assert_allclose(again(batch, training=False), model(batch, training=False), atol=1e-6)
    with pytest.raises(ValueError):
        build_from_config(base).load_weights(path)      # the uniform model does not take them


def test_export_names_models_with_widths_apart():
    from export.pipeline import model_stem
    from export.quantization import Quant

    uniform = configure("v3-small", 1.0, 224)
    one = configure("v3-small", 1.0, 224, widths={"block10.expand": 512})
    two = configure("v3-small", 1.0, 224, widths={"block10.expand": 504})
    names = {model_stem(c, Quant.FP32) for c in (uniform, one, two)}
    assert len(names) == 3 and model_stem(uniform, Quant.FP32) == "v3-small_a1.00_r224_fp32"
    keras.backend.clear_session()
