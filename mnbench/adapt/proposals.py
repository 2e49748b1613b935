"""NetAdapt's proposals: shrink one width just enough to meet the step, as data. No TensorFlow here.

A proposal sets one key of ``Plan.widths()`` (a block's expansion width or a stage's output width) to a
smaller multiple of ``GRANULE``. The layers it *touches* are those whose shape it changes; proposals that
touch disjoint layers can be timed in one probe model (each touched layer has the shape it would have in
its own proposal), which is how the latency table is filled with few exports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mobilenets_tf.config import ModelConfig

GRANULE = 8         # widths move in multiples of 8 (the V2/V3 rounding; XNNPACK's packing likes it too)


@dataclass(frozen=True)
class Proposal:
    key: str                    # "block05.expand" or "stage04.out"
    width: int                  # the proposed width of ``key``
    config: ModelConfig         # the whole model with it


def narrower(width: int, steps: int, floor: int = GRANULE) -> int | None:
    """``width`` less ``steps`` granules, on the granule grid; None when that goes below ``floor`` (at least
    one granule)."""
    proposed = (math.ceil(width / GRANULE) - steps) * GRANULE
    return proposed if max(GRANULE, floor) <= proposed < width else None


def floors(widths: dict[str, int], fraction: float) -> dict[str, int]:
    """The narrowest each width may become: ``fraction`` of ``widths`` (the starting model's) rounded up to
    the grid, and at least one granule. ``fraction`` 0 leaves only the granule."""
    return {key: max(GRANULE, math.ceil(fraction * width / GRANULE) * GRANULE)
            for key, width in widths.items()}


def with_width(config: ModelConfig, key: str, width: int) -> ModelConfig:
    """``config`` with one per-layer width changed (every other width kept as it is now)."""
    from mobilenets_tf.config import configure

    widths = {**config.plan().widths(), key: width}
    return configure(config.version, config.alpha, config.resolution, config.num_classes, config.include_top,
                     config.knobs, widths)


def signature(layer) -> str:
    """What a layer's latency depends on: every field but its name."""
    return repr(dataclasses.replace(layer, name=""))


def touched(before: ModelConfig, after: ModelConfig) -> set[str]:
    """Names of the layers whose shape differs between two configurations of one model."""
    return {a.name for a, b in zip(before.plan().layers, after.plan().layers) if signature(a) != signature(b)}


def pack(base: ModelConfig, proposals: list[Proposal]) -> list[tuple[ModelConfig, list[Proposal]]]:
    """Probe models: proposals merged (first fit) while the layers they touch stay disjoint.

    In each probe every touched layer has exactly the shape it has in its own proposal, because no other
    proposal in the probe changes a width it depends on.
    """
    probes: list[tuple[dict[str, int], set[str], list[Proposal]]] = []
    for proposal in proposals:
        layers = touched(base, proposal.config)
        for widths, used, members in probes:
            if not layers & used and proposal.key not in widths:
                widths[proposal.key] = proposal.width
                used |= layers
                members.append(proposal)
                break
        else:
            probes.append(({proposal.key: proposal.width}, set(layers), [proposal]))
    result = []
    for widths, _, members in probes:
        config = base
        for key, width in widths.items():
            config = with_width(config, key, width)
        result.append((config, members))
    return result


def estimate_ms(current_ms: float, current: ModelConfig, proposed: ModelConfig, table) -> float:
    """NetAdapt's estimate: the measured latency of ``current`` plus the table's difference of the layers."""
    before = {layer.name: layer for layer in current.plan().layers}
    delta_us = sum(table.layer_us(layer) - table.layer_us(before[layer.name])
                   for layer in proposed.plan().layers if signature(layer) != signature(before[layer.name]))
    return current_ms + delta_us / 1000


def objective(accuracy_gain: float, latency_change_ms: float) -> float:
    """MobileNetV3's NetAdapt objective: accuracy change per millisecond saved (higher is better)."""
    return accuracy_gain / max(abs(latency_change_ms), 1e-6)


def best(rows: list[dict]) -> dict | None:
    """The row with the highest objective among those that met the target (the earlier one on ties)."""
    valid = [row for row in rows if row.get("objective") is not None]
    return max(valid, key=lambda row: row["objective"]) if valid else None
