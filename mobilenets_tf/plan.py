"""Resolve a table into concrete layers: integer channels, spatial sizes and deterministic names.

The plan is what both the Keras builder and the cost accounting read, so the model that is built and the
figures that are reported cannot drift apart. No TensorFlow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    def ops(self) -> tuple[WeightOp, ...]:
        ops = []
        if self.expanded != self.in_channels:
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
            include_top: bool = True) -> Plan:
    """Apply the width multiplier and input resolution to a table.

    Spatial sizes follow TensorFlow 'same' padding (ceil(in / stride)); for the even sizes of every
    published configuration that is exactly the explicit padding of the reference code.
    """
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
                       row.activation, row.linear, residual, size, math.ceil(size / row.strides))
