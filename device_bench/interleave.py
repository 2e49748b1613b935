"""The latency gate's engine: A and B interleaved at random, in fresh processes, until the ratio is clear.

Two levels of interleaving (Abedi & Brecht, ICPE 2017: randomized multiple interleaved trials):

* **inside a process** A and B are both loaded and run in pairs of short blocks whose order is drawn at
  random (``host_worker.measure_pairs``). Both models of a pair saw the same machine, so load that comes
  and goes cancels in the pair's ratio. Each block's first run (after the other model) is not timed and
  its fastest timed run counts, so a run preempted by another process does not. The process's figure is
  ``d = log(B/A)``: the mean, over the two orders (A first, B first), of the Hodges-Lehmann estimate of
  the paired log ratios (the median of their Walsh averages), so
  the penalty of running second cancels too.
* **across processes** each process is a fresh one with its own memory layout; ``d`` differs between
  processes by more than the samples inside one suggest, and that spread is what the interval is built on.

Adaptive stopping: processes run until an interval of B/A lies entirely inside or entirely outside the
``±threshold`` band, or ``max_secs`` run out; the looks and their error control are in
:mod:`device_bench.sequential`. The noise of each process (load, steal, other processes' CPU) is recorded
(:mod:`device_bench.noise`) and an undecided verdict says in one line why.

The runner is injected: ``PairRunner(model_a, model_b, threads, seed) -> PairMeasurement``; the host's
runs a fresh LiteRT worker; the phone's (:func:`phone_pair_runner`) runs ``benchmark_model`` on A and on B,
in a random order, one pair per "process" (the tool prints no per-run samples).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import noise, sequential, stats
from .ab import ABError, ABVerdict, model_columns_checked
from .errors import BenchError
from .host import HostParams, run_pair_worker

__all__ = ["GateResult", "GateSettings", "PAIR_PARAMS", "PairMeasurement", "ProcessResult", "hodges_lehmann",
           "host_pair_runner", "noise_summary", "phone_pair_runner", "process_log_ratio", "run_gate",
           "why_noisy", "within_process_interval"]

PAIR_PARAMS = HostParams(runs=40, min_secs=1.0, warmup=3, warmup_min_secs=0.1)  # per process, in pairs
BLOCK = 3          # timed runs per model per pair (the fastest counts)
MIN_PROCESSES = 3  # run at least this many, whatever the budget


@dataclass(frozen=True)
class PairMeasurement:
    """One process's paired samples: ``a_us[i]`` and ``b_us[i]`` ran back to back, ``a_first[i]`` first."""

    a_us: tuple[float, ...]
    b_us: tuple[float, ...]
    a_first: tuple[bool, ...]


PairRunner = Callable[[Path, Path, int, int], PairMeasurement]


@dataclass(frozen=True)
class GateSettings:
    """How the gate samples and judges.

    Attributes:
        threshold: relative change that counts (0.05 = 5 %).
        confidence: ``1 - alpha``, the coverage of the whole sequence of intervals.
        max_secs: time budget; the verdict is "noisy" when it runs out undecided.
        threads: interpreter threads for both models.
        params: per-process settings of the host runner (``runs`` counts pairs).
        seed: seed of the per-process random orders; None draws one.
    """

    threshold: float = 0.05
    confidence: float = 0.95
    max_secs: float = 60.0
    threads: int = 1
    params: HostParams = PAIR_PARAMS
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ABError(f"threshold must be in (0, 1), received threshold={self.threshold!r}")
        if not 0.5 <= self.confidence < 1:
            raise ABError(f"confidence must be in [0.5, 1), received confidence={self.confidence!r}")
        if not (math.isfinite(self.max_secs) and self.max_secs > 0):
            raise ABError(f"max-secs must be > 0, received max_secs={self.max_secs!r}")
        if self.threads < 1:
            raise ABError(f"threads must be >= 1, received threads={self.threads!r}")


@dataclass(frozen=True)
class ProcessResult:
    """One process: its pairs, its ``B/A``, how long it took and how busy the machine was."""

    index: int
    pairs: int
    a_median_us: float
    b_median_us: float
    ratio: float
    seconds: float
    noise: dict
    heavy: str | None


@dataclass(frozen=True)
class GateResult(ABVerdict):
    """The outcome of :func:`run_gate`: the verdict, its processes and the look that decided it."""

    look: int
    look_level: float
    spread: float
    seconds: float
    max_secs: float
    why: str | None
    processes: tuple[ProcessResult, ...]
    within_process: dict = field(default_factory=dict)
    engine: str = "interleaved"

    def as_dict(self) -> dict:
        data = super().as_dict()
        data["method"] = ("randomized interleaved pairs in fresh processes; Student-t interval of the "
                          "per-process log ratios with alpha-spending over looks (device_bench.sequential)")
        return data


def host_pair_runner(params: HostParams = PAIR_PARAMS, block: int = BLOCK) -> PairRunner:
    """Runs A and B interleaved in one fresh LiteRT process on this CPU; raises ``BenchError`` on failure."""

    def measure(model_a: Path, model_b: Path, threads: int, seed: int) -> PairMeasurement:
        result = run_pair_worker(model_a, model_b, threads, params, seed, block=block)
        if not result["ok"]:
            raise BenchError(f"{Path(model_a).name} / {Path(model_b).name}: {result['error']}")
        return PairMeasurement(tuple(result["a_us"]), tuple(result["b_us"]), tuple(result["a_first"]))

    return measure


def phone_pair_runner(serial: str, delegate: str, settings, benchmark_binary: Path | None, results_root: Path,
                      connect=None) -> PairRunner:
    """A/B on a phone: each "process" is one ``benchmark_model`` run of A and one of B, back to back, in a
    random order (``android.benchmark_devices``, so pinning, cool-down and checks are the device command's).

    ``benchmark_model`` prints no per-run samples, so each process gives one pair: each run's median (its
    average on builds that print no median). The runs are stored under ``results_root``.
    """
    from .android import benchmark_devices

    def measure(model_a: Path, model_b: Path, threads: int, seed: int) -> PairMeasurement:
        if Path(model_a).name == Path(model_b).name:
            raise ABError("on a phone A and B need different file names (copy one of them for an A/A test)")
        a_first = bool(np.random.default_rng(seed).integers(2))
        order = [model_a, model_b] if a_first else [model_b, model_a]
        options = {"connect": connect} if connect is not None else {}
        run = benchmark_devices([serial], order, threads=[threads], delegates=[delegate], settings=settings,
                                benchmark_binary=benchmark_binary, results_root=results_root, **options)
        figures = {}
        for row in run.rows:
            value = row.get("median_us") if row.get("median_us") is not None else row.get("avg_us")
            if row["status"] != "ok" or value is None:
                raise BenchError(f"{serial}: {row['model']}: {row.get('error') or 'no median or average'}")
            figures[row["model"]] = float(value)
        return PairMeasurement((figures[Path(model_a).name],), (figures[Path(model_b).name],), (a_first,))

    return measure


def process_log_ratio(measured: PairMeasurement) -> float:
    """``d = log(B/A)`` of one process: the mean over both orders of the paired log ratios' Hodges-Lehmann.

    Raises:
        StatsError: no pairs, unequal lengths, or a latency that is not finite and > 0.
    """
    a, b = np.asarray(measured.a_us, dtype=float), np.asarray(measured.b_us, dtype=float)
    first = np.asarray(measured.a_first, dtype=bool)
    if a.size == 0 or a.shape != b.shape or first.shape != a.shape:
        raise stats.StatsError(f"a process needs paired samples, received {a.size} A, {b.size} B, "
                               f"{first.size} orders")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0)):
        raise stats.StatsError("paired latencies must be finite and > 0")
    logs = np.log(b) - np.log(a)
    return float(np.mean([hodges_lehmann(logs[part]) for part in (first, ~first) if part.any()]))


def hodges_lehmann(values: np.ndarray) -> float:
    """Median of the Walsh averages ``(x_i + x_j) / 2, i <= j``: robust, 95 % efficient for normal data."""
    walsh = (values[:, None] + values[None, :])[np.triu_indices(values.size)] / 2
    return float(np.median(walsh))


def run_gate(model_a: Path, model_b: Path, settings: GateSettings = GateSettings(), target: str = "host",
             runner: PairRunner | None = None,
             on_process: Callable[[ProcessResult, sequential.Interval | None], None] | None = None,
             clock: Callable[[], float] = time.monotonic) -> GateResult:
    """Runs A/B processes until the interval of B/A decides, or ``settings.max_secs`` run out.

    Raises:
        ABError: a model that cannot be loaded, or a phone target (not implemented for this engine).
        BenchError: a measurement failed.
    """
    if runner is None and target != "host":
        raise ABError(f"a phone target (--target {target}) needs its runner (phone_pair_runner)")
    columns = [model_columns_checked(Path(model)) for model in (model_a, model_b)]
    runner = runner or host_pair_runner(settings.params)
    seeds = np.random.default_rng(settings.seed)
    test = sequential.SequentialTest(settings.threshold, 1 - settings.confidence)
    started = clock()
    processes: list[ProcessResult] = []
    measured_all: list[PairMeasurement] = []
    while test.verdict is None:
        elapsed = clock() - started
        typical = elapsed / len(processes) if processes else 0.0
        if len(processes) >= MIN_PROCESSES and elapsed + typical > settings.max_secs:
            break
        before, began = noise.snapshot(), clock()
        measured = runner(Path(model_a), Path(model_b), settings.threads, int(seeds.integers(2 ** 31)))
        busy = noise.between(before, noise.snapshot())
        busy_words = noise.heavy(busy) if target == "host" else None  # the host's load, not the phone's
        log_ratio = process_log_ratio(measured)
        measured_all.append(measured)
        processes.append(ProcessResult(len(processes) + 1, len(measured.a_us),
                                       float(np.median(measured.a_us)), float(np.median(measured.b_us)),
                                       math.exp(log_ratio), clock() - began, busy.as_dict(),
                                       busy_words))
        interval = test.add(log_ratio)
        if on_process:
            on_process(processes[-1], interval)
    interval = test.interval if test.verdict is not None else test.finish()
    seconds = clock() - started
    verdict, why = test.verdict, None
    if verdict is None:
        verdict = "noisy"
        why = why_noisy(interval, processes, settings, seconds)
    return GateResult(
        **ABVerdict.identity(columns, target, settings.threads, settings.params.xnnpack),
        processes=tuple(processes), ratio=interval.ratio, ci_low=interval.low, ci_high=interval.high,
        verdict=verdict, threshold=settings.threshold, confidence=settings.confidence, look=interval.look,
        look_level=interval.level, spread=interval.spread, seconds=seconds, max_secs=settings.max_secs,
        why=why, within_process=within_process_interval(measured_all, settings.confidence))


def why_noisy(interval: sequential.Interval, processes: Sequence[ProcessResult], settings: GateSettings,
              seconds: float) -> str:
    """One line: what the interval still straddles, after how long, and what made the machine noisy."""
    edges = [f"{edge:+.0%}" for edge in (-settings.threshold, settings.threshold)
             if interval.low < 1 + edge < interval.high]
    line = (f"after {seconds:.0f} s ({len(processes)} processes; budget {settings.max_secs:.0f} s) the "
            f"interval {interval.low:.3f}-{interval.high:.3f} still straddles {' and '.join(edges)}; "
            f"processes differ by {interval.spread:.1%}")
    heavy = [item.heavy for item in processes if item.heavy]
    if heavy:
        line += f"; {len(heavy)} of {len(processes)} processes ran under heavy load ({heavy[-1]})"
    return line


def within_process_interval(measured: Sequence[PairMeasurement], confidence: float) -> dict:
    """The inside-a-process level: every pair of every process pooled, median log ratio and its interval.

    For diagnosis only: it ignores the spread between processes, so it is narrower than it should be.
    """
    logs = np.concatenate([np.log(np.asarray(m.b_us, dtype=float) / np.asarray(m.a_us, dtype=float))
                           for m in measured])
    ranks = stats.median_ci_ranks(logs.size, confidence)
    ordered = np.sort(logs)
    low, high = (math.exp(ordered[ranks[0] - 1]), math.exp(ordered[ranks[1] - 1])) if ranks else (None, None)
    return {"pairs": int(logs.size), "ratio": math.exp(float(np.median(logs))), "ci_low": low,
            "ci_high": high, "note": "all pairs pooled: ignores the spread between processes"}


def noise_summary(processes: Sequence[ProcessResult]) -> dict:
    """Means over the processes of the noise figures, and how many ran under heavy load."""
    keys = ("load1", "busy", "other_cpu", "steal", "freq_mhz")
    summary = {}
    for key in keys:
        values = [item.noise[key] for item in processes if item.noise.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
    summary["heavy_processes"] = sum(item.heavy is not None for item in processes)
    summary["cores"] = os.cpu_count()
    return summary
