"""Power curve of the latency gate (`mnbench ab`) on this machine, with and without injected load.

Models (``_slowed_models.py``): A is MobileNetV3-Small 1.0 at 96 px (fp32); B_k is A behind a chain of k
extra element-wise operators. The true B/A of each B_k is measured first by a long reference run
(``--reference-processes`` interleaved processes, all pairs pooled per process, median over processes);
the k closest to slowdowns of 2, 3, 5 and 10 % are used. 0 % is A against a byte-identical copy of A.

Trials: for each trial index, for each condition (``quiet``: nothing of ours running besides the gate;
``loaded``: our own bursty load process, burning one core for 50-300 ms then sleeping 50-300 ms, started
before and stopped after the condition's trials), for each slowdown in random order: one `run_gate` with
``--threshold`` and ``--max-secs`` (the new default engine of `mnbench ab`). A verdict "regression" on a
true slowdown is a detection; "regression" or "improvement" on A/A is a false alarm. For the first
``--old-trials`` trial indices the former engine (`mnbench ab --engine rounds`, its defaults, same threshold)
runs too, and each of its rounds doubles as a `mnbench compare` of one `bench` process per side
(sample-level bootstrap; the former behaviour). Rows are appended to the CSV as they finish, so a run cut
short keeps its trials; the Markdown is rewritten after every trial index.

"quiet" means without our injected load, not that nothing else ran: the load average and the CPU used by
other processes are recorded per row, and the reference run's load is printed in its note.

Run: python benchmarks/gate_power.py [--trials 20] [--max-secs 20] [--threshold 0.02]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from _context import header  # noqa: E402
from _slowed_models import export_chain_models  # noqa: E402
from ab_error_rates import clopper_pearson  # noqa: E402

from device_bench import stats  # noqa: E402
from device_bench.ab import ABSettings, host_runner, run_ab  # noqa: E402
from device_bench.host import HostParams, run_pair_worker  # noqa: E402
from device_bench.interleave import GateSettings, PairMeasurement, noise_summary, process_log_ratio, run_gate  # noqa: E402

CHAINS = (4, 6, 10, 20)
TARGETS = (0.02, 0.03, 0.05, 0.10)
FIELDS = ["condition", "trial", "target", "true_ratio", "engine", "verdict", "ratio", "ci_low", "ci_high",
          "seconds", "processes", "load1", "other_cpu", "heavy_processes", "why"]

BURN = """
import random, time
rng = random.Random()
while True:
    end = time.monotonic() + rng.uniform(0.05, 0.3)
    while time.monotonic() < end:
        pass
    time.sleep(rng.uniform(0.05, 0.3))
"""


def reference(model_a: Path, models: dict[int, Path], processes: int) -> tuple[dict[int, float], str]:
    """True B/A per chain length, and a note on how it was found.

    Every chain length runs ``processes`` interleaved processes (1.5 s of pairs each). Each extra operator
    costs the same, so ``log(B/A) = c k``; ``c`` is fitted by least squares over every process of every k,
    which pins each ratio far better than one k's processes alone. Per-k medians are printed beside it.
    """
    params = HostParams(runs=100, min_secs=1.5, warmup=3, warmup_min_secs=0.1)
    ks, logs, medians = [], [], {}
    for k, path in models.items():
        mine = []
        for seed in range(processes):
            result = run_pair_worker(model_a, path, 1, params, seed, block=3)
            mine.append(process_log_ratio(PairMeasurement(tuple(result["a_us"]), tuple(result["b_us"]),
                                                          tuple(result["a_first"]))))
        ks += [k] * len(mine)
        logs += mine
        medians[k] = math.exp(float(np.median(mine)))
        print(f"reference chain {k}: median B/A = {medians[k]:.4f} "
              f"(process spread {np.std(mine, ddof=1):.4f})", flush=True)
    load = os.getloadavg()[0]
    x, y = np.asarray(ks, dtype=float), np.asarray(logs)
    slope = float(x @ y / (x @ x))
    residual = y - slope * x
    slope_se = float(np.sqrt(residual @ residual / (x.size - 1) / (x @ x)))
    truth = {k: math.exp(slope * k) for k in models}
    note = (f"log(B/A) = c k fitted over {x.size} processes: c = {slope * 100:.3f} % per operator "
            f"(standard error {slope_se * 100:.3f} %); per-k medians of the processes: "
            + ", ".join(f"k={k}: {medians[k]:.4f}" for k in models)
            + f"; 1-minute load average at its end {load:.1f} on {os.cpu_count()} cores")
    print(note, flush=True)
    return truth, note


class Load:
    """Our bursty background load: one process burning one core in bursts."""

    def __init__(self):
        self.process = None

    def start(self):
        self.process = subprocess.Popen([sys.executable, "-c", BURN])

    def stop(self):
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait()
            self.process = None


def new_trial(model_a, model_b, settings: GateSettings) -> dict:
    result = run_gate(model_a, model_b, settings)
    summary = noise_summary(result.processes)
    return {"verdict": result.verdict, "ratio": result.ratio, "ci_low": result.ci_low,
            "ci_high": result.ci_high, "seconds": round(result.seconds, 1),
            "processes": len(result.processes),
            "load1": summary["load1"],
            "other_cpu": summary["other_cpu"], "heavy_processes": summary["heavy_processes"],
            "why": result.why or ""}


def old_trial(model_a, model_b, threshold: float) -> tuple[dict, list[str]]:
    """The former `ab` engine (defaults), and `compare` of one process per side on each of its rounds."""
    settings = ABSettings(threshold=threshold)
    calls = []
    runner = host_runner(settings.params)

    def recording(model, threads):
        measured = runner(model, threads)
        calls.append(measured.samples_us)
        return measured

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    result = run_ab(model_a, model_b, settings, runner=recording)
    seconds = time.monotonic() - started
    compare_verdicts = []
    for number, item in enumerate(result.rounds):
        first, second = calls[2 * number], calls[2 * number + 1]
        a, b = (first, second) if item.order == "AB" else (second, first)
        compare_verdicts.append(stats.verdict(*stats.ratio_ci(a, b), threshold))
    row = {"verdict": result.verdict, "ratio": result.ratio, "ci_low": result.ci_low,
           "ci_high": result.ci_high,
           "seconds": round(seconds, 1), "processes": 2 * len(result.rounds), "load1": load_before,
           "other_cpu": None, "heavy_processes": None, "why": ""}
    return row, compare_verdicts


def is_hit(target: float, verdict: str) -> bool:
    return verdict in ("regression", "improvement") if target == 0 else verdict == "regression"


def write_markdown(path: Path, rows: list[dict], truth: dict, chosen: dict, note: str, args,
                   command: str) -> None:
    lines = [header("Latency gate: power curve under noise", command), "",
             f"Threshold ±{args.threshold:.0%}, 95 % (family-wide) intervals, time budget "
             f"{args.max_secs:.0f} s "
             f"per verdict, 1 thread, XNNPACK. A: MobileNetV3-Small 1.0, 96 px, fp32. True B/A from the "
             f"reference run ({args.reference_processes} interleaved processes per model): "
             + ", ".join(f"{t:.0%} -> chain {chosen[t]} = {truth[chosen[t]]:.4f}" for t in TARGETS)
             + f" ({note}).", "",
             "A hit is `regression` on a true slowdown, `regression` or `improvement` on A/A (a false "
             "alarm). Rates with exact (Clopper-Pearson) 95 % intervals. `compare (1 process/side)` is the "
             "former `compare` of one `bench` process per side, evaluated on each round of the former "
             "engine's trials.", ""]
    header_row = ["condition", "true slowdown", "engine", "trials", "hit rate", "noisy", "unchanged",
                  "median s", "max s", "mean load1", "mean other CPU"]
    lines += ["| " + " | ".join(header_row) + " |", "|" + "---|" * len(header_row)]
    for condition in ("quiet", "loaded"):
        for target in (0.0,) + TARGETS:
            for engine in ("interleaved", "rounds", "compare-1proc"):
                cell = [r for r in rows if r["condition"] == condition and float(r["target"]) == target
                        and r["engine"] == engine]
                if not cell:
                    continue
                hits = sum(is_hit(target, r["verdict"]) for r in cell)
                low, high = clopper_pearson(hits, len(cell))
                secs = [float(r["seconds"]) for r in cell if r["seconds"] not in ("", None)]
                loads = [float(r["load1"]) for r in cell if r["load1"] not in ("", None)]
                others = [float(r["other_cpu"]) for r in cell if r["other_cpu"] not in ("", None)]
                true = "A/A" if target == 0 else f"{float(cell[0]['true_ratio']) - 1:+.1%} ({target:.0%})"
                lines.append("| " + " | ".join(str(x) for x in [
                    condition, true, engine, len(cell), f"{hits}/{len(cell)} = {hits / len(cell):.0%} "
                    f"({low:.0%}–{high:.0%})", sum(r["verdict"] == "noisy" for r in cell),
                    sum(r["verdict"] == "unchanged" for r in cell),
                    f"{np.median(secs):.1f}" if secs else "–", f"{max(secs):.1f}" if secs else "–",
                    f"{np.mean(loads):.1f}" if loads else "–",
                    f"{np.mean(others):.0%}" if others else "–"]) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_rows(path: Path) -> list[dict]:
    """Rows of an earlier invocation's CSV (``--append``)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--first-trial", type=int, default=0, help="index of the first trial (with --append)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.0, *TARGETS],
                        help="true slowdowns to run (0 = A/A); default all")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows and the reference of an earlier invocation with the same --out")
    parser.add_argument("--old-trials", type=int, default=2)
    parser.add_argument("--max-secs", type=float, default=20.0)
    parser.add_argument("--threshold", type=float, default=0.02)
    parser.add_argument("--reference-processes", type=int, default=8)
    parser.add_argument("--models", type=Path, default=Path("/tmp/gate_models"))
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    if not set(args.targets) <= {0.0, *TARGETS}:
        parser.error(f"--targets must be among 0 {' '.join(map(str, TARGETS))}")
    command = "python benchmarks/gate_power.py " + " ".join(sys.argv[1:])
    models = export_chain_models(args.models, [0, *CHAINS])
    model_a = models.pop(0)
    copy = args.models / "copy" / model_a.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(model_a, copy)
    csv_path, md_path = args.out / "gate_power.csv", args.out / "gate_power.md"
    reference_path = args.out / "gate_power_reference.json"
    rows: list[dict] = read_rows(csv_path) if args.append else []
    if args.append and reference_path.is_file():  # the same true ratios as the rows already there
        saved = json.loads(reference_path.read_text())
        truth, note = {int(k): v for k, v in saved["truth"].items()}, saved["note"]
        commands = saved["commands"] + [command]
    else:
        truth, note = reference(model_a, models, args.reference_processes)
        commands = [command]
    reference_path.write_text(json.dumps({"truth": truth, "note": note, "commands": commands}, indent=1))
    chosen = {target: min(truth, key=lambda k: abs(truth[k] - 1 - target)) for target in TARGETS}
    with open(csv_path, "a" if args.append else "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        if not rows:
            writer.writeheader()
        load, rng = Load(), random.Random(args.first_trial)
        try:
            for trial in range(args.first_trial, args.first_trial + args.trials):
                for condition in ("quiet", "loaded"):
                    if condition == "loaded":
                        load.start()
                    targets = list(args.targets)
                    rng.shuffle(targets)
                    for target in targets:
                        model_b = copy if target == 0 else models[chosen[target]]
                        true_ratio = 1.0 if target == 0 else truth[chosen[target]]
                        base = {"condition": condition, "trial": trial, "target": target,
                                "true_ratio": true_ratio}
                        settings = GateSettings(threshold=args.threshold, max_secs=args.max_secs, seed=trial)
                        results = [{**base, "engine": "interleaved", **new_trial(model_a, model_b, settings)}]
                        if trial < args.old_trials:
                            old, compares = old_trial(model_a, model_b, args.threshold)
                            results.append({**base, "engine": "rounds", **old})
                            results += [{**base, "engine": "compare-1proc", "verdict": verdict, "ratio": None,
                                         "ci_low": None, "ci_high": None, "seconds": None, "processes": 2,
                                         "load1": None, "other_cpu": None, "heavy_processes": None, "why": ""}
                                        for verdict in compares]
                        for row in results:
                            writer.writerow(row)
                            rows.append(row)
                        handle.flush()
                        print(f"{condition} trial {trial} {target:.0%}: {results[0]['verdict']} "
                              f"x{results[0]['ratio']:.4f} {results[0]['seconds']} s", flush=True)
                    load.stop()
                write_markdown(md_path, rows, truth, chosen, note, args, "; ".join(commands))
        finally:
            load.stop()
            write_markdown(md_path, rows, truth, chosen, note, args, "; ".join(commands))


if __name__ == "__main__":
    main()
