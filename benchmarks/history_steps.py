"""Does `mnbench history` find latency steps and not noise, and how long do ingest and publish take at scale?

Detection. Synthetic series of 100 commits with 0-3 steps (sizes 3, 5, 10, 20 %, up or down, at least 8
commits apart and 4 from either end) whose noise is drawn from this machine's own repeated runs:
  * ``aa``: the 140 A/A rounds of ``results/ab_error_rates.csv`` (V3-Small fp32, 1 thread, two processes per
    round): each round's log ratio / sqrt 2 is one process's deviation of its median;
  * ``baseline``: the three runs of each of the 16 rows of ``results/baselines/host`` (1 and 2 threads), the
    deviation of each run's log median from its row's mean, scaled by sqrt(3/2); the 2-thread rows carry
    the heavy tail (a run up to 1.6x slower when a neighbour took a vCPU).
Each commit is 1 or 3 runs (its point is the median of its runs' medians, as ``history`` computes it). A true
step counts as found when a detected step lies within one commit of it; every other detected step is false.
The fit is ``mnbench.history.steps.find_steps`` (binary segmentation, the default) at several penalties
(``PENALTY`` is the default), and ruptures' exact PELT at the default penalty for comparison.

Scale. 10,000 runs (2 rows each, 1 and 2 threads, 4 models, 50 samples per row) written with the results
store, then timed: ``ingest`` into a fresh SQLite file, the same ingest again (all skipped), ``publish``; and
ingest into PostgreSQL (a throwaway server, as in the tests) when it can be started.

Writes results/history_steps.{csv,md}. Run: python benchmarks/history_steps.py [--trials 300] [--runs 10000]
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

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _context import header  # noqa: E402
from device_bench.store import ResultStore, row_key  # noqa: E402
from mnbench.history.db import open_db  # noqa: E402
from mnbench.history.ingest import ingest  # noqa: E402
from mnbench.history.site import publish  # noqa: E402
from mnbench.history.steps import PENALTY, find_steps  # noqa: E402
from mnbench.history.trends import analyse  # noqa: E402

SIZES = (0.03, 0.05, 0.10, 0.20)
CONFIGURATIONS = (("binseg", 1.5), ("binseg", PENALTY), ("binseg", 6.0), ("pelt", PENALTY))  # (fit, penalty)
COMMITS, MIN_GAP, EDGE = 100, 8, 4


def aa_noise() -> np.ndarray:
    table = pd.read_csv(ROOT / "results/ab_error_rates.csv")
    ratios = [float(r) for line in table[table["kind"] == "A/A"]["round_ratios"] for r in line.split()]
    return np.log(ratios) / math.sqrt(2)


def baseline_noise() -> np.ndarray:
    rows = ResultStore(ROOT / "results/baselines/host").load(ROOT / "results/baselines/host")
    deviations = []
    for _, group in rows.groupby(["model", "threads"]):
        logs = np.log(group["median_us"].to_numpy(dtype=float))
        deviations += list((logs - logs.mean()) * math.sqrt(len(logs) / (len(logs) - 1)))
    return np.array(deviations)


def synthetic(rng: np.random.Generator, pool: np.ndarray, runs: int) -> tuple[pd.DataFrame, list, list]:
    """A series' points and its true steps [(index, size)]."""
    count = int(rng.integers(0, 4))
    candidates = np.arange(EDGE, COMMITS - EDGE + 1)
    positions: list[int] = []
    while len(positions) < count:
        index = int(rng.choice(candidates))
        if all(abs(index - other) >= MIN_GAP for other in positions):
            positions.append(index)
    truth = sorted((index, float(rng.choice(SIZES)) * float(rng.choice([-1, 1]))) for index in positions)
    level = np.zeros(COMMITS)
    for index, size in truth:
        level[index:] += math.log1p(size)
    noise = np.median(rng.choice(pool, size=(COMMITS, runs)), axis=1)
    points = pd.DataFrame({"commit": [f"c{i:03d}" for i in range(COMMITS)],
                           "first_time": [f"t{i:03d}" for i in range(COMMITS)],
                           "median_us": 1000 * np.exp(level + noise)})
    return points, truth, positions


def detection(pools: dict, trials: int) -> list[dict]:
    rows = []
    configurations = [(pool, runs, fit)
                      for pool in pools.items() for runs in (1, 3) for fit in CONFIGURATIONS]
    for (pool_name, pool), runs, (algorithm, penalty) in configurations:
        rng = np.random.default_rng(0)  # the same series for every penalty
        found = {size: [0, 0] for size in SIZES}
        false_steps, fit_s = 0, 0.0
        for _ in range(trials):
            points, truth, _ = synthetic(rng, pool, runs)
            started = time.perf_counter()
            detected = [step.index for step in find_steps(points, penalty, algorithm=algorithm)]
            fit_s += time.perf_counter() - started
            for index, size in truth:
                hit = next((d for d in detected if abs(d - index) <= 1), None)
                found[abs(size)][1] += 1
                if hit is not None:
                    found[abs(size)][0] += 1
                    detected.remove(hit)
            false_steps += len(detected)
        rows.append({"noise": pool_name, "runs_per_commit": runs, "algorithm": algorithm, "penalty": penalty,
                     "ms_per_series": 1000 * fit_s / trials,
                     **{f"found_{round(size * 100)}pct": f"{a}/{b}" for size, (a, b) in found.items()},
                     "false_per_100_commits": 100 * false_steps / (trials * COMMITS)})
    return rows


def write_runs(root: Path, runs: int) -> float:
    rng = np.random.default_rng(1)
    store = ResultStore(root)
    models = [f"{version}_a1.00_r224_int8.tflite" for version in ("v1", "v2", "v3-large", "v3-small")]
    desc = '{"cores": 2, "cpu": "AMD EPYC", "machine": "x86_64"}'
    started = time.perf_counter()
    for number in range(runs):
        model, rows, samples = models[number % 4], [], {}
        for threads in (1, 2):
            values = list(1000.0 / threads * rng.lognormal(0, 0.02, 50))
            hour, minute = divmod(number % 400, 20)
            row = {"utc_time": f"2026-11-{1 + number // 400:02d}T{hour:02d}:{minute:02d}:00Z",
                   "git_commit": f"{number // 4:040x}", "target": "host", "target_kind": "host",
                   "target_desc": desc, "runtime": "ai-edge-litert 2.3.0", "model": model, "threads": threads,
                   "delegate": "xnnpack", "status": "ok", "count": 50, "median_us": float(np.median(values))}
            rows.append(row)
            samples[row_key(row)] = values
        store.write_run(f"run{number:05d}", rows, samples)
    return time.perf_counter() - started


def _detail(value) -> str:
    if isinstance(value, list):  # analyse's views
        return f"{len(value)} series, {sum(len(view.points) for view in value)} points, " \
               f"{sum(len(view.steps) for view in value)} steps"
    return ", ".join(f"{key} {number}" for key, number in vars(value).items())


def timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - started, value


def scale(runs: int, work: Path) -> list[dict]:
    root = work / "runs"
    out = [{"step": f"write {runs} runs with the results store", "seconds": write_runs(root, runs),
            "load_1min": os.getloadavg()[0]}]
    engine = open_db(work / "history.sqlite")
    for name, function, args in (("ingest into SQLite", ingest, (engine, [root])),
                                 ("ingest again into SQLite (all skipped)", ingest, (engine, [root])),
                                 ("analyse (points + steps of every series)", analyse, (engine,))):
        seconds, value = timed(function, *args)
        out.append({"step": name, "seconds": seconds, "load_1min": os.getloadavg()[0],
                    "detail": _detail(value)})
    views = analyse(engine)
    seconds, _ = timed(publish, views, work / "site", "scale test")
    out.append({"step": f"publish the site ({len(views)} series)", "seconds": seconds,
                "load_1min": os.getloadavg()[0]})
    try:
        from tests.history_support import PostgresServer
        import glob

        server = PostgresServer(Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent)
        server.start()
    except Exception as error:  # noqa: BLE001 - reported, not fatal
        out.append({"step": "PostgreSQL", "seconds": None, "detail": f"not measured: {error}"})
        return out
    try:
        engine = open_db(server.new_database())
        for name, args in (("ingest into PostgreSQL", (engine, [root])),
                           ("ingest again into PostgreSQL (all skipped)", (engine, [root]))):
            seconds, value = timed(ingest, *args)
            out.append({"step": name, "seconds": seconds, "load_1min": os.getloadavg()[0],
                        "detail": _detail(value)})
        seconds, _ = timed(analyse, engine)
        out.append({"step": "analyse on PostgreSQL", "seconds": seconds, "load_1min": os.getloadavg()[0]})
        engine.dispose()
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300, help="Synthetic series per configuration.")
    parser.add_argument("--runs", type=int, default=10_000, help="Runs for the scale test (0: skip it).")
    args = parser.parse_args()
    load_before = os.getloadavg()
    pools = {"aa": aa_noise(), "baseline": baseline_noise()}
    started = time.perf_counter()
    rows = detection(pools, args.trials)
    detect_s = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="history-scale-"))
    try:
        scale_rows = scale(args.runs, work) if args.runs else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write(rows, scale_rows, pools, args, load_before, detect_s)


def write(rows, scale_rows, pools, args, load_before, detect_s) -> None:
    out = ROOT / "results"
    with (out / "history_steps.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [header("Step detection and scale of mnbench history",
                    f"python benchmarks/history_steps.py --trials {args.trials} --runs {args.runs}"), ""]
    spread = ", ".join(f"{name}: {len(pool)} values, robust sd {_robust_sd(pool):.4f}, max |dev| "
                       f"{np.abs(pool).max():.3f}" for name, pool in pools.items())
    lines += [f"Load average (1, 5, 15 min) at the start: {', '.join(f'{v:.2f}' for v in load_before)}. "
              "The machine (2 vCPUs) was shared with other jobs; times are indicative only.", "",
              f"Noise pools (log deviation of one process's median): {spread}.", "",
              f"## Detection ({args.trials} series of {COMMITS} commits per row, 0-3 steps each; "
              f"{detect_s:.0f} s)",
              "", "| noise | runs/commit | fit | penalty | found 3 % | found 5 % | found 10 % | found 20 % | "
              "false steps / 100 commits | ms per series |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        default = " (default)" if (row["algorithm"], row["penalty"]) == ("binseg", PENALTY) else ""
        lines.append(f"| {row['noise']} | {row['runs_per_commit']} | {row['algorithm']} | {row['penalty']}"
                     f"{default} | "
                     + " | ".join(_rate(row[f"found_{round(size * 100)}pct"]) for size in SIZES)
                     + f" | {row['false_per_100_commits']:.2f} | {row['ms_per_series']:.1f} |")
    if scale_rows:
        lines += ["", f"## Scale ({args.runs} runs of 2 rows, 50 samples per row, 8 series)", "",
                  "| step | seconds | 1-min load | detail |", "|---|---|---|---|"]
        lines += [f"| {r['step']} | {_seconds(r['seconds'])} | {r.get('load_1min', float('nan')):.1f} | "
                  f"{r.get('detail', '')} |" for r in scale_rows]
    (out / "history_steps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _robust_sd(values: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rate(text: str) -> str:
    found, total = map(int, text.split("/"))
    return f"{found}/{total} = {found / total:.0%}" if total else "-"


if __name__ == "__main__":
    main()
