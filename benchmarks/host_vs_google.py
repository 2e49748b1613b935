"""Our host median against Google's own LiteRT benchmark tool, same models, same threads, interleaved.

For each round and each model: `mnbench bench`'s worker (device_bench.host_worker, Interpreter + XNNPACK) and
`python -m ai_edge_litert.tools.benchmark_litert_model` (CompiledModel API), one after the other, each in
a fresh process. The reported figure per tool is the median over rounds of each run's median.
Writes results/host_vs_google.{csv,md}. Run: python benchmarks/host_vs_google.py [--rounds 3] [--threads 2]
"""

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _context import header  # noqa: E402
from device_bench.host import HostParams, run_worker  # noqa: E402

RUNS, WARMUP = 100, 10


def google_latency(model: Path, threads: int) -> dict:
    """The "latency" record of one benchmark_litert_model run (median_ms, p5_ms, min_ms, ...)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
                        f"--model={model}",
                        f"--num_threads={threads}", f"--num_runs={RUNS}", f"--warmup_runs={WARMUP}",
                        f"--result_json={result}"], capture_output=True, text=True, check=True)
        return json.loads(result.read_text())["latency"]


def google_median_us(model: Path, threads: int) -> float:
    return google_latency(model, threads)["median_ms"] * 1000


def ours_median_us(model: Path, threads: int) -> float:
    result = run_worker(model, threads, HostParams(runs=RUNS, min_secs=0, warmup=WARMUP, warmup_min_secs=0))
    if not result["ok"]:
        raise SystemExit(result["error"])
    return statistics.median(result["samples_us"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="*", type=Path)
    args = parser.parse_args()
    models = args.models or sorted((ROOT / "results" / "models").glob("*_a1.00_r224_*.tflite"))
    measured = {m: {"ours": [], "google": []} for m in models}
    for _ in range(args.rounds):
        for model in models:
            measured[model]["ours"].append(ours_median_us(model, args.threads))
            measured[model]["google"].append(google_median_us(model, args.threads))
    rows = []
    for model, values in measured.items():
        ours, google = statistics.median(values["ours"]), statistics.median(values["google"])
        rows.append({"model": model.name, "threads": args.threads, "ours_median_ms": round(ours / 1000, 3),
                     "google_median_ms": round(google / 1000, 3), "ratio": round(ours / google, 3),
                     "within_10pct": abs(ours / google - 1) <= 0.10,
                     "ours_rounds_ms": [round(v / 1000, 3) for v in values["ours"]],
                     "google_rounds_ms": [round(v / 1000, 3) for v in values["google"]]})
    out = ROOT / "results"
    with open(out / "host_vs_google.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    agree = sum(r["within_10pct"] for r in rows)
    lines = [header("mnbench bench vs Google's benchmark_litert_model (host CPU)",
                    f"python benchmarks/host_vs_google.py --rounds {args.rounds} --threads {args.threads}"),
             "",
             f"{RUNS} timed runs after {WARMUP} warm-up runs per measurement, {args.rounds} interleaved "
             f"rounds, {args.threads} threads. **{agree} of {len(rows)} models agree within 10 %.**", "",
             "| model | ours median ms | Google median ms | ours / Google | rounds (ours) | rounds (Google) "
             "|",
             "|---|---:|---:|---:|---|---|"]
    lines += [f"| {r['model']} | {r['ours_median_ms']} | {r['google_median_ms']} | {r['ratio']} | "
              f"{r['ours_rounds_ms']} | {r['google_rounds_ms']} |" for r in rows]
    lines += ["", "Google's tool reports medians rounded to 0.01 ms."]
    (out / "host_vs_google.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
