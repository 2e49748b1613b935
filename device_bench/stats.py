"""Latency statistics from raw per-run samples, in microseconds.

Every target (host CPU, Android phones) reports one latency per timed run; this module turns those
samples into the summary columns of the results store and compares two sets of samples.

* Percentiles use numpy's ``'linear'`` method (Hyndman & Fan type 7, numpy's default).
* The confidence interval of the median is distribution-free: it is a pair of order statistics
  ``x_(l) <= median <= x_(n+1-l)`` whose coverage follows from the Binomial(n, 1/2) law of the number
  of samples below the true median (Conover, *Practical Nonparametric Statistics*, 3rd ed., sec. 3.2).
  Ranks are exact for ``n <= EXACT_MAX_COUNT`` and use the normal approximation with continuity
  correction above it; the exact ranks are conservative (coverage >= the requested level).
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction
from typing import Sequence

import numpy as np

from .errors import BenchError

MIN_CI_COUNT = 6  # smallest n whose widest interval [min, max] still covers the median with >= 95 %
EXACT_MAX_COUNT = 1000  # above this, binomial ranks come from the normal approximation
VERDICTS = ("regression", "improvement", "unchanged", "noisy")
_MAX_BOOT_CELLS = 4_000_000  # resampled values held in memory at once by ratio_ci (32 MB of float64)


class StatsError(BenchError, ValueError):
    """Samples or parameters that the statistics cannot be computed from."""


def summarize(samples_us: Sequence[float]) -> dict:
    """Summarizes per-run latencies.

    Args:
        samples_us: latencies of the timed runs, in microseconds (finite, >= 0).

    Returns:
        A dict with ``count``, ``mean_us``, ``avg_us`` (== mean), ``std_us`` (ddof=1), ``min_us``,
        ``max_us``, ``median_us``, ``p90_us``, ``p99_us``, ``median_ci_low_us``, ``median_ci_high_us``
        (95 % interval of the median) and ``cv`` (std / mean). Values are plain Python numbers;
        ``std_us`` and ``cv`` are None for one sample (and ``cv`` when the mean is 0), the interval
        bounds are None for fewer than ``MIN_CI_COUNT`` samples.

    Raises:
        StatsError: if the samples are empty, not one-dimensional, non-numeric, non-finite or negative.
    """
    values = _as_samples(samples_us, "samples_us")
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else None
    median, p90, p99 = (float(q) for q in np.percentile(values, [50, 90, 99], method="linear"))
    ranks = median_ci_ranks(values.size)
    ci_low = ci_high = None
    if ranks is not None:
        ordered = np.sort(values)
        ci_low, ci_high = float(ordered[ranks[0] - 1]), float(ordered[ranks[1] - 1])
    return {
        "count": int(values.size), "mean_us": mean, "avg_us": mean, "std_us": std,
        "min_us": float(values.min()), "max_us": float(values.max()),
        "median_us": median, "p90_us": p90, "p99_us": p99,
        "median_ci_low_us": ci_low, "median_ci_high_us": ci_high,
        "cv": std / mean if std is not None and mean > 0 else None,
    }


def median_ci_ranks(count: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """1-based ranks ``(l, n + 1 - l)`` of the order statistics bounding the median's interval.

    Args:
        count: number of samples ``n`` (>= 1).
        confidence: coverage wanted, in (0, 1).

    Returns:
        The narrowest symmetric pair of ranks whose coverage is >= ``confidence`` (exact binomial for
        ``count <= EXACT_MAX_COUNT``, normal approximation above), or None when even ``[min, max]``
        covers less (for 95 %: ``count < 6``).

    Raises:
        StatsError: if ``count`` < 1 or ``confidence`` is outside (0, 1).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise StatsError(f"count must be an integer >= 1, received count={count!r}")
    _check_confidence(confidence)
    lower = _exact_lower_rank(count, confidence) if count <= EXACT_MAX_COUNT else _normal_lower_rank(
        count, confidence)
    return None if lower < 1 else (lower, int(count) + 1 - lower)


def _exact_lower_rank(count: int, confidence: float) -> int:
    """Largest l with 2 * P(B <= l - 1) <= 1 - confidence, B ~ Binomial(count, 1/2); 0 if none."""
    alpha = 1 - Fraction(repr(float(confidence)))  # exact decimal, so 0.95 -> 1/20, not 0.0500000000004
    limit = alpha.numerator * 2 ** count  # compare 2 * cdf / 2**n <= alpha in integers
    cumulative, lower = 0, 0
    for k in range(count // 2 + 1):
        cumulative += math.comb(count, k)
        if 2 * cumulative * alpha.denominator > limit:
            break
        lower = k + 1
    return min(lower, (count + 1) // 2)


def _normal_lower_rank(count: int, confidence: float) -> int:
    """Normal approximation of :func:`_exact_lower_rank` (B ~ N(n/2, n/4), continuity-corrected)."""
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    return max(0, math.floor(count / 2 + 0.5 - z * math.sqrt(count) / 2))


def ratio_ci(a_us: Sequence[float], b_us: Sequence[float], confidence: float = 0.95,
             n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians ``median(b) / median(a)`` with a percentile-bootstrap interval.

    Why the bootstrap rather than Hodges-Lehmann on log ratios: the quantity we report and gate on is
    the ratio of *medians*; Hodges-Lehmann estimates the median of pairwise log differences, which
    equals the log ratio of medians only under a pure scale-shift model, and latency distributions
    change shape between builds (tails, bimodal big/little-core scheduling). The bootstrap targets the
    reported statistic directly and needs no shape assumption. ``a`` and ``b`` are resampled
    independently (runs are treated as i.i.d.; thermal drift makes any interval optimistic), with a
    fixed seed so the same samples always give the same verdict.

    Args:
        a_us: baseline latencies (finite, >= 0), at least ``MIN_CI_COUNT`` of them.
        b_us: candidate latencies, same rules; ratio > 1 means b is slower.
        confidence: two-sided coverage of the interval, in (0, 1).
        n_boot: bootstrap resamples (>= 100).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(ratio, low, high)``: the point estimate from the full samples and the interval bounds.

    Raises:
        StatsError: for invalid samples or parameters, or when a (resampled) baseline median is 0.
    """
    a, b = _as_samples(a_us, "a_us"), _as_samples(b_us, "b_us")
    for name, values in (("a_us", a), ("b_us", b)):
        if values.size < MIN_CI_COUNT:
            raise StatsError(f"{name} needs at least {MIN_CI_COUNT} samples for an interval, "
                             f"received {values.size}")
    _check_confidence(confidence)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise StatsError(f"n_boot must be an integer >= 100, received n_boot={n_boot!r}")
    rng = np.random.default_rng(seed)
    boot_a, boot_b = _boot_medians(a, int(n_boot), rng), _boot_medians(b, int(n_boot), rng)
    if np.median(a) <= 0 or np.any(boot_a <= 0):
        raise StatsError("the median of a_us (or of a resample of it) is 0, so the ratio is undefined")
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot_b / boot_a, [tail, 1 - tail], method="linear")
    return float(np.median(b) / np.median(a)), float(low), float(high)


def _boot_medians(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` resamples with replacement, in chunks that bound memory."""
    rows = max(1, _MAX_BOOT_CELLS // values.size)
    chunks = []
    for start in range(0, n_boot, rows):
        index = rng.integers(0, values.size, size=(min(rows, n_boot - start), values.size))
        chunks.append(np.median(values[index], axis=1))
    return np.concatenate(chunks)


def run_level_ratio_ci(a_runs: Sequence[Sequence[float]], b_runs: Sequence[Sequence[float]],
                       confidence: float = 0.95, n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians of the pooled samples, B over A, with a two-level bootstrap interval.

    Each resample draws as many processes as each side has (with replacement), then from each drawn
    process as many runs as the side's median process holds (with replacement), and takes the median, so
    the spread between processes enters the interval.

    Args:
        a_runs: baseline samples, one sequence per process (finite, >= 0, non-empty each).
        b_runs: candidate samples, same rules.
        confidence: two-sided coverage in (0, 1).
        n_boot: bootstrap resamples (>= 100).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(ratio, low, high)``.

    Raises:
        StatsError: for empty or invalid samples, or a zero baseline median.
    """
    if not a_runs or not b_runs:
        raise StatsError("each side needs at least one process of samples")
    sides = [[_as_samples(run, name) for run in side]
             for name, side in (("a_runs", a_runs), ("b_runs", b_runs))]
    _check_confidence(confidence)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise StatsError(f"n_boot must be an integer >= 100, received n_boot={n_boot!r}")
    rng = np.random.default_rng(seed)
    boot_a, boot_b = (_two_level_medians(side, int(n_boot), rng) for side in sides)
    point_a, point_b = (float(np.median(np.concatenate(side))) for side in sides)
    if point_a <= 0 or np.any(boot_a <= 0):
        raise StatsError("the baseline median (or a resample of it) is 0, so the ratio is undefined")
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot_b / boot_a, [tail, 1 - tail], method="linear")
    return point_b / point_a, float(low), float(high)


def _two_level_medians(runs: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` two-level resamples (processes, then runs inside each), in bounded chunks."""
    sizes = np.array([run.size for run in runs])
    per_run = int(np.median(sizes))
    padded = np.zeros((len(runs), sizes.max()))
    for index, run in enumerate(runs):
        padded[index, :run.size] = run
    rows = max(1, _MAX_BOOT_CELLS // (len(runs) * per_run))
    chunks = []
    for start in range(0, n_boot, rows):
        count = min(rows, n_boot - start)
        picked = rng.integers(0, len(runs), size=(count, len(runs), 1))
        inner = (rng.random((count, len(runs), per_run)) * sizes[picked]).astype(np.int64)
        chunks.append(np.median(padded[picked, inner].reshape(count, -1), axis=1))
    return np.concatenate(chunks)


def verdict(ratio: float, low: float, high: float, threshold: float = 0.05,
            max_width: float | None = None) -> str:
    """Classifies a latency ratio (candidate / baseline) and its interval.

    Rules, in order:

    1. ``"regression"`` if the whole interval is above ``1 + threshold`` (``low > 1 + threshold``);
    2. ``"improvement"`` if the whole interval is below ``1 - threshold`` (``high < 1 - threshold``);
    3. ``"noisy"`` if the relative width ``(high - low) / ratio`` exceeds ``max_width``;
    4. ``"unchanged"`` otherwise.

    A conclusive interval wins over its width: ``[1.2, 1.6]`` is a regression however wide. "noisy"
    only replaces "unchanged", which claims the change is small and so needs a narrow interval. The
    default bound, ``2 * threshold``, is the width of the band ``[1 - threshold, 1 + threshold]``: a
    wider interval cannot fit inside it.

    Args:
        ratio: point estimate (> 0), e.g. from :func:`ratio_ci`.
        low: lower interval bound (> 0).
        high: upper interval bound (>= low).
        threshold: relative change that counts, in (0, 1).
        max_width: largest relative interval width still called "unchanged"; None means
            ``2 * threshold``.

    Returns:
        One of ``VERDICTS``.

    Raises:
        StatsError: for non-finite or non-positive values, ``low > high`` or a bad threshold/width.
    """
    for name, value in (("ratio", ratio), ("low", low), ("high", high)):
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
            raise StatsError(f"{name} must be a finite number > 0, received {name}={value!r}")
    if low > high:
        raise StatsError(f"low must be <= high, received low={low!r}, high={high!r}")
    if not 0 < threshold < 1:
        raise StatsError(f"threshold must be in (0, 1), received threshold={threshold!r}")
    width_bound = 2 * threshold if max_width is None else max_width
    if not (math.isfinite(width_bound) and width_bound > 0):
        raise StatsError(f"max_width must be a finite number > 0, received max_width={max_width!r}")
    if low > 1 + threshold:
        return "regression"
    if high < 1 - threshold:
        return "improvement"
    return "noisy" if (high - low) / ratio > width_bound else "unchanged"


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float, np.floating)) and 0 < confidence < 1):
        raise StatsError(f"confidence must be in (0, 1), received confidence={confidence!r}")


def _as_samples(samples: Sequence[float], name: str) -> np.ndarray:
    """Validated 1-D float64 copy of ``samples``."""
    try:
        values = np.array(samples, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name} must be a sequence of numbers: {exc}") from None
    if values.ndim != 1:
        raise StatsError(f"{name} must be one-dimensional, received shape {values.shape}")
    if values.size == 0:
        raise StatsError(f"{name} is empty: at least one timed run is needed")
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        first = int(bad[0])
        raise StatsError(f"{name} must hold finite latencies >= 0, "
                         f"received {name}[{first}]={float(values[first])!r}")
    return values
