"""A model configuration: version, width, resolution, classes and knobs, validated. No TensorFlow here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError

from .cost import CostReport, cost
from .plan import Plan, resolve
from .registry import Version, apply_knobs, get_version, resolve_knobs

MIN_RESOLUTION = 32
MAX_ALPHA = 2.0


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a MobileNet's architecture (not its weights)."""

    version: str
    alpha: float = 1.0
    resolution: int = 224
    num_classes: int = 1000
    include_top: bool = True
    knobs: dict[str, Any] = field(default_factory=dict)   # every knob, defaults filled in

    @property
    def spec(self) -> Version:
        return get_version(self.version)

    @property
    def non_default_knobs(self) -> dict[str, Any]:
        return {k.name: self.knobs[k.name] for k in self.spec.knobs if self.knobs[k.name] != k.default}

    def plan(self) -> Plan:
        arch = apply_knobs(self.spec, self.knobs)
        return resolve(arch, self.alpha, self.resolution, self.num_classes, self.include_top)

    def cost(self) -> CostReport:
        return cost(self.plan())

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return configure(**data)


def configure(version: str, alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000,
              include_top: bool = True, knobs: dict[str, Any] | None = None) -> ModelConfig:
    """Validate a configuration and fill in default knobs.

    Raises:
        SpecError: unknown version or knob, alpha outside (0, 2], resolution below 32, classes below 1.
    """
    spec = get_version(version)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= MAX_ALPHA:
        raise SpecError(f"alpha must be in (0, {MAX_ALPHA:g}], got {alpha!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < MIN_RESOLUTION:
        raise SpecError(f"resolution must be an integer >= {MIN_RESOLUTION}, got {resolution!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise SpecError(f"num_classes must be a positive integer, got {num_classes!r}")
    values = resolve_knobs(spec, dict(knobs or {}))
    return ModelConfig(spec.name, float(alpha), resolution, num_classes, bool(include_top), values)
