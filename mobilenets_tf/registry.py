"""Versions, their ablation knobs, and how each knob rewrites the paper's table. No TensorFlow here.

A knob is data (name, allowed values, default = the published final model, help text) plus a pure function
``(rows, value) -> rows``. Knobs that keep the default leave the table untouched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from .errors import SpecError

from . import tables
from .specs import Act, ArchSpec, Classifier, Conv, DwSep, Gate, InvRes, Pool, Row

Rows = tuple[Row, ...]


@dataclass(frozen=True)
class Knob:
    """One ablation switch from the papers."""

    name: str
    default: Any
    choices: tuple = ()            # allowed values; empty means "any value of the default's type"
    help: str = ""
    apply: Callable[[Rows, Any], Rows] = lambda rows, value: rows
    check: Callable[[Any], bool] = lambda value: True

    def parse(self, text: str) -> Any:
        """Parse a ``--set KEY=VALUE`` string into this knob's type."""
        kind = type(self.default)
        try:
            if kind is bool:
                lowered = text.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError
                return lowered in {"true", "1", "yes"}
            return kind(text)
        except ValueError:
            raise SpecError(f"knob {self.name} takes a {kind.__name__}, got {text!r}") from None


@dataclass(frozen=True)
class Version:
    """A MobileNet version: its table, knobs, canonical widths and input convention."""

    name: str
    arch: ArchSpec
    knobs: tuple[Knob, ...]
    canonical_alphas: tuple[float, ...]
    input_range: tuple[float, float]   # what the model's input expects (V3 rescales [0, 255] in-graph)
    paper: str

    def knob(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        valid = ", ".join(k.name for k in self.knobs) or "none"
        raise SpecError(f"unknown knob {name!r} for {self.name}; valid: {valid}")


def _map_rows(rows: Rows, kind: type, change: Callable[[Any], Any]) -> Rows:
    return tuple(change(row) if isinstance(row, kind) else row for row in rows)


# ---- V1 -------------------------------------------------------------------------------------------------

def _v1_separable(rows: Rows, separable: bool) -> Rows:
    if separable:
        return rows
    # "Conv MobileNet" (V1 Table 4): each depthwise-separable layer becomes one full 3x3 convolution.
    return _map_rows(rows, DwSep, lambda r: Conv(3, r.filters, strides=r.strides, activation=r.activation))


def _v1_shallow(rows: Rows, shallow: bool) -> Rows:
    if not shallow:
        return rows
    # V1 Table 5: drop the five separable layers of feature size 14x14x512.
    five = [i for i,
            r in enumerate(rows) if isinstance(r, (DwSep, Conv)) and r.filters == 512 and r.strides == 1]
    return tuple(r for i, r in enumerate(rows) if i not in five)


# ---- V2 -------------------------------------------------------------------------------------------------

def _v2_expansion(rows: Rows, expansion: float) -> Rows:
    # The first bottleneck keeps t=1, as in Table 2; every t=6 block takes the new factor.
    return _map_rows(rows, InvRes,
                     lambda r: r if r.expansion == 1 else dataclasses.replace(r, expansion=expansion))


def _set_field(field: str):
    """A knob that sets one InvRes field on every block (its default equals the table's value)."""
    return lambda rows, value: _map_rows(rows, InvRes, lambda r: dataclasses.replace(r, **{field: value}))


# ---- V3 -------------------------------------------------------------------------------------------------

_V3_ACTIVATIONS = {"hswish": Act.HSWISH, "swish": Act.SWISH, "relu": Act.RELU}


def _v3_activation(rows: Rows, name: str) -> Rows:
    act = _V3_ACTIVATIONS[name]
    gate = Gate.SIGMOID if act is Act.SWISH else Gate.HARD_SIGMOID

    def change(row):
        if isinstance(row, (Conv, InvRes)) and row.activation is Act.HSWISH:
            row = dataclasses.replace(row, activation=act)
        if isinstance(row, InvRes):
            row = dataclasses.replace(row, gate=gate)
        return row
    return tuple(change(r) for r in rows)


def _v3_se(rows: Rows, se: bool) -> Rows:
    return rows if se else _map_rows(rows, InvRes, lambda r: dataclasses.replace(r, se=False))


def _v3_stem(rows: Rows, filters: int) -> Rows:
    return (dataclasses.replace(rows[0], filters=filters),) + rows[1:]


def _v3_last_stage(rows: Rows, style: str) -> Rows:
    if style == "efficient":
        return rows
    # Sec. 5.1 / Fig. 5 "original last stage": one more bottleneck (expand to the 1x1 width, 3x3 depthwise,
    # project to 2x the last block's channels, as V2's 160 -> 320) and the wide 1x1 layer before pooling.
    first_head = next(i for i, r in enumerate(rows) if isinstance(r, Conv) and r.kernel_size == 1)
    last_block = rows[first_head - 1]
    feature, widest = rows[first_head], rows[first_head + 2]
    head = (
        InvRes(3, feature.filters / last_block.filters, 2 * last_block.filters, activation=feature.activation,
               gate=last_block.gate),
        dataclasses.replace(widest, batch_norm=True),
        Pool(),
        Classifier(),
    )
    return rows[:first_head] + head


def _v3_minimalistic(rows: Rows, minimalistic: bool) -> Rows:
    if not minimalistic:
        return rows
    # slim / keras.applications "minimalistic": no SE, no h-swish, no 5x5 depthwise.

    def change(row):
        if isinstance(row, InvRes):
            return dataclasses.replace(row, kernel_size=3, se=False, activation=Act.RELU)
        if isinstance(row, Conv):
            return dataclasses.replace(row, activation=Act.RELU)
        return row
    return tuple(change(r) for r in rows)


_V3_KNOBS = (
    # minimalistic first: it overrides activation and SE, and the others then see its result.
    Knob("minimalistic", False, help="slim's minimalistic V3: ReLU, 3x3 depthwise, no SE",
         apply=_v3_minimalistic),
    Knob("activation", "hswish", ("hswish", "swish", "relu"),
         help="non-linearity of the h-swish layers (Table 5 ablation)", apply=_v3_activation),
    Knob("se", True, help="squeeze-and-excite in the blocks Table 1/2 marks (False = none)", apply=_v3_se),
    Knob("stem_filters", 16, (16, 32), help="filters of the first layer (Sec. 5.1)", apply=_v3_stem),
    Knob("last_stage", "efficient", ("efficient", "original"), help="Sec. 5.1 / Fig. 5 last stage",
         apply=_v3_last_stage),
)

VERSIONS: dict[str, Version] = {
    "v1": Version(
        "v1", tables.MOBILENET_V1,
        knobs=(
            Knob("separable", True, help="False = 'Conv MobileNet' of Table 4 (full 3x3 convolutions)",
                 apply=_v1_separable),
            Knob("shallow", False, help="True = drop the five 14x14x512 layers (Table 5)", apply=_v1_shallow),
        ),
        canonical_alphas=(0.25, 0.5, 0.75, 1.0), input_range=(-1.0, 1.0), paper="arXiv:1704.04861"),
    "v2": Version(
        "v2", tables.MOBILENET_V2,
        knobs=(
            Knob("expansion", 6.0, help="expansion factor t of the bottlenecks (Table 2 uses 6)",
                 apply=_v2_expansion, check=lambda t: 1 <= t <= 16),
            Knob("linear_bottleneck", True, help="False = ReLU6 after the projection (Fig. 6a ablation)",
                 apply=_set_field("linear")),
            Knob("residual", True, help="False = no shortcut connections (Fig. 6b ablation)",
                 apply=_set_field("residual")),
        ),
        canonical_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4), input_range=(-1.0, 1.0), paper="arXiv:1801.04381"),
    "v3-large": Version("v3-large", tables.MOBILENET_V3_LARGE, _V3_KNOBS, canonical_alphas=(0.75, 1.0),
                        input_range=(0.0, 255.0), paper="arXiv:1905.02244v5"),
    "v3-small": Version("v3-small", tables.MOBILENET_V3_SMALL, _V3_KNOBS, canonical_alphas=(0.75, 1.0),
                        input_range=(0.0, 255.0), paper="arXiv:1905.02244v5"),
}


def list_versions() -> list[str]:
    return list(VERSIONS)


def get_version(name: str) -> Version:
    try:
        return VERSIONS[name]
    except KeyError:
        raise SpecError(f"unknown version {name!r}; valid: {', '.join(VERSIONS)}") from None


def resolve_knobs(version: Version, knobs: dict[str, Any]) -> dict[str, Any]:
    """Validate user knobs (already typed or as strings) and fill in every default."""
    values = {knob.name: knob.default for knob in version.knobs}
    for name, value in knobs.items():
        knob = version.knob(name)
        if isinstance(value, str) and not isinstance(knob.default, str):
            value = knob.parse(value)
        elif isinstance(knob.default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(knob.default):
            raise SpecError(f"knob {name} takes a {type(knob.default).__name__}, got {value!r}")
        if (knob.choices and value not in knob.choices) or not knob.check(value):
            allowed = ", ".join(map(str, knob.choices)) if knob.choices else "see `mnbench info --help`"
            raise SpecError(f"knob {name}={value!r} is not valid for {version.name}; valid: {allowed}")
        values[name] = value
    return values


def apply_knobs(version: Version, knob_values: dict[str, Any]) -> ArchSpec:
    """The version's table rewritten by every knob, in the order the knobs are declared."""
    rows = version.arch.rows
    for knob in version.knobs:
        rows = knob.apply(rows, knob_values[knob.name])
    return version.arch.replace(rows=rows)
