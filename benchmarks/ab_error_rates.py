"""How often `mnbench ab` cries wolf on A/A, and how often it catches a real ~10 % slowdown.

A is the canonical MobileNetV3-Small (alpha 1.0, 224 px, fp32). B is the same network a little wider or
larger, an honest model with more work: the script exports alpha 1.05 and 1.1 at 224 px and alpha 1.0 at
225 px (any size above 224 already rounds the last feature maps up from 7x7 to 8x8, so resolution moves in
steps of ~15 %), measures each against A in a short interleaved run and keeps the one whose slowdown is
closest to 10 %; the slowdown that B really has is then estimated from every A/B round and reported.

Trials alternate A/A (A against a second copy of A's file) and A/B, each a complete `mnbench ab` run with its
defaults (10 rounds, 1 thread, 0.3 s per process, threshold 5 %, 95 % intervals) through the same library
call the command makes. An A/A trial is a false alarm when its verdict is `regression` or `improvement`; an
A/B trial catches the slowdown when its verdict is `regression`. Rates carry exact (Clopper-Pearson) 95 %
intervals. The per-process samples recorded on the way answer two more questions on the same data: how a
`mnbench compare` of one `bench` run against another fares (sample-level bootstrap, one process per side;
each round gives one such comparison), and how it fares with three processes per side (two-level bootstrap).

Writes results/ab_error_rates.{csv,md}. Run: python benchmarks/ab_error_rates.py [--trials 14]
"""

import argparse
import csv
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _context import header  # noqa: E402
from device_bench import stats  # noqa: E402
from device_bench.ab import ABSettings, host_runner, paired_ratio_ci, run_ab  # noqa: E402
from device_bench.stats import run_level_ratio_ci  # noqa: E402
from export.pipeline import ExportRequest, export  # noqa: E402
from export.quantization import Quant  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

CANDIDATES = ((1.05, 224), (1.1, 224), (1.0, 225))  # (alpha, resolution)
TARGET_SLOWDOWN = 1.10
FLAGGED = ("regression", "improvement")


def export_models(out: Path) -> tuple[Path, Path, dict[tuple, Path]]:
    """A, a byte-identical copy of A (A/A as two files, like baseline and rebuilt candidate), and the Bs."""
    def one(alpha: float, resolution: int) -> Path:
        request = ExportRequest(configure("v3-small", alpha, resolution), Quant.FP32, calib_samples=8,
                                verify=False)
        return out / export(request, out)["file"]

    model_a = one(1.0, 224)
    copy = out / "copy" / model_a.name
    copy.parent.mkdir()
    shutil.copy(model_a, copy)
    return model_a, copy, {candidate: one(*candidate) for candidate in CANDIDATES}


class Recorder:
    """Wraps the host runner and keeps every process's samples, in call order."""

    def __init__(self, settings: ABSettings):
        self.runner = host_runner(settings.params)
        self.calls: list[tuple[str, tuple[float, ...]]] = []

    def __call__(self, model: Path, threads: int):
        measured = self.runner(model, threads)
        self.calls.append((str(model), measured.samples_us))
        return measured


def pick_b(model_a: Path, candidates: dict[tuple, Path], settings: ABSettings) -> tuple[tuple, dict]:
    """The candidate whose measured B/A (6 interleaved rounds each) is closest to the target slowdown."""
    ratios = {}
    for candidate, path in candidates.items():
        result = run_ab(model_a, path, ABSettings(rounds=6, params=settings.params))
        ratios[candidate] = result.ratio
    return min(ratios, key=lambda r: abs(ratios[r] - TARGET_SLOWDOWN)), ratios


def trial(kind: str, index: int, model_a: Path, model_b: Path, settings: ABSettings) -> tuple[dict, list]:
    recorder = Recorder(settings)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    result = run_ab(model_a, model_b, settings, runner=recorder)
    processes = [samples for _, samples in recorder.calls]
    pairs = []  # (A samples, B samples) per round, from the recorded call order
    for number, item in enumerate(result.rounds):
        first, second = processes[2 * number], processes[2 * number + 1]
        pairs.append((first, second) if item.order == "AB" else (second, first))
    row = {"kind": kind, "trial": index, "verdict": result.verdict, "ratio": result.ratio,
           "ci_low": result.ci_low, "ci_high": result.ci_high,
           "pooled_verdict": stats.verdict(result.sample_level["ratio"], result.sample_level["ci_low"],
                                           result.sample_level["ci_high"], settings.threshold),
           "seconds": round(time.monotonic() - started, 1), "load_1min_before": load_before,
           "round_ratios": " ".join(f"{item.ratio:.4f}" for item in result.rounds)}
    return row, pairs


def compare_style(pairs: list, settings: ABSettings) -> tuple[list[str], list[str]]:
    """Verdicts of `compare` on the recorded processes: one process per side, and three per side."""
    single = [stats.verdict(*stats.ratio_ci(a, b), settings.threshold) for a, b in pairs]
    triple = []
    for start in range(0, len(pairs) - 2, 3):
        chunk = pairs[start:start + 3]
        ratio = run_level_ratio_ci([a for a, _ in chunk], [b for _, b in chunk])
        triple.append(stats.verdict(*ratio, settings.threshold))
    return single, triple


def clopper_pearson(hits: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a rate, by bisection on the binomial CDF."""
    def cdf(k: int, p: float) -> float:
        return sum(math.comb(total, i) * p ** i * (1 - p) ** (total - i) for i in range(k + 1))

    def solve(predicate) -> float:
        low, high = 0.0, 1.0
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if predicate(middle) else (low, middle)
        return (low + high) / 2

    tail = (1 - confidence) / 2
    lower = 0.0 if hits == 0 else solve(lambda p: 1 - cdf(hits - 1, p) < tail)
    upper = 1.0 if hits == total else solve(lambda p: cdf(hits, p) > tail)
    return lower, upper


def rate(verdicts: list[str], hits: tuple[str, ...]) -> str:
    count = sum(verdict in hits for verdict in verdicts)
    low, high = clopper_pearson(count, len(verdicts))
    return f"{count}/{len(verdicts)} = {count / len(verdicts):.0%} (95 % CI {low:.0%}–{high:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=14, help="A/A trials and A/B trials, each")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    settings = ABSettings()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        model_a, copy_a, candidates = export_models(Path(scratch))
        chosen, calibration = pick_b(model_a, candidates, settings)
        model_b = candidates[chosen]
        rows, recorded = [], {"A/A": [], "A/B": []}
        for index in range(args.trials):
            for kind, other in (("A/A", copy_a), ("A/B", model_b)):
                row, pairs = trial(kind, index + 1, model_a, other, settings)
                single, triple = compare_style(pairs, settings)
                row.update(compare_1v1=" ".join(single), compare_3v3=" ".join(triple))
                rows.append(row)
                recorded[kind].append((row, pairs, single, triple))
                print(f"{kind} trial {index + 1}: {row['verdict']} {row['ratio']:.3f} "
                      f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] ({row['seconds']} s)", file=sys.stderr)
    elapsed_s = time.monotonic() - started
    write(args.out, rows, recorded, chosen, calibration, settings, elapsed_s, " ".join(sys.argv[1:]))


def write(out: Path, rows: list[dict], recorded: dict, chosen: tuple, calibration: dict, settings: ABSettings,
          elapsed_s: float, argv: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ab_error_rates.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    b_ratios = [float(value) for row, *_ in recorded["A/B"] for value in row["round_ratios"].split()]
    true_ratio, true_low, true_high = paired_ratio_ci([1.0] * len(b_ratios), b_ratios)
    verdicts = {kind: [row["verdict"] for row, *_ in items] for kind, items in recorded.items()}
    pooled = {kind: [row["pooled_verdict"] for row, *_ in items] for kind, items in recorded.items()}
    single = {kind: [v for *_, s, _ in items for v in s] for kind, items in recorded.items()}
    triple = {kind: [v for *_, t in items for v in t] for kind, items in recorded.items()}
    noisy = {kind: rate(values, ("noisy",)) for kind, values in verdicts.items()}
    command = f"python benchmarks/ab_error_rates.py {argv}".strip()
    lines = [header("A/B error rates of mnbench ab (and of compare on the same processes)", command),
             f"Run time: {elapsed_s / 60:.1f} min. The machine was shared with other jobs (1-min load "
             f"average before each trial: {min(r['load_1min_before'] for r in rows):.2f}–"
             f"{max(r['load_1min_before'] for r in rows):.2f}).", "",
             "A = MobileNetV3-Small 1.0 at 224 px, fp32. B = the same with alpha "
             f"{chosen[0]:g} at {chosen[1]} px (picked from "
             f"{', '.join(f'alpha {a:g} {r} px: x{v:.3f}' for (a, r), v in calibration.items())} in 6 "
             f"quick rounds each). B's slowdown measured over all {len(b_ratios)} A/B rounds of this run: "
             f"**x{true_ratio:.3f}** (95 % CI {true_low:.3f}–{true_high:.3f}).", "",
             f"Each trial is one `mnbench ab` with its defaults: {settings.rounds} rounds (AB, BA, ...), "
             f"{settings.threads} thread, {settings.params.min_secs} s and >= {settings.params.runs} runs "
             f"per process, threshold {settings.threshold:.0%}, {settings.confidence:.0%} intervals.", "",
             "| method | A/A flagged (false alarm) | A/B caught as regression |", "|---|---|---|",
             f"| `mnbench ab` (round-level Wilcoxon interval) | {rate(verdicts['A/A'], FLAGGED)} | "
             f"{rate(verdicts['A/B'], ('regression',))} |",
             f"| same processes, all runs pooled (sample-level bootstrap) | {rate(pooled['A/A'], FLAGGED)} | "
             f"{rate(pooled['A/B'], ('regression',))} |",
             f"| `compare`, one `bench` process per side | {rate(single['A/A'], FLAGGED)} | "
             f"{rate(single['A/B'], ('regression',))} |",
             "| `compare`, three processes per side (two-level bootstrap) | "
             f"{rate(triple['A/A'], FLAGGED)} | "
             f"{rate(triple['A/B'], ('regression',))} |", "",
             f"`mnbench ab` verdict `noisy` (undecided; passes the gate unless `--fail-on noisy`): A/A "
             f"{noisy['A/A']}, A/B {noisy['A/B']}.", "",
             "Per-trial figures are in ab_error_rates.csv (verdict, ratio, interval, per-round ratios, the "
             "pooled verdict, and the compare-style verdicts of each round and each group of three rounds)."]
    (out / "ab_error_rates.md").write_text("\n".join(lines) + "\n")
    print((out / "ab_error_rates.md").read_text())


if __name__ == "__main__":
    main()
