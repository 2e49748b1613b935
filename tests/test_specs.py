"""Tables, knobs and configuration validation: pure Python, no TensorFlow."""

import math

import pytest

from mobilenets_tf.errors import SpecError
from mobilenets_tf import configure, get_version, list_versions
from mobilenets_tf.plan import ClassifierLayer, ConvLayer, DwSepLayer, InvResLayer, PoolLayer
from mobilenets_tf.specs import Act, DwSep, InvRes, make_divisible, scale_filters


@pytest.mark.parametrize("version", list_versions())
def test_total_stride_is_32(version):
    strides = [getattr(row, "strides", 1) for row in get_version(version).arch.rows]
    assert math.prod(strides) == 32


@pytest.mark.parametrize("version", list_versions())
def test_default_plan_ends_in_7x7_then_classifier(version):
    plan = configure(version).plan()
    pool = next(layer for layer in plan.layers if isinstance(layer, PoolLayer))
    assert pool.in_size == 7
    assert isinstance(plan.layers[-1], ClassifierLayer) and plan.layers[-1].classes == 1000


def test_row_counts_match_the_papers():
    assert sum(isinstance(r, DwSep) for r in get_version("v1").arch.rows) == 13       # V1 Table 1
    assert sum(isinstance(r, InvRes) for r in get_version("v2").arch.rows) == 17      # V2 Table 2: sum of n
    assert sum(isinstance(r, InvRes) for r in get_version("v3-large").arch.rows) == 15  # V3 Table 1
    assert sum(isinstance(r, InvRes) for r in get_version("v3-small").arch.rows) == 11  # V3 Table 2


def test_v3_large_expansion_sizes_are_the_tables_exp_size():
    plan = configure("v3-large").plan()
    expanded = [layer.expanded for layer in plan.layers if isinstance(layer, InvResLayer)]
    assert expanded == [16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]


def test_v3_small_expansion_sizes_and_se_are_the_tables():
    blocks = [layer for layer in configure("v3-small").plan().layers if isinstance(layer, InvResLayer)]
    assert [b.expanded for b in blocks] == [16, 72, 88, 96, 240, 240, 120, 144, 288, 576, 576]
    assert [bool(b.se_filters) for b in blocks] == [True, False, False] + [True] * 8
    assert [b.kernel_size for b in blocks] == [3, 3, 3] + [5] * 8


def test_make_divisible_matches_reference_rounding():
    assert make_divisible(16 * 0.75) == 16
    assert make_divisible(18) == 24          # 16 would be more than 10 % below 18
    assert make_divisible(32 * 0.35) == 16
    assert scale_filters(1024, 0.75, divisor=1) == 768
    assert scale_filters(24, 0.35, divisor=1) == 8


def test_v2_keeps_1280_head_up_to_alpha_1_and_widens_above():
    def head(alpha):
        return next(layer.filters for layer in configure("v2", alpha).plan().layers
                    if isinstance(layer, ConvLayer) and layer.name == "head1")
    assert head(0.35) == head(1.0) == 1280
    assert head(1.4) == 1792


def test_any_alpha_and_resolution_resolve():
    plan = configure("v3-small", alpha=0.1, resolution=33).plan()
    assert plan.layers[0].out_size == 17
    assert all(getattr(layer, "filters", 8) >= 8 for layer in plan.layers)


@pytest.mark.parametrize("kwargs, message", [
    (dict(version="v4"), "unknown version 'v4'; valid: v1, v2, v3-large, v3-small"),
    (dict(version="v1", alpha=0), "alpha must be in (0, 2]"),
    (dict(version="v1", alpha=2.5), "alpha must be in (0, 2]"),
    (dict(version="v1", resolution=31), "resolution must be an integer >= 32"),
    (dict(version="v1", knobs={"activation": "relu"}),
     "unknown knob 'activation' for v1; valid: separable, shallow"),
    (dict(version="v3-small", knobs={"stem_filters": 24}), "stem_filters=24 is not valid"),
    (dict(version="v3-small", knobs={"activation": "gelu"}), "valid: hswish, swish, relu"),
    (dict(version="v2", knobs={"residual": "maybe"}), "knob residual takes a bool"),
])
def test_bad_configurations_name_what_is_valid(kwargs, message):
    with pytest.raises(SpecError) as error:
        configure(**kwargs)
    assert message in str(error.value)


def test_v1_knobs_rewrite_the_table():
    conv = configure("v1", knobs={"separable": False}).plan()
    assert not any(isinstance(layer, DwSepLayer) for layer in conv.layers)
    assert sum(isinstance(layer, ConvLayer) for layer in conv.layers) == 14
    shallow = configure("v1", knobs={"shallow": True}).plan()
    assert sum(isinstance(layer, DwSepLayer) for layer in shallow.layers) == 8


def test_v2_knobs():
    plan = configure("v2", knobs={"expansion": 4.0, "residual": False, "linear_bottleneck": False}).plan()
    blocks = [layer for layer in plan.layers if isinstance(layer, InvResLayer)]
    assert blocks[0].expanded == blocks[0].in_channels           # t = 1 stays
    assert blocks[1].expanded == 4 * blocks[1].in_channels
    assert not any(b.residual for b in blocks) and not any(b.linear for b in blocks)
    v2_blocks = [layer for layer in configure("v2").plan().layers if isinstance(layer, InvResLayer)]
    assert sum(b.residual for b in v2_blocks) == 10


def test_v3_knobs():
    relu = configure("v3-large", knobs={"activation": "relu", "se": False}).plan()
    assert all(getattr(layer, "activation", Act.RELU) in (Act.RELU, Act.LINEAR) for layer in relu.layers)
    assert not any(getattr(layer, "se_filters", 0) for layer in relu.layers)
    stem32 = configure("v3-large", knobs={"stem_filters": 32}).plan()
    assert stem32.layers[0].filters == 32
    original = configure("v3-large", knobs={"last_stage": "original"}).plan()
    assert [type(layer).__name__ for layer in original.layers[-4:]] == [
        "InvResLayer", "ConvLayer", "PoolLayer", "ClassifierLayer"]
    assert original.layers[-3].in_size == 7 and original.layers[-3].filters == 1280
    last_block = [layer for layer in original.layers if isinstance(layer, InvResLayer)][-1]
    assert (last_block.expanded, last_block.filters, last_block.kernel_size) == (960, 320, 3)
    minimal = configure("v3-small", knobs={"minimalistic": True}).plan()
    assert all(layer.kernel_size == 3 and not layer.se_filters
               for layer in minimal.layers if isinstance(layer, InvResLayer))


def test_layer_names_are_stable_across_width_and_resolution():
    names = [layer.name for layer in configure("v3-small").plan().layers]
    assert names == [layer.name for layer in configure("v3-small", 0.5, 96).plan().layers]
    assert names[:2] == ["stem", "block01"] and names[-3:] == ["pool", "head2", "logits"]
