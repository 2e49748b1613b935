"""mnbench adapt: budget schedule, width proposals, probe packing, the latency table, weight carry-over."""

import json

import numpy as np
import pytest

from mnbench.adapt.budget import Budget
from mnbench.adapt.errors import AdaptError
from mnbench.adapt.latency import LatencyTable
from mnbench.adapt.proposals import (GRANULE, Proposal, best, estimate_ms, narrower, objective, pack,
                                     signature, touched, with_width)
from mobilenets_tf import configure

from .helpers import images

CONFIG = configure("v3-small", 0.5, 64, 3)


# ---- budget --------------------------------------------------------------------------------------------

def test_budget_from_a_ratio_and_the_targets_step_down_to_it():
    budget = Budget.make(10.0, budget_ratio=0.8, step=0.05)
    assert (budget.budget_ms, budget.step_ms) == pytest.approx((8.0, 0.5))
    assert budget.target(10.0) == pytest.approx(9.5)
    assert budget.target(8.3) == pytest.approx(8.0)          # never below the budget
    assert not budget.met(8.01) and budget.met(8.0)
    assert "NOT met" in budget.shortfall(8.4) and "80 % of the way" in budget.shortfall(8.4)
    assert budget.shortfall(7.9).startswith("within the budget")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "one of"), ({"budget_ms": 1.0, "budget_ratio": 0.5}, "one of"),
    ({"budget_ms": 12.0}, "already meets"), ({"budget_ratio": 1.0}, r"\(0, 1\)"),
    ({"budget_ms": 5.0, "step": 0.0}, "--step"), ({"budget_ms": -1.0}, "positive"),
])
def test_bad_budgets_are_refused(kwargs, message):
    with pytest.raises(AdaptError, match=message):
        Budget.make(10.0, **kwargs)


# ---- proposals -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("width, steps, expected", [(96, 1, 88), (96, 3, 72), (12, 1, 8), (16, 1, 8),
                                                     (8, 1, None), (16, 2, None), (100, 1, 96)])
def test_narrower_stays_on_the_grid_and_above_one_granule(width, steps, expected):
    assert narrower(width, steps) == expected
    if expected is not None:
        assert expected % GRANULE == 0 and expected < width


def test_a_proposal_changes_one_width_and_touches_only_the_layers_that_read_or_write_it():
    expand = with_width(CONFIG, "block05.expand", 64)
    assert expand.plan().widths()["block05.expand"] == 64
    assert touched(CONFIG, expand) == {"block05"}
    stage = with_width(CONFIG, "stage04.out", 16)
    # at alpha 0.5 the 40- and 48-channel stages both round to 24: residual sums join block04..block08
    stage04 = [name for name, stage in CONFIG.plan().stages().items() if stage == "stage04"]
    assert stage04 == [f"block0{i}" for i in range(4, 9)]
    assert touched(CONFIG, stage) == {f"block0{i}" for i in range(4, 10)}       # block09 reads the stage


def test_packed_probes_give_every_proposal_its_own_layer_shapes():
    widths = CONFIG.plan().widths()
    proposals = [Proposal(key, narrower(w, 1), with_width(CONFIG, key, narrower(w, 1)))
                 for key, w in widths.items() if narrower(w, 1)]
    probes = pack(CONFIG, proposals)
    assert len(probes) < len(proposals)                 # merging happened
    assert sorted(p.key for _, members in probes for p in members) == sorted(p.key for p in proposals)
    for probe, members in probes:
        in_probe = {layer.name: signature(layer) for layer in probe.plan().layers}
        for proposal in members:
            alone = {layer.name: signature(layer) for layer in proposal.config.plan().layers}
            for name in touched(CONFIG, proposal.config):
                assert in_probe[name] == alone[name]


class FakeTable:
    def __init__(self, us_per_channel):
        self.rate = us_per_channel

    def layer_us(self, layer):
        return self.rate * getattr(layer, "expanded", getattr(layer, "filters", 0))


def test_estimate_is_the_measured_latency_plus_the_tables_difference():
    proposed = with_width(CONFIG, "block05.expand", 64)
    before = {layer.name: layer for layer in CONFIG.plan().layers}["block05"].expanded
    assert estimate_ms(2.0, CONFIG, proposed, FakeTable(1.0)) == pytest.approx(2.0 + (64 - before) / 1000)


def test_the_best_accuracy_per_millisecond_wins():
    rows = [{"key": "a", "objective": objective(-0.02, -0.1)},
            {"key": "b", "objective": objective(-0.01, -0.1)},
            {"key": "c", "objective": objective(-0.01, -0.02)}, {"key": "d", "objective": None}]
    assert best(rows)["key"] == "b"
    assert best([{"objective": None}]) is None


# ---- the latency table ---------------------------------------------------------------------------------

def test_latency_table_keeps_samples_per_layer_shape_and_is_cached_per_target(tmp_path):
    tools = {"ai-edge-litert": "x"}
    table = LatencyTable(tmp_path, "host", "v3-small", "int8", 1, tools)
    layers = CONFIG.plan().layers
    assert table.missing(CONFIG) == list(layers)
    table.record(CONFIG, {layer.name: 10.0 for layer in layers})
    table.record(CONFIG, {layer.name: 30.0 for layer in layers if layer.name != "pool"})
    pool = next(layer for layer in layers if layer.name == "pool")
    assert table.layer_us(layers[1]) == 20.0 and table.layer_us(pool) == 5.0   # no slice of its own: 0
    assert table.model_us(CONFIG) == pytest.approx(20.0 * (len(layers) - 1) + 5.0)
    again = LatencyTable(tmp_path, "host", "v3-small", "int8", 1, tools)
    assert again.loaded == len(table.samples) and not again.missing(CONFIG)
    other_phone = LatencyTable(tmp_path, "R58M123", "v3-small", "int8", 1, tools)
    newer_tools = LatencyTable(tmp_path, "host", "v3-small", "int8", 1, {"ai-edge-litert": "y"})
    assert other_phone.loaded == 0 and newer_tools.loaded == 0
    record = json.loads(table.path.read_text())
    assert record["key"]["target"] == "host" and len(record["entries"]) == len(table.samples)


# ---- weight carry-over ---------------------------------------------------------------------------------

def _model(config, seed=1):
    from mobilenets_tf.builder import build_from_config

    import keras

    keras.utils.set_random_seed(seed)
    return build_from_config(config, classifier_activation=None)


def test_dead_expansion_channels_are_dropped_and_outputs_do_not_change():
    from mnbench.adapt.carry import carry_weights

    source = _model(CONFIG)
    width = CONFIG.plan().widths()["block10.expand"]          # 288 at alpha 0.5; its SE width 72 stays at 280
    dead = np.arange(width)[1::35][:8]                          # 8 channels spread over the block
    for name in ("block10_expand", "block10_expand_bn", "block10_dw_bn"):
        layer = source.get_layer(name)
        weights = layer.get_weights()
        if name == "block10_expand":
            weights[0][..., dead] = 0.0                         # lowest L1 norm: these go
        else:
            weights[0][dead] = 0.0                              # gamma and beta 0: the channel is exactly 0
            weights[1][dead] = 0.0
        layer.set_weights(weights)
    thinner = with_width(CONFIG, "block10.expand", width - 8)
    target = _model(thinner, seed=2)
    kept = carry_weights(source, target, thinner)
    assert kept == {"block10.expand": width - 8}
    batch = images("v3-small", resolution=64)
    np.testing.assert_allclose(target(batch, training=False), source(batch, training=False), atol=1e-4)


def test_a_stage_keeps_the_channels_with_the_largest_norm_across_its_blocks():
    from mnbench.adapt.carry import carry_weights

    source = _model(CONFIG)
    thinner = with_width(CONFIG, "stage04.out", 16)
    norms = sum(np.abs(source.get_layer(f"block0{i}_project").get_weights()[0]).sum(axis=(0, 1, 2))
                for i in range(4, 9))                   # the stage's five blocks (see above)
    kept = np.sort(np.argsort(-norms, kind="stable")[:16])
    target = _model(thinner, seed=2)
    carry_weights(source, target, thinner)
    for name in ("block04_project", "block08_project"):
        np.testing.assert_array_equal(target.get_layer(name).get_weights()[0],
                                      source.get_layer(name).get_weights()[0][..., kept])
    np.testing.assert_array_equal(target.get_layer("block09_expand").get_weights()[0],
                                  source.get_layer("block09_expand").get_weights()[0][:, :, kept, :])
    np.testing.assert_array_equal(target.get_layer("block05_project_bn").get_weights()[2],
                                  source.get_layer("block05_project_bn").get_weights()[2][kept])


def test_carry_refuses_to_grow():
    from mnbench.adapt.carry import carry_weights

    wider = with_width(CONFIG, "block05.expand", CONFIG.plan().widths()["block05.expand"] + 8)
    with pytest.raises(AdaptError, match="grow"):
        carry_weights(_model(CONFIG), _model(wider), wider)


# ---- issue 24: the derived step, the floor, the confirmation, the per-proposal seed ---------------------

def test_the_step_is_derived_from_the_budget_and_the_iterations_left_follow():
    budget = Budget.make(10.0, budget_ratio=0.8, iterations=4)
    assert budget.step_ms == pytest.approx(0.5) and budget.ratio == pytest.approx(0.8)
    assert [budget.left(ms) for ms in (10.0, 9.5, 9.2, 8.0, 7.9)] == [4, 3, 3, 0, 0]
    assert Budget.make(10.0, budget_ratio=0.8, step=0.01).step_ms == pytest.approx(0.1)   # the old schedule
    with pytest.raises(AdaptError, match="--iterations"):
        Budget.make(10.0, budget_ratio=0.8, iterations=0)


def test_no_width_goes_below_its_floor():
    from mnbench.adapt.proposals import floors

    assert floors({"stage03.out": 24, "stage04.out": 40, "block10.expand": 576}, 0.25) == \
        {"stage03.out": 8, "stage04.out": 16, "block10.expand": 144}
    assert floors({"stage04.out": 40}, 0.0) == {"stage04.out": 8}
    assert narrower(40, 3, floor=16) == 16 and narrower(40, 4, floor=16) is None
    assert narrower(40, 4) == 8                               # without a floor: one granule


def test_search_keeps_every_width_at_or_above_its_floor(tmp_path):
    from mnbench.adapt.loop import search
    from mnbench.adapt.proposals import floors

    from .test_adapt_cli import MacsTarget

    table = LatencyTable(None, "macs", "v3-small", "fp32", 1, {})
    target, widths = MacsTarget(), CONFIG.plan().widths()
    start_ms = CONFIG.cost().macs / 1e6
    floor = floors(widths, 0.5)
    found = search(CONFIG, start_ms, 0.5 * start_ms, table, target, floor)   # a step no width can meet
    assert found and all(proposal.width >= floor[proposal.key] for proposal, _ in found)
    assert any(proposal.width == floor[proposal.key] for proposal, _ in found)
    unfloored = search(CONFIG, start_ms, 0.5 * start_ms, table, target)
    assert any(proposal.width < floor[proposal.key] for proposal, _ in unfloored)


def _runner(ratios):
    """A pair runner whose process ``i`` gives B/A = ``ratios[i]`` in every pair (both orders)."""
    from device_bench.interleave import PairMeasurement

    stream = iter(ratios)

    def run(a, b, threads, seed):
        ratio = next(stream)
        return PairMeasurement((100.0,) * 4, (100.0 * ratio,) * 4, (True, False, True, False))

    return run


@pytest.mark.parametrize("ratios, verdict", [
    ([0.70, 0.72, 0.71, 0.69, 0.70] * 5, "under"),      # clearly below a 0.8 budget
    ([0.90, 0.92, 0.91, 0.89, 0.90] * 5, "over"),
    ([0.76, 0.84] * 40, "undecided"),                   # straddles 0.8 until the time is up
])
def test_the_confirmation_judges_the_interval_against_the_budget(ratios, verdict):
    from mnbench.adapt.confirm import confirm

    clock = iter(range(1000))
    result = confirm("a.tflite", "b.tflite", 0.8, _runner(ratios), max_secs=30, clock=lambda: next(clock))
    assert result.verdict == verdict and result.met == (verdict == "under")
    assert result.low <= result.ratio <= result.high
    if verdict == "under":
        assert result.high <= 0.8 and result.processes == 5          # decided at the first look
    elif verdict == "over":
        assert result.low > 0.8
    else:
        assert result.low < 0.8 < result.high and result.processes < len(ratios)


def test_a_proposals_seed_depends_on_the_run_the_iteration_and_the_proposal_only():
    from mnbench.adapt.parallel import proposal_seed

    seed = proposal_seed(0, 3, "stage04.out")
    assert seed == proposal_seed(0, 3, "stage04.out")
    assert len({seed, proposal_seed(1, 3, "stage04.out"), proposal_seed(0, 4, "stage04.out"),
                proposal_seed(0, 3, "stage05.out")}) == 4


def test_ray_is_not_imported_without_ray():
    """Ray is an extra: adapt's modules import it only when ``--ray`` builds a ``RayPool``."""
    import subprocess
    import sys

    code = ("import sys, mnbench.commands.adapt, mnbench.adapt.loop, mnbench.adapt.parallel; "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
