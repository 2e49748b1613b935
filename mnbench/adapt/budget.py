"""The latency schedule: budget, per-iteration targets, and when to stop. No TensorFlow here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import AdaptError


@dataclass(frozen=True)
class Budget:
    """Where the run starts and must end (milliseconds), and how much each iteration must save."""

    start_ms: float
    budget_ms: float
    step_ms: float

    @classmethod
    def make(cls, start_ms: float, budget_ms: float | None = None, budget_ratio: float | None = None,
             step: float | None = None, iterations: int = 4) -> Budget:
        """``budget_ms`` or ``budget_ratio`` (of ``start_ms``), exactly one; ``step`` a fraction of the start,
        or None for the step that reaches the budget in ``iterations`` iterations.

        Raises:
            AdaptError: neither or both budgets, a budget not below the start, a step outside (0, 0.5],
                fewer than one iteration.
        """
        if (budget_ms is None) == (budget_ratio is None):
            raise AdaptError("give one of --budget-ms and --budget-ratio")
        if budget_ratio is not None:
            if not 0 < budget_ratio < 1:
                raise AdaptError(f"--budget-ratio must be in (0, 1), got {budget_ratio:g}")
            budget_ms = start_ms * budget_ratio
        if not 0 < budget_ms:
            raise AdaptError(f"--budget-ms must be positive, got {budget_ms:g}")
        if budget_ms >= start_ms:
            raise AdaptError(f"the starting model already meets the budget: {start_ms:.3f} ms measured, "
                             f"budget {budget_ms:.3f} ms")
        if step is None:
            if iterations < 1:
                raise AdaptError(f"--iterations must be at least 1, got {iterations}")
            return cls(start_ms, budget_ms, (start_ms - budget_ms) / iterations)
        if not 0 < step <= 0.5:
            raise AdaptError(f"--step must be in (0, 0.5] (a fraction of the starting latency), got {step:g}")
        return cls(start_ms, budget_ms, step * start_ms)

    @property
    def ratio(self) -> float:
        return self.budget_ms / self.start_ms

    def target(self, current_ms: float) -> float:
        """The next iteration's latency target: one step below ``current_ms``, never below the budget."""
        return max(self.budget_ms, current_ms - self.step_ms)

    def left(self, current_ms: float) -> int:
        """Iterations still expected from ``current_ms`` (each saves one step, the last what is left)."""
        return max(0, math.ceil((current_ms - self.budget_ms) / self.step_ms - 1e-9))

    def met(self, measured_ms: float) -> bool:
        return measured_ms <= self.budget_ms

    def shortfall(self, measured_ms: float) -> str:
        """How close ``measured_ms`` came, in words."""
        if self.met(measured_ms):
            return f"within the budget: {measured_ms:.3f} ms <= {self.budget_ms:.3f} ms"
        over = measured_ms - self.budget_ms
        done = (self.start_ms - measured_ms) / (self.start_ms - self.budget_ms)
        return (f"budget NOT met: {measured_ms:.3f} ms is {over:.3f} ms "
                f"({100 * over / self.budget_ms:.1f} %) "
                f"above {self.budget_ms:.3f} ms; {100 * done:.0f} % of the way from {self.start_ms:.3f} ms")
