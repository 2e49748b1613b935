"""The stopping rule of the latency gate: when a stream of per-process ratios may be judged.

The unit is one fresh process that ran A and B interleaved; its statistic is ``d = log(B/A)`` (the median
of its paired log ratios). Processes are independent draws, so ``d_1, d_2, ...`` are i.i.d. with mean
``mu``, the log ratio the gate reports; the spread between them holds both the timing noise inside a
process and the effects of the process itself (memory layout, which core, what else ran).

Looking at the data again and again and stopping once the interval looks decisive inflates the error rate
of a fixed-sample interval. The rule here keeps it honest by **alpha-spending with a union bound**: the
looks happen after ``LOOKS[k - 1]`` processes (k = 1, 2, ...; a geometric schedule, so few looks), and
look ``k`` uses a Student-t interval of level ``1 - alpha_k`` with ``alpha_k = alpha / (k (k + 1))``.
Since ``sum_k alpha_k = alpha``, the probability that *any* look's interval misses ``mu`` is at most
``alpha`` (Bonferroni), whatever the dependence between looks and whenever the time budget stops the
stream: every interval the gate ever reports is a member of a ``1 - alpha`` confidence sequence for the
schedule's looks. Each look's interval is exact for normal ``d`` and approximately right otherwise.

Decision at a look (``threshold`` t, interval ``[low, high]`` of B/A): "regression" when ``low > 1 + t``,
"improvement" when ``high < 1 - t``, "unchanged" when ``[low, high]`` lies inside ``[1 - t, 1 + t]``;
otherwise sample on. An A/A stream is called a regression or improvement only when an interval misses
``mu = 0``, so the false-alarm rate is at most ``alpha``; "unchanged" is wrong with probability at most
``alpha`` for a true change outside the band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy.stats import t as student_t

from .stats import StatsError

__all__ = ["FIRST_LOOK", "LOOKS", "Interval", "SequentialTest", "decide", "look_index", "look_interval",
           "spent_alpha"]

FIRST_LOOK = 5  # processes before the first look (a t interval from fewer is uselessly wide)
LOOK_GROWTH = 1.5
LOOKS = tuple(sorted({round(FIRST_LOOK * LOOK_GROWTH ** k) for k in range(24)}))  # 5, 8, 11, 17, 25, ...
_LOOK_AT = {processes: index + 1 for index, processes in enumerate(LOOKS)}


@dataclass(frozen=True)
class Interval:
    """B/A at one look: ``ratio`` (exp of the mean log ratio) and its bounds, with the look's level."""

    ratio: float
    low: float
    high: float
    processes: int
    look: int
    level: float  # 1 - alpha_k: the coverage of this look's interval on its own
    spread: float  # standard deviation of the per-process log ratios (about the relative spread)


def spent_alpha(look: int, alpha: float) -> float:
    """``alpha_k = alpha / (k (k + 1))`` for look ``k >= 1``; the ``alpha_k`` sum to ``alpha``."""
    if look < 1:
        raise StatsError(f"looks count from 1, received look={look!r}")
    return alpha / (look * (look + 1))


def look_index(processes: int) -> int | None:
    """The look (1-based) that falls after ``processes`` processes, or None between looks."""
    return _LOOK_AT.get(processes)


def look_interval(log_ratios: Sequence[float], look: int, alpha: float = 0.05) -> Interval:
    """The interval of look ``look`` from the per-process log ratios seen so far.

    Raises:
        StatsError: fewer than two values, or values that are not finite.
    """
    values = np.asarray(log_ratios, dtype=float)
    if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)):
        raise StatsError(f"need at least two finite per-process log ratios, received {values.size}")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be in (0, 1), received alpha={alpha!r}")
    level_alpha = spent_alpha(look, alpha)
    mean, spread = float(values.mean()), float(values.std(ddof=1))
    half = _t_quantile(1 - level_alpha / 2, values.size - 1) * spread / math.sqrt(values.size)
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), int(values.size), look,
                    1 - level_alpha, spread)


@lru_cache(maxsize=4096)
def _t_quantile(level: float, df: int) -> float:
    return float(student_t.ppf(level, df))


def decide(low: float, high: float, threshold: float) -> str | None:
    """"regression", "improvement", "unchanged", or None while the interval straddles a band edge."""
    if low > 1 + threshold:
        return "regression"
    if high < 1 - threshold:
        return "improvement"
    if low >= 1 - threshold and high <= 1 + threshold:
        return "unchanged"
    return None


class SequentialTest:
    """One stream of per-process log ratios and its looks: ``add`` each value, ``finish`` when time is up.

    ``verdict`` is None while undecided; ``interval`` is the latest look's.
    """

    def __init__(self, threshold: float, alpha: float = 0.05):
        self.threshold, self.alpha = threshold, alpha
        self.values: list[float] = []
        self.interval: Interval | None = None
        self.verdict: str | None = None
        self.looks = 0

    def add(self, log_ratio: float) -> Interval | None:
        """Adds one process's value; returns the look's interval when a look falls here."""
        self.values.append(float(log_ratio))
        if look_index(len(self.values)) is None:
            return None
        return self._look()

    def finish(self) -> Interval:
        """The final interval: one more look (spending the next ``alpha_k``) unless the last value had one.

        The budget decides when this happens, not the values, so the union bound still holds.
        """
        if self.interval is None or self.interval.processes != len(self.values):
            self._look()
        return self.interval

    def _look(self) -> Interval:
        self.looks += 1
        self.interval = look_interval(self.values, self.looks, self.alpha)
        self.verdict = decide(self.interval.low, self.interval.high, self.threshold)
        return self.interval
