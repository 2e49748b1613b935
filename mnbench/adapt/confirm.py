"""The budget, confirmed: the adapted model timed against the starting model by the latency gate's engine.

A single timing of the adapted model cannot show that it meets a budget a few per cent away: the same model
moves 2-4 % between rounds on a shared machine. Here the starting model (A) and the adapted model (B) run
interleaved in fresh processes (``device_bench.interleave``'s runners: pairs in random order on the host,
benchmark_model back to back on a phone), and the per-process log ratios ``log(B/A)`` get the gate's
sequential rule (``device_bench.sequential``: looks after 5, 8, 11, ... processes, Student-t intervals with
alpha-spending, so every interval reported is part of one 95 % confidence sequence). The budget as a ratio
of the start (``budget_ms / start_ms``) is the bound: the model is

* ``under`` the budget once an interval of B/A lies entirely at or below it,
* ``over`` once an interval lies entirely above it,
* ``undecided`` when the time runs out first (the last interval then reaches over the budget).

Only ``under`` confirms; ``mnbench adapt`` takes another step otherwise. The gate's own band verdict
(regression / improvement / unchanged around 1) is not used. With ``--budget-ms`` the ratio bound rests on
the start's latency measured at the start of the run; with ``--budget-ratio`` it is exactly the ratio asked.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

MIN_PROCESSES = 3       # the gate's minimum (device_bench.interleave.MIN_PROCESSES)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Confirmation:
    """Adapted/start latency ratio and its interval from interleaved processes, judged against the budget."""

    verdict: str            # "under", "over" or "undecided"
    ratio: float
    low: float
    high: float
    budget_ratio: float
    processes: int
    look: int
    level: float            # coverage of the deciding look's interval on its own (the sequence: 95 %)
    seconds: float

    @property
    def met(self) -> bool:
        return self.verdict == "under"

    def words(self, start_ms: float) -> str:
        """One line: the ratio, its interval, in milliseconds of the start too, and the verdict."""
        return (f"adapted/start {self.ratio:.3f} (95 % sequence interval {self.low:.3f}-{self.high:.3f}, "
                f"{self.processes} interleaved processes, {self.seconds:.0f} s) against the budget "
                f"{self.budget_ratio:.3f}: {self.low * start_ms:.3f}-{self.high * start_ms:.3f} ms "
                f"against {self.budget_ratio * start_ms:.3f} ms, {self.verdict}")

    def as_dict(self) -> dict:
        return asdict(self)


def judge(low: float, high: float, bound: float) -> str | None:
    """"under" when ``[low, high]`` lies at or below ``bound``, "over" when above it, None while it
    straddles it."""
    if high <= bound:
        return "under"
    if low > bound:
        return "over"
    return None


def confirm(start: Path, adapted: Path, budget_ratio: float, runner, threads: int = 1, max_secs: float = 60.0,
            seed: int = 0, clock: Callable[[], float] = time.monotonic) -> Confirmation:
    """Run processes of ``start`` (A) and ``adapted`` (B) until an interval of B/A lies on one side of
    ``budget_ratio``, or ``max_secs`` run out (at least ``MIN_PROCESSES`` run).

    ``runner``: ``device_bench.interleave``'s ``PairRunner`` (``host_pair_runner()``, ``phone_pair_runner``).
    """
    from device_bench.interleave import process_log_ratio
    from device_bench.sequential import SequentialTest

    test = SequentialTest(threshold=0.05, alpha=1 - CONFIDENCE)    # its looks and intervals; not its verdict
    seeds = np.random.default_rng(seed)
    began = clock()
    verdict = None
    while verdict is None:
        elapsed, done = clock() - began, len(test.values)
        if done >= MIN_PROCESSES and elapsed + elapsed / done > max_secs:
            break
        measured = runner(Path(start), Path(adapted), threads, int(seeds.integers(2 ** 31)))
        interval = test.add(process_log_ratio(measured))
        if interval is not None:
            verdict = judge(interval.low, interval.high, budget_ratio)
    interval = test.finish()
    verdict = verdict or judge(interval.low, interval.high, budget_ratio) or "undecided"
    return Confirmation(verdict, interval.ratio, interval.low, interval.high, budget_ratio,
                        interval.processes, interval.look, interval.level, clock() - began)
