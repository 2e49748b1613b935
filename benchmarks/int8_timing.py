"""Time int8 and float32 .tflite variants on this CPU without TensorFlow; merge tables from several CPUs.

Used by benchmarks/int8_speed.py after it exported the models, and on its own on a machine that has only
LiteRT (the models and their manifest carried there, see benchmarks/device_int8.sh):

    python benchmarks/int8_timing.py time MANIFEST.json --out results/int8_speed_<name>.csv [--rounds 5]
    python benchmarks/int8_timing.py merge results/int8_speed.csv results/int8_speed_xeon.csv

Each round runs, for every variant and thread count, mnbench's host worker (what `mnbench bench` runs) and
Google's `benchmark_litert_model`, one after the other, each in a fresh process; the figure per tool is
the median over rounds of each run's median. The CPU (model name and the int8 flags XNNPACK's kernel choice
depends on) and the load average before and after are written beside the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from _context import context, header  # noqa: E402
from device_bench.host import HostParams, cpu_facts, run_worker  # noqa: E402
from host_vs_google import google_latency  # noqa: E402

PARAMS = HostParams(runs=100, min_secs=0.5, warmup=10, warmup_min_secs=0.2)
KEY = ("version", "quant", "hswish", "stem", "threads")
PROFILED_BLOCKS = ("stem", "block01", "block02")


def variant_label(variant: dict) -> str:
    if variant["quant"] == "fp32":
        return "fp32"
    return f"{variant['quant']} h-swish {variant['hswish']}, stem {variant['stem']}"


def ours_ms(model: Path, threads: int) -> tuple[float, float, float]:
    """Median, 5th percentile and minimum (ms) of one run of mnbench's host worker."""
    result = run_worker(model, threads, PARAMS)
    if not result["ok"]:
        raise SystemExit(f"{model.name}: {result['error']}")
    samples = sorted(result["samples_us"])
    return statistics.median(samples) / 1000, samples[len(samples) // 20] / 1000, samples[0] / 1000


def google_ms(model: Path, threads: int) -> tuple[float, float, float]:
    """Median, 5th percentile and minimum (ms) of one run of Google's benchmark_litert_model."""
    latency = google_latency(model, threads)
    return latency["median_ms"], latency["p5_ms"], latency["min_ms"]


def time_variants(variants: list[dict], folder: Path, rounds: int, threads: tuple[int, ...] = (1, 2),
                  google: bool = True) -> tuple[dict, list]:
    """{(file, threads, tool): [(median, p5, min ms) per round]} and the load average before each round and
    after the last. The minimum and the 5th percentile are the figures a loaded machine disturbs least."""
    tools = {"ours": ours_ms, **({"google": google_ms} if google else {})}
    times = {(v["file"], t, tool): [] for v in variants for t in counts(v, threads) for tool in tools}
    load = []
    for _ in range(rounds):
        load.append(round(os.getloadavg()[0], 2))
        for variant in variants:
            for count in counts(variant, threads):
                for tool, measure in tools.items():
                    times[(variant["file"], count, tool)].append(measure(folder / variant["file"], count))
    load.append(round(os.getloadavg()[0], 2))
    return times, load


def counts(variant: dict, threads: tuple[int, ...]) -> tuple[int, ...]:
    """The thread counts a variant is timed at: a ``--precision auto`` model only at the one it was decided
    for (``variant["threads"]``)."""
    return tuple(variant["threads"]) if variant.get("threads") else threads


def profile_stems(variants: list[dict], folder: Path, threads: int = 1) -> list[dict]:
    """`mnbench profile --by block` of every V3-Small variant: the stem and the first blocks, in ms."""
    from device_bench.profile import profile

    rows = []
    for variant in variants:
        if variant["version"] != "v3-small":
            continue
        report = profile(folder / variant["file"], by="block", threads=threads)
        by_slice = {row["slice"]: row["median_us"] / 1000 for row in report["slices"]}
        rows.append({**{k: variant[k] for k in ("version", "quant", "hswish", "stem")}, "threads": threads,
                     **{f"{block}_ms": round(by_slice.get(block, 0.0), 3) for block in PROFILED_BLOCKS},
                     "dequantize_ms": round(by_slice.get("other", 0.0), 3),
                     "whole_ms": round(report["whole_us"] / 1000, 3)})
    return rows


def rows_of(variants: list[dict], times: dict, load: list, threads: tuple[int, ...] = (1, 2)) -> list[dict]:
    cpu, ctx = cpu_facts(), context()
    tools = sorted({tool for _, _, tool in times})
    rows = []
    for variant in variants:
        fp32 = next(v for v in variants if v["version"] == variant["version"] and v["quant"] == "fp32")
        for count in counts(variant, threads):
            row = {**{k: variant[k] for k in ("version", "quant", "hswish", "stem")}, "threads": count}
            for tool in tools:
                for stat, column in ((0, ""), (1, "_p5"), (2, "_min")):
                    ms = statistics.median(x[stat] for x in times[(variant["file"], count, tool)])
                    base = statistics.median(x[stat] for x in times[(fp32["file"], count, tool)])
                    row[f"{tool}{column}_ms"] = round(ms, 3)
                    row[f"{tool}{column}_ratio"] = round(ms / base, 2)
            row.update({"partitions": variant.get("partitions"),
                        "ops_outside": variant.get("ops_outside") or "",
                        "cosine": variant.get("cosine"), "sqnr_db": variant.get("sqnr_db"),
                        "file": variant["file"], "cpu": cpu["model"], "flags": " ".join(cpu["flags"]),
                        "cores": os.cpu_count(), "load": " ".join(map(str, load)),
                        "commit": ctx["git_commit"],
                        "date": ctx["utc_time"], "litert": ctx["versions"].get("ai-edge-litert")})
            for tool in tools:
                rounds = times[(variant["file"], count, tool)]
                row[f"{tool}_rounds_ms"] = " ".join(f"{x[0]:.3f}" for x in rounds)
            rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def merge(paths: list[Path], out: Path) -> str:
    """One Markdown table: a row per (version, quant, lowering, threads), a column group per CPU.

    CSVs of the same CPU (e.g. V3-Small and V3-Large carried in two runs) share one column group.
    """
    groups: dict[str, dict] = {}
    for path in paths:
        rows = read_csv(path)
        if not rows:
            raise SystemExit(f"{path}: no rows")
        cpu = f"{rows[0]['cpu']} ({rows[0]['flags'] or 'no int8 flags'}; {rows[0]['cores']} cores)"
        group = groups.setdefault(cpu, {"files": [], "runs": [], "rows": {}})
        group["files"].append(path.name)
        group["runs"].append(f"LiteRT {rows[0].get('litert')}, commit {rows[0]['commit']}, "
                             f"{rows[0]['date']}, "
                             f"load average per round {rows[0]['load']}")
        group["rows"].update({tuple(str(row[k]) for k in KEY): {**row, "source": path.name} for row in rows})
    keys = list(dict.fromkeys(key for group in groups.values() for key in group["rows"]))
    shown = " ".join(str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p)
                     for p in paths)
    lines = ["# int8 vs float32 on several CPUs", "",
             f"Merged by `python benchmarks/int8_timing.py merge {shown}`.", "",
             "Each CPU's figures come from its own runs (medians over interleaved rounds, fresh processes); "
             "ratios are to the float32 model of the same version, same tool, same run. ms = Google's "
             "`benchmark_litert_model`; p5, min = its 5th percentile and minimum (least disturbed by load); "
             "ours = mnbench's "
             "host worker. Where a CPU has several files, a row measured in both comes from the later "
             "file (`from`); each ratio is to the float32 model of its own file's run.", ""]
    for number, (cpu, group) in enumerate(groups.items(), 1):
        lines.append(f"- CPU {number}: {cpu}: " + "; ".join(f"`{name}` ({run})"
                                                         for name, run in zip(group["files"], group["runs"])))
    if not any("amx_int8" in cpu for cpu in groups):
        lines.append("- No CPU with AMX (`amx_int8`, Intel Sapphire Rapids and later) measured yet: XNNPACK "
                     "picks other int8 kernels there (docs/int8.md); take the figures with "
                     "benchmarks/device_int8.sh.")
    index = [group["rows"] for group in groups.values()]
    tables = list(groups)
    lines += ["", "| version | quant | h-swish | stem | threads | " +
              " | ".join(f"CPU {n} ms (/fp32) | CPU {n} p5 /fp32 | CPU {n} min /fp32 | "
                         f"CPU {n} ours ms (/fp32) | CPU {n} from" for n in range(1, len(tables) + 1)) + " |",
              "|---|---|---|---|---:|" + "---:|---:|---:|---:|---|" * len(tables)]
    for key in keys:
        cells = []
        for table in index:
            row = table.get(key)
            if row is None:
                cells += ["not measured"] * 4 + ["-"]
                continue
            google = row.get("google_ms")
            cells += [f"{google} ({row['google_ratio']})" if google else "-",
                      row.get("google_p5_ratio") or "-", row.get("google_min_ratio") or "-",
                      f"{row['ours_ms']} ({row['ours_ratio']})", f"`{row['source']}`"]
        lines.append("| " + " | ".join(key) + " | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def time_manifest(manifest: Path, out: Path, rounds: int, google: bool, profile: bool) -> None:
    """Time every model a manifest lists (written by `int8_speed.py --pack`); write CSV and Markdown."""
    variants = json.loads(manifest.read_text())["variants"]
    times, load = time_variants(variants, manifest.parent, rounds, google=google)
    rows = rows_of(variants, times, load)
    write_csv(rows, out)
    if profile:
        write_csv(profile_stems(variants, manifest.parent), out.with_name(out.stem + "_profile.csv"))
    print(header(f"int8 vs float32 on {rows[0]['cpu']}", " ".join(sys.argv)))
    for row in rows:
        shown = (*KEY, "ours_ms", "ours_ratio", *(("google_ms", "google_ratio") if google else ()))
        print({k: row[k] for k in shown})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("time", help="time the models of a manifest on this CPU")
    timing.add_argument("manifest", type=Path)
    timing.add_argument("--out", type=Path, required=True)
    timing.add_argument("--rounds", type=int, default=5)
    timing.add_argument("--no-google", action="store_true", help="only mnbench's worker")
    timing.add_argument("--no-profile", action="store_true", help="skip the per-block profile of V3-Small")
    merging = commands.add_parser("merge", help="merge CSVs of several CPUs into one Markdown table")
    merging.add_argument("csvs", nargs="+", type=Path)
    merging.add_argument("--out", type=Path, default=ROOT / "results" / "int8_speed_cpus.md")
    args = parser.parse_args()
    if args.command == "time":
        time_manifest(args.manifest, args.out, args.rounds, not args.no_google, not args.no_profile)
    else:
        print(merge(args.csvs, args.out))


if __name__ == "__main__":
    main()
