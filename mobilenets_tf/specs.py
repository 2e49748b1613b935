"""Typed rows for the architecture tables, and the channel rounding the reference code uses.

No TensorFlow here: tables, resolution and cost accounting work without it.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass


class Act(str, enum.Enum):
    """Non-linearities of the papers' NL column (plus the ablations of V3 Table 5)."""

    LINEAR = "linear"
    RELU = "relu"
    RELU6 = "relu6"
    HSWISH = "hswish"
    SWISH = "swish"


class HSwishForm(str, enum.Enum):
    """How the Keras graph writes h-swish: keras' ``hard_swish`` (one HARD_SWISH op in TFLite), or
    ``x * relu6(x + 3) * 0.16666666`` layers (the same function, same weights; see
    ``DecomposedHardSwish``)."""

    BUILTIN = "builtin"
    DECOMPOSED = "decomposed"


class Width(str, enum.Enum):
    """How the width multiplier alpha applies to a layer."""

    SCALED = "scaled"          # filters * alpha, rounded
    WIDEN_ONLY = "widen_only"  # kept for alpha <= 1, scaled for alpha > 1 (V2 1280 head, V3 last 1x1)
    FIXED = "fixed"            # never scaled (V3 16-filter stem, as in keras.applications)


class Gate(str, enum.Enum):
    """Gating function of a squeeze-and-excite block."""

    HARD_SIGMOID = "hard_sigmoid"
    SIGMOID = "sigmoid"


RE, R6, HS = Act.RELU, Act.RELU6, Act.HSWISH


@dataclass(frozen=True)
class Conv:
    """A full convolution followed by BatchNorm (or a bias when ``batch_norm`` is False) and an activation."""

    kernel_size: int
    filters: int
    strides: int = 1
    activation: Act = R6
    batch_norm: bool = True
    width: Width = Width.SCALED


@dataclass(frozen=True)
class DwSep:
    """V1 depthwise-separable block: 3x3 depthwise + BN + act, then 1x1 pointwise + BN + act."""

    filters: int
    strides: int = 1
    activation: Act = R6


@dataclass(frozen=True)
class InvRes:
    """V2/V3 inverted residual: optional 1x1 expansion, depthwise, optional SE, linear 1x1 projection.

    ``expansion`` is a ratio of the block's input channels (V3 tables give it as ``exp size / input``).
    """

    kernel_size: int
    expansion: float
    filters: int
    strides: int = 1
    se: bool = False
    activation: Act = R6
    gate: Gate = Gate.HARD_SIGMOID
    linear: bool = True      # V2 "linear bottleneck": no activation after the projection
    residual: bool = True    # identity shortcut when shapes allow


@dataclass(frozen=True)
class Pool:
    """Global average pooling (kept 1x1 spatially so 1x1 convolutions can follow)."""


@dataclass(frozen=True)
class Classifier:
    """The final fully connected layer (a 1x1 convolution with bias on the pooled features)."""


Row = Conv | DwSep | InvRes | Pool | Classifier


@dataclass(frozen=True)
class ArchSpec:
    """One version's table: rows in paper order, plus how widths are rounded."""

    name: str
    rows: tuple[Row, ...]
    divisor: int  # 8 for V2/V3 (reference code rounds to multiples of 8); 1 for V1 (truncation)
    min_filters: int = 8

    def replace(self, **changes) -> ArchSpec:
        return dataclasses.replace(self, **changes)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going more than 10 % below it.

    This is ``_make_divisible`` of tensorflow/models slim and keras.applications (V2, V3).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_filters(filters: int, alpha: float, divisor: int, min_filters: int = 8) -> int:
    """Width multiplier as the reference implementations apply it.

    V1 (divisor 1): ``max(int(filters * alpha), min_filters)`` as in slim's ``depth()``; Keras truncates the
    same way. V2/V3: ``make_divisible(filters * alpha, 8)``.
    """
    if divisor == 1:
        return max(int(filters * alpha), min(min_filters, filters))
    return make_divisible(filters * alpha, divisor)
