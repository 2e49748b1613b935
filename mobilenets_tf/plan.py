"""Resolve a table into concrete layers: integer channels, spatial sizes and deterministic names.

The plan is what both the Keras builder and the cost accounting read, so the model that is built and the
figures that are reported cannot drift apart. No TensorFlow here.

Per-layer widths (NetAdapt, ``mnbench adapt``): after alpha has set every width, a ``widths`` map may set
some of them individually. Its keys are ``"blockNN.expand"`` (the expansion width of a block that has a 1x1
expansion) and ``"stageNN.out"`` (the output width of a stage). A stage is a layer with the blocks that
follow it joined by a residual sum: they must share their width, so it is one setting. ``Plan.widths()``
lists every key with its value; which blocks are joined is decided at the default widths and kept.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import SpecError
from .specs import (Act, ArchSpec, Classifier, Conv, DwSep, Gate, InvRes, Pool, Width, make_divisible,
                    scale_filters)


@dataclass(frozen=True)
class WeightOp:
    """One layer with weights, as the papers count it (BatchNorm folded into a per-channel bias)."""

    name: str
    kind: str              # "conv" | "depthwise" | "fc"
    kernel_size: int
    in_channels: int
    out_channels: int
    out_size: int          # spatial height = width of the output

    @property
    def params(self) -> int:
        per_output = self.kernel_size ** 2 * (1 if self.kind == "depthwise" else self.in_channels)
        return per_output * self.out_channels + self.out_channels

    @property
    def macs(self) -> int:
        per_output = self.kernel_size ** 2 * (1 if self.kind == "depthwise" else self.in_channels)
        return self.out_size ** 2 * per_output * self.out_channels


@dataclass(frozen=True)
class ConvLayer:
    name: str
    kernel_size: int
    in_channels: int
    filters: int
    strides: int
    activation: Act
    batch_norm: bool
    in_size: int
    out_size: int

    def ops(self) -> tuple[WeightOp, ...]:
        kind = "fc" if self.in_size == 1 and self.kernel_size == 1 else "conv"
        return (WeightOp(self.name, kind, self.kernel_size, self.in_channels, self.filters, self.out_size),)


@dataclass(frozen=True)
class DwSepLayer:
    name: str
    in_channels: int
    filters: int
    strides: int
    activation: Act
    in_size: int
    out_size: int

    def ops(self) -> tuple[WeightOp, ...]:
        return (WeightOp(f"{self.name}_dw", "depthwise", 3, self.in_channels, self.in_channels,
                         self.out_size),
                WeightOp(f"{self.name}_pw", "conv", 1, self.in_channels, self.filters, self.out_size))


@dataclass(frozen=True)
class InvResLayer:
    name: str
    kernel_size: int
    in_channels: int
    expanded: int
    filters: int
    strides: int
    se_filters: int        # 0 = no squeeze-and-excite
    gate: Gate
    activation: Act
    linear: bool
    residual: bool         # shortcut actually present (stride 1, same channels, knob on)
    in_size: int
    out_size: int
    expand: bool = True    # a 1x1 expansion layer (else the depthwise runs on the input channels)

    def ops(self) -> tuple[WeightOp, ...]:
        ops = []
        if self.expand:
            ops.append(WeightOp(f"{self.name}_expand", "conv", 1, self.in_channels, self.expanded,
                                self.in_size))
        ops.append(WeightOp(f"{self.name}_dw", "depthwise", self.kernel_size, self.expanded, self.expanded,
                            self.out_size))
        if self.se_filters:
            ops.append(WeightOp(f"{self.name}_se_reduce", "fc", 1, self.expanded, self.se_filters, 1))
            ops.append(WeightOp(f"{self.name}_se_expand", "fc", 1, self.se_filters, self.expanded, 1))
        ops.append(WeightOp(f"{self.name}_project", "conv", 1, self.expanded, self.filters, self.out_size))
        return tuple(ops)


@dataclass(frozen=True)
class PoolLayer:
    name: str
    channels: int
    in_size: int

    def ops(self) -> tuple[WeightOp, ...]:
        return ()


@dataclass(frozen=True)
class ClassifierLayer:
    name: str
    in_channels: int
    classes: int

    def ops(self) -> tuple[WeightOp, ...]:
        return (WeightOp(self.name, "fc", 1, self.in_channels, self.classes, 1),)


Layer = ConvLayer | DwSepLayer | InvResLayer | PoolLayer | ClassifierLayer


@dataclass(frozen=True)
class Plan:
    """A fully resolved network: input size and the concrete layers in order."""

    resolution: int
    layers: tuple[Layer, ...]

    def ops(self) -> tuple[WeightOp, ...]:
        return tuple(op for layer in self.layers for op in layer.ops())

    def stages(self) -> dict[str, str]:
        """Layer name -> stage name, for every layer that has an output width of its own to set."""
        result, count = {}, 0
        for layer in self.layers:
            if isinstance(layer, (PoolLayer, ClassifierLayer)):
                continue
            if not (isinstance(layer, InvResLayer) and layer.residual):
                count += 1
            result[layer.name] = f"stage{count:02d}"
        return result

    def widths(self) -> dict[str, int]:
        """Every width a ``widths`` map can set, with its value in this plan, in model order."""
        result, stages = {}, self.stages()
        for layer in self.layers:
            if isinstance(layer, InvResLayer) and layer.expand:
                result[f"{layer.name}.expand"] = layer.expanded
            stage = stages.get(layer.name)
            if stage is not None:
                result[f"{stage}.out"] = layer.filters
        return result


def _width(filters: int, width: Width, alpha: float, arch: ArchSpec) -> int:
    if width is Width.FIXED or (width is Width.WIDEN_ONLY and alpha <= 1.0):
        return filters
    return scale_filters(filters, alpha, arch.divisor, arch.min_filters)


def _names(arch: ArchSpec) -> list[str]:
    """stem, block01..blockNN, head1..headN, pool, logits: stable across alpha, resolution and knobs."""
    spatial = [i for i, r in enumerate(arch.rows)
               if isinstance(r, (DwSep, InvRes)) or (isinstance(r, Conv) and r.kernel_size > 1)]
    last_body = spatial[-1]
    names, block, head = [], 0, 0
    for index, row in enumerate(arch.rows):
        if isinstance(row, Pool):
            names.append("pool")
        elif isinstance(row, Classifier):
            names.append("logits")
        elif index == 0:
            names.append("stem")
        elif index <= last_body:
            block += 1
            names.append(f"block{block:02d}")
        else:
            head += 1
            names.append(f"head{head}")
    return names


def resolve(arch: ArchSpec, alpha: float, resolution: int, num_classes: int = 1000,
            include_top: bool = True, widths: dict[str, int] | None = None) -> Plan:
    """Apply the width multiplier and input resolution to a table, then any per-layer ``widths``.

    Spatial sizes follow TensorFlow 'same' padding (ceil(in / stride)); for the even sizes of every
    published configuration that is exactly the explicit padding of the reference code.

    Raises:
        SpecError: a ``widths`` key this plan does not have, or a width that is not a positive integer.
    """
    plan = _resolve_uniform(arch, alpha, resolution, num_classes, include_top)
    return _set_widths(plan, dict(widths), arch.divisor) if widths else plan


def _set_widths(plan: Plan, widths: dict[str, int], divisor: int) -> Plan:
    """``plan`` with the widths ``widths`` sets; every layer's input follows the layer before it."""
    known = plan.widths()
    for key, value in widths.items():
        if key not in known:
            raise SpecError(f"no width {key!r} in this model; settable: {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"width {key} must be a positive integer, got {value!r}")
    stages, layers, channels = plan.stages(), [], 3
    for layer in plan.layers:
        changes = {}
        if isinstance(layer, (ConvLayer, DwSepLayer, InvResLayer)):
            filters = widths.get(f"{stages[layer.name]}.out", layer.filters)
            changes = {"in_channels": channels, "filters": filters}
        if isinstance(layer, InvResLayer):
            expanded = widths.get(f"{layer.name}.expand", layer.expanded) if layer.expand else channels
            se_filters = make_divisible(expanded * 0.25, divisor) if layer.se_filters else 0
            changes.update(expanded=expanded, se_filters=se_filters)
        elif isinstance(layer, PoolLayer):
            changes = {"channels": channels}
        elif isinstance(layer, ClassifierLayer):
            changes = {"in_channels": channels}
        layers.append(dataclasses.replace(layer, **changes))
        if isinstance(layer, (ConvLayer, DwSepLayer, InvResLayer)):
            channels = layers[-1].filters
    return Plan(plan.resolution, tuple(layers))


def _resolve_uniform(arch: ArchSpec, alpha: float, resolution: int, num_classes: int,
                     include_top: bool) -> Plan:
    layers, channels, size = [], 3, resolution
    for name, row in zip(_names(arch), arch.rows):
        if isinstance(row, Pool):
            if not include_top:
                break
            layers.append(PoolLayer(name, channels, size))
            size = 1
        elif isinstance(row, Classifier):
            layers.append(ClassifierLayer(name, channels, num_classes))
            channels = num_classes
        elif isinstance(row, Conv):
            filters = _width(row.filters, row.width, alpha, arch)
            out = math.ceil(size / row.strides)
            layers.append(ConvLayer(name, row.kernel_size, channels, filters, row.strides, row.activation,
                                    row.batch_norm, size, out))
            channels, size = filters, out
        elif isinstance(row, DwSep):
            filters = scale_filters(row.filters, alpha, arch.divisor, arch.min_filters)
            out = math.ceil(size / row.strides)
            layers.append(DwSepLayer(name, channels, filters, row.strides, row.activation, size, out))
            channels, size = filters, out
        else:
            layers.append(_inverted_residual(name, row, channels, size, alpha, arch))
            channels, size = layers[-1].filters, layers[-1].out_size
    return Plan(resolution, tuple(layers))


def _inverted_residual(name: str, row: InvRes, channels: int, size: int, alpha: float,
                       arch: ArchSpec) -> InvResLayer:
    filters = scale_filters(row.filters, alpha, arch.divisor, arch.min_filters)
    expanded = channels if row.expansion == 1 else make_divisible(channels * row.expansion, arch.divisor)
    se_filters = make_divisible(expanded * 0.25, arch.divisor) if row.se else 0
    residual = row.residual and row.strides == 1 and channels == filters
    return InvResLayer(name, row.kernel_size, channels, expanded, filters, row.strides, se_filters, row.gate,
                       row.activation, row.linear, residual, size, math.ceil(size / row.strides),
                       expand=expanded != channels)
