"""Change points in a series of per-commit medians: where latency stepped, by how much, between which commits.

The fit is ``ruptures``' penalized binary segmentation (``Binseg``) with the least-squares cost on log
latency, so a step is a ratio whatever the model's speed, penalized ``PENALTY * sigma^2 * log(n)`` per
change (a BIC-type penalty), where sigma is the series' own noise, estimated robustly from commit-to-commit
differences (1.4826 MAD / sqrt 2, which steps barely move) and floored at ``MIN_NOISE``. A segment holds at
least ``MIN_SIZE`` commits, so one odd commit is not a step: a step shows once two commits agree on it.
The cost is ruptures' ``l2`` computed from cumulative sums (:class:`SquaredError`, O(1) per segment).
``benchmarks/history_steps.py`` measured detection and false steps for the chosen ``PENALTY``, and against
ruptures' exact PELT (``algorithm="pelt"``): on this machine's noise Binseg found a few % fewer steps with
about half the false ones, in a fifth of the time at 100 commits; PELT grows about quadratically with the
commits (1.4 s for 1,250 in one timing on the loaded development machine, Binseg 15 ms).

A step's size is the ratio of the medians of the segments around it, with an approximate interval from the
series' noise (normal approximation, 1.2533 sigma/sqrt(n) per segment median). A step up is a regression;
it is *open* while the series' latest level still holds at least half of its rise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
import ruptures

PENALTY = 3.0
ALGORITHMS = {"binseg": ruptures.Binseg, "pelt": ruptures.Pelt}
MIN_NOISE = 0.005  # 0.5 %: identical summary figures (phone rows) must not turn every wiggle into a step
MIN_SIZE = 2
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)


@dataclass(frozen=True)
class Step:
    """A change between two consecutive measured commits of a series."""

    index: int              # position of the first point after the step
    before_commit: str      # last commit at the old level
    after_commit: str       # first commit at the new level: the culprit is in before_commit..after_commit
    after_time: str
    before_us: float
    after_us: float
    ratio: float            # after / before
    ci_low: float
    ci_high: float
    open: bool = False

    @property
    def regression(self) -> bool:
        return self.ratio > 1

    @property
    def commit_range(self) -> str:
        return f"{self.before_commit[:12]}..{self.after_commit[:12]}"

    def as_dict(self) -> dict:
        return {**asdict(self), "commit_range": self.commit_range, "regression": self.regression}


class SquaredError(ruptures.base.BaseCost):
    """ruptures' ``l2`` cost (sum of squared deviations from the segment mean) from cumulative sums."""

    model = "l2_cumulative"
    min_size = MIN_SIZE

    def fit(self, signal: np.ndarray) -> "SquaredError":
        self.signal = np.asarray(signal, dtype=float).reshape(len(signal), -1)  # ruptures reads its shape
        values = self.signal[:, 0] - self.signal[:, 0].mean()  # centred: the cumulative sums keep precision
        # Python lists: error() is called very often, and indexing floats in a list beats numpy scalars
        self.sums = np.concatenate([[0.0], np.cumsum(values)]).tolist()
        self.squares = np.concatenate([[0.0], np.cumsum(values * values)]).tolist()
        return self

    def error(self, start: int, end: int) -> float:
        total = self.sums[end] - self.sums[start]
        return self.squares[end] - self.squares[start] - total * total / (end - start)


def noise(log_values: np.ndarray) -> float:
    """Robust standard deviation of one point's log latency, from commit-to-commit differences."""
    if log_values.size < 3:
        return MIN_NOISE
    diffs = np.diff(log_values)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return max(1.4826 * mad / math.sqrt(2), MIN_NOISE)


def change_points(values_us, penalty: float = PENALTY, algorithm: str = "binseg") -> list[int]:
    """Indices where a new level starts (sorted, never 0 or len); ``algorithm`` is a key of ``ALGORITHMS``."""
    log_values = np.log(np.asarray(values_us, dtype=float))
    if log_values.size < 2 * MIN_SIZE:
        return []
    sigma = noise(log_values)
    fit = ALGORITHMS[algorithm](custom_cost=SquaredError(), min_size=MIN_SIZE, jump=1)
    fit.fit(log_values.reshape(-1, 1))
    return sorted(fit.predict(pen=penalty * sigma ** 2 * math.log(log_values.size))[:-1])


def find_steps(points: pd.DataFrame, penalty: float = PENALTY, confidence: float = 0.95,
               algorithm: str = "binseg") -> list[Step]:
    """Steps of one series' points (``mnbench.history.series.POINT_COLUMNS``, in commit order)."""
    values = points["median_us"].to_numpy(dtype=float)
    breaks = change_points(values, penalty, algorithm)
    if not breaks:
        return []
    log_values = np.log(values)
    sigma = noise(log_values)
    bounds = [0, *breaks, len(values)]
    segments = [log_values[start:end] for start, end in zip(bounds, bounds[1:])]
    levels = [float(np.median(segment)) for segment in segments]
    z_score = NormalDist().inv_cdf(0.5 + confidence / 2)
    steps = []
    for number, index in enumerate(breaks):
        before, after = segments[number], segments[number + 1]
        delta = levels[number + 1] - levels[number]
        half_width = z_score * _MEDIAN_SE_FACTOR * sigma * math.sqrt(1 / before.size + 1 / after.size)
        still_risen = levels[-1] - levels[number] >= delta / 2
        steps.append(Step(index=int(index), before_commit=str(points["commit"].iat[index - 1]),
                          after_commit=str(points["commit"].iat[index]),
                          after_time=str(points["first_time"].iat[index]),
                          before_us=math.exp(levels[number]), after_us=math.exp(levels[number + 1]),
                          ratio=math.exp(delta), ci_low=math.exp(delta - half_width),
                          ci_high=math.exp(delta + half_width), open=delta > 0 and still_risen))
    return steps


def fitted_levels(points: pd.DataFrame, steps: list[Step]) -> np.ndarray:
    """The step fit drawn on a page: each point's segment median (us)."""
    values = np.log(points["median_us"].to_numpy(dtype=float))
    bounds = [0, *(step.index for step in steps), len(values)]
    fitted = np.empty_like(values)
    for start, end in zip(bounds, bounds[1:]):
        fitted[start:end] = np.median(values[start:end])
    return np.exp(fitted)
