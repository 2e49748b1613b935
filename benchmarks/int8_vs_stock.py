"""The default int8 export against the stock int8 export, every version, Google's tool, interleaved rounds.

For V1, V2, V3-Large and V3-Small at 224: `mnbench export --quant int8` with its defaults, and the stock
keras.applications-style path (TFLiteConverter's own full-integer conversion of the same Keras model, same
64 calibration photographs: benchmarks/int8_speed.py's ``stock_int8``). Each round times every (version,
threads, model) once with Google's `benchmark_litert_model` (benchmarks/int8_timing.py's ``google_ms``), ours
and stock back to back in an order that alternates between rounds; the load average is read before each
round. Per version and thread count: ours / stock as the ratio of the medians over rounds (the issue's
criterion) with a bootstrap 95 % interval (device_bench.stats.ratio_ci over the per-round medians), the
median of the per-round paired ratios with its distribution-free 95 % interval (median_ci_ranks; >= 6
rounds), and the ratio of the 5th percentiles (what other sessions' load disturbs least). Both models'
full-integer reports are written beside.

    python benchmarks/int8_vs_stock.py [--rounds 15] [--versions v1 ...] [--threads 1 2] [--name NAME]
        -> results/NAME.{csv,md} (default int8_vs_stock)
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from _context import context, header  # noqa: E402
from int8_speed import VERSIONS, stock_int8  # noqa: E402
from int8_timing import google_ms, write_csv  # noqa: E402

from device_bench.host import cpu_facts  # noqa: E402
from device_bench.stats import median_ci_ranks, ratio_ci  # noqa: E402
from device_bench.tflite_file import describe  # noqa: E402
from export.pipeline import ExportRequest, export_many  # noqa: E402
from export.quantization import Quant  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

LIMIT = 1.10     # the criterion: ours at most 1.10x the stock export's median


def exported(versions: list[str], work: Path) -> dict[str, dict[str, dict]]:
    """{version: {"ours": facts, "stock": facts}}: file, stem choice, full-integer report, partitions."""
    models = {}
    for record in export_many([ExportRequest(configure(v), Quant.INT8) for v in versions], work):
        stock = stock_int8(record, work)
        models[record["version"]] = {}
        for side, name, stem in (("ours", record["file"], record["int8_choices"]["stem"]),
                                 ("stock", stock["file"], "conv")):
            info = describe(work / name)
            models[record["version"]][side] = {
                "file": name, "stem": stem, "integer": info["integer"],
                "partitions": info["delegation"]["partitions"],
                "outside": info["delegation"]["ops_outside_delegate"]}
    return models


def timed(models: dict, work: Path, rounds: int, threads: list[int]) -> tuple[dict, list[float]]:
    """{(version, threads, side): [(Google median, 5th percentile ms) per round]} and the load average
    before each round and after the last."""
    times = {(v, t, side): [] for v in models for t in threads for side in ("ours", "stock")}
    load = []
    for number in range(rounds):
        load.append(round(os.getloadavg()[0], 2))
        order = ("ours", "stock") if number % 2 == 0 else ("stock", "ours")
        for version, pair in models.items():
            for count in threads:
                for side in order:
                    times[(version, count, side)].append(google_ms(work / pair[side]["file"], count)[:2])
        print(f"round {number + 1}/{rounds} done, load {load[-1]}", flush=True)
    load.append(round(os.getloadavg()[0], 2))
    return times, load


def paired_interval(ours: list[float], stock: list[float]) -> tuple[float, float | None, float | None]:
    """Median of the per-round ratios ours / stock and its distribution-free 95 % interval (None below 6
    rounds)."""
    ratios = sorted(a / b for a, b in zip(ours, stock))
    ranks = median_ci_ranks(len(ratios))
    if ranks is None:
        return statistics.median(ratios), None, None
    return statistics.median(ratios), ratios[ranks[0] - 1], ratios[ranks[1] - 1]


def rows_of(models: dict, times: dict, load: list, threads: list[int]) -> list[dict]:
    cpu, ctx = cpu_facts(), context()
    rows = []
    for version, pair in models.items():
        for count in threads:
            ours = [median for median, _ in times[(version, count, "ours")]]
            stock = [median for median, _ in times[(version, count, "stock")]]
            paired, low, high = paired_interval(ours, stock)
            ratio, ratio_low, ratio_high = ratio_ci(stock, ours) if len(ours) >= 6 else \
                (statistics.median(ours) / statistics.median(stock), None, None)
            p5 = statistics.median(p for _, p in times[(version, count, "ours")]) / \
                statistics.median(p for _, p in times[(version, count, "stock")])
            rows.append({
                "version": version, "threads": count, "ours_stem": pair["ours"]["stem"],
                "ours_ms": round(statistics.median(ours), 3), "stock_ms": round(statistics.median(stock), 3),
                "ratio_of_medians": round(ratio, 3),
                "ratio_low": None if ratio_low is None else round(ratio_low, 3),
                "ratio_high": None if ratio_high is None else round(ratio_high, 3),
                "p5_ratio": round(p5, 3), "paired_ratio": round(paired, 3),
                "paired_low": None if low is None else round(low, 3),
                "paired_high": None if high is None else round(high, 3),
                "within_limit": ratio <= LIMIT,
                "ours_full_integer": pair["ours"]["integer"]["full_integer"],
                "ours_float_tensors": pair["ours"]["integer"]["float_tensors"],
                "ours_io": "/".join(pair["ours"]["integer"]["input_types"] +
                                    pair["ours"]["integer"]["output_types"]),
                "stock_full_integer": pair["stock"]["integer"]["full_integer"],
                "ours_partitions": pair["ours"]["partitions"],
                "stock_partitions": pair["stock"]["partitions"],
                "stock_outside": ", ".join(f"{k} x{v}" for k, v in pair["stock"]["outside"].items()),
                "rounds": len(ours),
                "ours_rounds_ms": " ".join(f"{x:.3f}" for x in ours),
                "stock_rounds_ms": " ".join(f"{x:.3f}" for x in stock),
                "ours_rounds_p5_ms": " ".join(f"{p:.3f}" for _, p in times[(version, count, "ours")]),
                "stock_rounds_p5_ms": " ".join(f"{p:.3f}" for _, p in times[(version, count, "stock")]),
                "ours_file": pair["ours"]["file"], "stock_file": pair["stock"]["file"],
                "cpu": cpu["model"], "flags": " ".join(cpu["flags"]), "cores": os.cpu_count(),
                "load": " ".join(map(str, load)), "commit": ctx["git_commit"], "date": ctx["utc_time"],
                "litert": ctx["versions"].get("ai-edge-litert"),
                "tensorflow": ctx["versions"].get("tensorflow")})
    return rows


def markdown(rows: list[dict], command: str) -> str:
    first = rows[0]
    lines = [header("Default int8 export against the stock int8 export (Google's tool, interleaved)",
                    command), "",
             f"CPU: {first['cpu']} ({first['flags'] or 'no int8 flags'}), {first['cores']} cores, shared "
             f"with other sessions: load average before each round and after the last: {first['load']}. "
             f"224x224, batch 1, XNNPACK, `benchmark_litert_model` (100 runs after 10 warm-up per "
             f"measurement, a fresh process each), {first['rounds']} interleaved rounds (ours and stock back "
             "to back, order alternating). ours / stock = ratio of the medians over rounds (the issue's "
             f"criterion: at most {LIMIT:.2f}) with its bootstrap 95 % interval; paired = median of the "
             "per-round ratios with its distribution-free 95 % interval (an interval that includes 1.0 is no "
             "detected difference); p5 = ratio of the 5th percentiles (medians over rounds), the figure "
             "other sessions' load disturbs least.", "",
             "| version | threads | our stem | ours ms | stock ms | ours / stock (95 % interval) | "
             "paired (95 % interval) | p5 ours / stock | "
             f"<= {LIMIT:.2f} | ours full integer (I/O) | stock full integer | partitions ours / stock | "
             "stock outside XNNPACK |",
             "|---|---:|---|---:|---:|---|---|---:|---|---|---|---|---|"]
    for r in rows:
        interval = f"{r['paired_ratio']} ({r['paired_low']}-{r['paired_high']})" \
            if r["paired_low"] is not None else f"{r['paired_ratio']} (too few rounds)"
        ratio = f"{r['ratio_of_medians']} ({r['ratio_low']}-{r['ratio_high']})" \
            if r["ratio_low"] is not None else f"{r['ratio_of_medians']} (too few rounds)"
        integer = f"yes ({r['ours_io']})" if r["ours_full_integer"] else \
            f"no ({r['ours_float_tensors']} float tensors)"
        lines.append(f"| {r['version']} | {r['threads']} | {r['ours_stem']} | {r['ours_ms']} | "
                     f"{r['stock_ms']} | "
                     f"{ratio} | {interval} | {r['p5_ratio']} | {'yes' if r['within_limit'] else '**no**'} | "
                     f"{integer} | {'yes' if r['stock_full_integer'] else 'no'} | "
                     f"{r['ours_partitions']} / {r['stock_partitions']} | {r['stock_outside'] or 'none'} |")
    lines += ["", "Per-round Google medians and 5th percentiles (ms) are in the CSV (`ours_rounds_ms`, "
              "`stock_rounds_ms`, `..._p5_ms`)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--versions", nargs="*", default=list(VERSIONS))
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--name", default="int8_vs_stock", help="results/NAME.{csv,md}")
    parser.add_argument("--work", type=Path, help="export folder (default: a new temporary one); up-to-date "
                                                    "models there are reused")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="int8_vs_stock_"))
    work.mkdir(parents=True, exist_ok=True)
    models = exported(args.versions, work)
    times, load = timed(models, work, args.rounds, args.threads)
    rows = rows_of(models, times, load, args.threads)
    write_csv(rows, ROOT / "results" / f"{args.name}.csv")
    text = markdown(rows, "python benchmarks/int8_vs_stock.py " + " ".join(sys.argv[1:]))
    (ROOT / "results" / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
