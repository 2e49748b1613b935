"""Interleaved A/B latency test of two models on one target (``mnbench ab``).

Why rounds and not pooled samples: the runs inside one process share its memory layout, its cores and
the machine's state at that moment, so they are not independent; the spread *between* fresh processes is
usually larger than the spread inside one. A test that pools every run of A and every run of B and
bootstraps them (``stats.ratio_ci``) sees only the inside spread and flags differences between two
processes of the *same* model. Here the unit of replication is the round: each round measures A and B once,
each in a fresh process, back to back, so slow drift (thermal state, other jobs) hits both alike, and the
order alternates AB, BA, AB, ... so neither model always runs second.

Per round ``i`` the statistic is ``d_i = log(median(B_i) / median(A_i))``. The reported ratio is
``exp`` of the Hodges-Lehmann estimate (median of the Walsh averages ``(d_i + d_j) / 2, i <= j``) and its
interval is the exact distribution-free Wilcoxon signed-rank interval (Hollander & Wolfe, *Nonparametric
Statistical Methods*, 3rd ed., sec. 3.3): it assumes only that the ``d_i`` are independent and symmetric
about their centre, which an A/A test satisfies by exchangeability, and one disturbed round moves it little.
The verdict is ``stats.verdict`` on that interval.

The runner is injected: ``Runner(model_path, threads) -> Measurement`` measures one model once in a fresh
process. Only the per-process median is needed, so a phone runner that reports ``benchmark_model``'s
summary would do; that runner is not written yet and ``--target <serial>`` says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import BenchError, BenchInputError

from . import stats
from .host import HostParams, host_description, run_worker, runtime_version

__all__ = ["ABError", "ABResult", "ABSettings", "ABVerdict", "MIN_ROUNDS", "Measurement", "Round",
           "host_runner", "model_columns_checked", "paired_ratio_ci", "round_orders", "run_ab",
           "signed_rank_lower_index"]

MIN_ROUNDS = 6  # fewest rounds whose widest Wilcoxon interval [min d, max d] still has >= 95 % coverage
EXACT_MAX_ROUNDS = 100  # above this, signed-rank quantiles come from the normal approximation
AB_PARAMS = HostParams(runs=20, min_secs=0.3, warmup=1, warmup_min_secs=0.2)  # per process, per round


class ABError(BenchInputError):
    """An A/B request that cannot be run as asked (bad model, bad settings, unsupported target)."""


@dataclass(frozen=True)
class Measurement:
    """One fresh-process measurement of one model: its median and, when the runner has them, its runs."""

    median_us: float
    samples_us: tuple[float, ...] = ()


Runner = Callable[[Path, int], Measurement]


@dataclass(frozen=True)
class ABSettings:
    """How an A/B test is run and judged.

    Attributes:
        rounds: rounds of (A, B), each model in a fresh process per round; at least ``MIN_ROUNDS``.
        threads: interpreter threads for both models.
        threshold: relative change that counts (0.05 = 5 %).
        confidence: two-sided coverage of the interval.
        params: per-process benchmark settings of the host runner.
    """

    rounds: int = 10
    threads: int = 1
    threshold: float = 0.05
    confidence: float = 0.95
    params: HostParams = AB_PARAMS

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < MIN_ROUNDS:
            raise ABError(f"rounds must be an integer >= {MIN_ROUNDS} (fewer rounds cannot give a 95 % "
                          f"interval), received rounds={self.rounds!r}")
        if self.threads < 1:
            raise ABError(f"threads must be >= 1, received threads={self.threads!r}")
        if not 0 < self.threshold < 1:
            raise ABError(f"threshold must be in (0, 1), received threshold={self.threshold!r}")
        if not 0.5 <= self.confidence < 1:
            raise ABError(f"confidence must be in [0.5, 1), received confidence={self.confidence!r}")


@dataclass(frozen=True)
class Round:
    """One round: which model ran first and each model's median (us)."""

    index: int
    order: str  # "AB" or "BA"
    a_median_us: float
    b_median_us: float
    a_count: int = 0
    b_count: int = 0

    @property
    def ratio(self) -> float:
        return self.b_median_us / self.a_median_us


@dataclass(frozen=True)
class ABVerdict:
    """What both A/B engines report: the two models, where they ran, and B/A (> 1: B is slower) with its
    interval and verdict. :class:`ABResult` (fixed rounds) and ``interleave.GateResult`` add their own."""

    model_a: str
    model_b: str
    sha256_a: str | None
    sha256_b: str | None
    target: str
    target_desc: dict
    runtime: str
    threads: int
    delegate: str
    ratio: float
    ci_low: float
    ci_high: float
    verdict: str
    threshold: float
    confidence: float

    @staticmethod
    def identity(columns: Sequence[dict], target: str, threads: int, xnnpack: bool) -> dict:
        """The fields naming the two models (``model_columns_checked``) and the target."""
        return {"model_a": columns[0]["model"], "model_b": columns[1]["model"],
                "sha256_a": columns[0]["model_sha256"], "sha256_b": columns[1]["model_sha256"],
                "target": target,
                "target_desc": host_description() if target == "host" else {"serial": target},
                "runtime": runtime_version() if target == "host" else "benchmark_model", "threads": threads,
                "delegate": "xnnpack" if xnnpack else "cpu"}

    def as_dict(self) -> dict:
        """JSON-ready dict, starting with ``verdict``, ``ratio``, ``ci_low``, ``ci_high``."""
        return {"verdict": self.verdict, "ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high,
                **asdict(self)}


@dataclass(frozen=True)
class ABResult(ABVerdict):
    """The outcome of :func:`run_ab`: the verdict and its rounds."""

    rounds: tuple[Round, ...]
    sample_level: dict | None = field(default=None)  # pooled-runs bootstrap, for diagnosis only

    def as_dict(self) -> dict:
        data = super().as_dict()
        data["rounds"] = [{**asdict(item), "ratio": item.ratio} for item in self.rounds]
        data["method"] = "Hodges-Lehmann ratio of per-round medians, Wilcoxon signed-rank interval"
        return data


def round_orders(rounds: int) -> list[str]:
    """``["AB", "BA", "AB", ...]``: alternate which model runs first, so order effects cancel."""
    return ["AB" if index % 2 == 0 else "BA" for index in range(rounds)]


def host_runner(params: HostParams = AB_PARAMS) -> Runner:
    """A runner measuring each model in a fresh LiteRT process on this CPU (``host.run_worker``).

    The runner raises ``BenchError`` when the worker fails.
    """

    def measure(model: Path, threads: int) -> Measurement:
        result = run_worker(model, threads, params)
        if not result["ok"]:
            raise BenchError(f"{Path(model).name}: {result['error']}")
        samples = tuple(float(value) for value in result["samples_us"])
        return Measurement(float(np.median(samples)), samples)

    return measure


def run_ab(model_a: Path, model_b: Path, settings: ABSettings = ABSettings(), target: str = "host",
           runner: Runner | None = None, on_round: Callable[[Round], None] | None = None) -> ABResult:
    """Measures A and B alternately, ``settings.rounds`` times, and judges B against A.

    Args:
        model_a: baseline model (.tflite).
        model_b: candidate model; the same file as ``model_a`` makes an A/A test.
        settings: rounds, threads, threshold, confidence and per-process settings.
        target: ``"host"``; a phone serial is accepted only together with a ``runner``.
        runner: measures one model once in a fresh process; None means :func:`host_runner`.
        on_round: called after each round (progress).

    Raises:
        ABError: a model that is missing or unreadable, or a phone target without a runner.
        BenchError: a measurement failed.
    """
    if runner is None and target != "host":
        raise ABError(f"A/B on a phone (--target {target}) is not implemented yet; only --target host is: "
                      "run `mnbench device` on both models and compare the runs with `mnbench compare`")
    columns = [model_columns_checked(Path(model)) for model in (model_a, model_b)]
    runner = runner or host_runner(settings.params)
    rounds = []
    for index, order in enumerate(round_orders(settings.rounds)):
        measured = {}
        for name in order:
            measured[name] = runner(Path(model_a if name == "A" else model_b), settings.threads)
        item = Round(index + 1, order, measured["A"].median_us, measured["B"].median_us,
                     len(measured["A"].samples_us), len(measured["B"].samples_us))
        rounds.append((item, measured))
        if on_round:
            on_round(item)
    return _result(columns, [item for item, _ in rounds], [m for _, m in rounds], settings, target)


def model_columns_checked(path: Path) -> dict:
    """The model's provenance columns, after LiteRT has loaded it (``ABError`` if it cannot)."""
    from .errors import ModelFileError
    from .provenance import model_columns
    from .tflite_file import open_interpreter, read_bytes

    try:
        open_interpreter(read_bytes(path))
        return model_columns(path)
    except ModelFileError as error:
        raise ABError(str(error)) from None


def _result(columns: list[dict], rounds: list[Round], measured: list[dict], settings: ABSettings,
            target: str) -> ABResult:
    a_medians = [item.a_median_us for item in rounds]
    b_medians = [item.b_median_us for item in rounds]
    ratio, low, high = paired_ratio_ci(a_medians, b_medians, settings.confidence)
    verdict = stats.verdict(ratio, low, high, settings.threshold)
    return ABResult(
        **ABVerdict.identity(columns, target, settings.threads, settings.params.xnnpack),
        rounds=tuple(rounds), ratio=ratio, ci_low=low, ci_high=high, verdict=verdict,
        threshold=settings.threshold, confidence=settings.confidence,
        sample_level=_sample_level(measured, settings.confidence))


def _sample_level(measured: list[dict], confidence: float) -> dict | None:
    """Bootstrap on all runs pooled (ignores process-to-process spread); None without per-run samples."""
    a_runs = [value for item in measured for value in item["A"].samples_us]
    b_runs = [value for item in measured for value in item["B"].samples_us]
    if min(len(a_runs), len(b_runs)) < stats.MIN_CI_COUNT:
        return None
    ratio, low, high = stats.ratio_ci(a_runs, b_runs, confidence)
    return {"ratio": ratio, "ci_low": low, "ci_high": high,
            "note": "all runs pooled and bootstrapped: ignores the spread between processes"}


def paired_ratio_ci(a_medians_us: Sequence[float], b_medians_us: Sequence[float],
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """Ratio B/A from paired per-round medians, with the Wilcoxon signed-rank interval.

    Args:
        a_medians_us: A's median per round (> 0).
        b_medians_us: B's median per round, same length.
        confidence: two-sided coverage wanted; the interval's exact coverage is at least this.

    Returns:
        ``(ratio, low, high)``: exp of the Hodges-Lehmann estimate of the log ratios and of the bounds.

    Raises:
        StatsError: unequal lengths, non-positive medians, or too few rounds for ``confidence``.
    """
    a, b = np.asarray(a_medians_us, dtype=float), np.asarray(b_medians_us, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise stats.StatsError(f"need one A and one B median per round, received {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0)):
        raise stats.StatsError("per-round medians must be finite and > 0")
    diffs = np.log(b) - np.log(a)
    walsh = np.sort((diffs[:, None] + diffs[None, :])[np.triu_indices(diffs.size)] / 2)
    lower = signed_rank_lower_index(diffs.size, confidence)
    if lower is None:
        raise stats.StatsError(f"{diffs.size} rounds cannot give a {confidence:.0%} interval; "
                               f"use at least {MIN_ROUNDS} for 95 %")
    low, high = walsh[lower - 1], walsh[walsh.size - lower]
    return float(math.exp(np.median(walsh))), float(math.exp(low)), float(math.exp(high))


def signed_rank_lower_index(count: int, confidence: float) -> int | None:
    """1-based rank ``C`` of the Walsh average that bounds the interval below (upper: ``M + 1 - C``).

    ``C`` is the largest integer with ``P(T <= C - 1) <= (1 - confidence) / 2`` for the Wilcoxon
    signed-rank statistic ``T`` of ``count`` pairs under the null; None when no such ``C >= 1`` exists.
    """
    tail = (1 - confidence) / 2
    total = count * (count + 1) // 2
    if count <= EXACT_MAX_ROUNDS:
        ways = [1] + [0] * total  # ways[w] = subsets of {1..count} summing to w
        for rank in range(1, count + 1):
            for w in range(total, rank - 1, -1):
                ways[w] += ways[w - rank]
        cumulative, lower, denominator = 0, 0, 2 ** count
        for w in range(total + 1):
            cumulative += ways[w]
            if cumulative > tail * denominator:
                break
            lower = w + 1
    else:
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1 - tail)
        mean, sd = total / 2, math.sqrt(count * (count + 1) * (2 * count + 1) / 24)
        lower = max(0, math.floor(mean - z * sd + 0.5))
    return lower if lower >= 1 else None
