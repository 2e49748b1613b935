"""int8 against float32 on this CPU: version x h-swish lowering x stem lowering x threads, two timing tools.

For each version at 224: the fp32 export, the int8 export with each stem lowering (float, conv, s2d), for
V3 also the other h-swish lowerings (default stem), and the "stock" int8 model (TFLiteConverter's own
full-integer path: fused HARD_SWISH, TF's calibration ranges), all from the same Keras model and the same 64
calibration photographs. Fidelity: logits against Keras. Latency: benchmarks/int8_timing.py (mnbench's worker
and Google's benchmark_litert_model, interleaved rounds), with the CPU and the load recorded.

    python benchmarks/int8_speed.py [--rounds 3] [--versions v3-small ...]   -> results/int8_speed.{csv,md}
    python benchmarks/int8_speed.py --auto --stems-only    + `--precision auto` (1 and 2 threads) against
                                                             the fixed lowerings, other h-swish left out
    python benchmarks/int8_speed.py --pack DIR [--max-mib 22]     models + manifest for another CPU
    python benchmarks/int8_speed.py --merge results/int8_speed.csv OTHER.csv  -> results/int8_speed_cpus.md
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _context import header  # noqa: E402
from int8_timing import KEY, merge, profile_stems, rows_of, time_variants, write_csv  # noqa: E402

from device_bench.tflite_file import describe  # noqa: E402
from export.pipeline import ExportRequest, export_many  # noqa: E402
from export.quantization import Lowering, Quant  # noqa: E402
from export.stem import Stem, default_stem  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

VERSIONS = ("v1", "v2", "v3-large", "v3-small")
# What --pack carries, in this order, while the size budget lasts: per version the fp32 model, the default
# int8 model, the other stem lowerings and the stock int8 model (the other h-swish lowerings are not carried).
# The default budget (22 MiB) takes V3-Small; run --pack again with --versions v3-large for a second carry.
PACK_KINDS = ("fp32", "default", "conv", "s2d", "float", "stock")
PACK_ORDER = ("v3-small", "v3-large", "v2", "v1")


def stock_int8(record: dict, out: Path) -> dict:
    """TFLiteConverter's standard full-integer conversion of the same Keras model, same calibration images."""
    from export import calibration
    from export.verify import compare, keras_reference, run_tflite
    from export.weights import build_model
    from device_bench.quiet import captured

    import tensorflow as tf

    config = configure(**record["config"])
    calib = calibration.load(None, record["calibration"]["samples"], config.resolution,
                             config.spec.input_range)
    model, _ = build_model(config, None, calib.images)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in calib.images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with captured():
        data = converter.convert()
    path = out / f"{record['version']}_a1.00_r224_int8_stock.tflite"
    path.write_bytes(data)
    _, logits = run_tflite(data, calib.images)
    return {"file": path.name, "fidelity": compare(keras_reference(model, calib.images)[1], logits)}


def requests_for(version: str, auto: bool = False, stems_only: bool = False) -> list[ExportRequest]:
    config = configure(version)
    requests = [ExportRequest(config, Quant.FP32)]
    requests += [ExportRequest(config, Quant.INT8, stem=stem) for stem in Stem]
    if auto:
        requests += [ExportRequest(config, Quant.INT8, precision="auto", threads=count) for count in (1, 2)]
    if version.startswith("v3") and not stems_only:
        requests += [ExportRequest(config, Quant.INT8, hswish=lowering) for lowering in Lowering
                     if lowering is not Lowering.DECOMPOSED]
    return requests


def exported_variants(versions: list[str], work: Path, auto: bool = False, stems_only: bool = False) \
        -> list[dict]:
    """Export every variant into ``work``; one manifest entry per model (fidelity and delegation included).

    A ``--precision auto`` model is timed only at the thread count it was decided for; its ``stem`` column
    says so and names what it chose (a stem lowering, ``int8``: the default, or ``mixed``).
    """
    requests = [request for version in versions for request in requests_for(version, auto, stems_only)]
    variants = []
    for record in export_many(requests, work):
        check = record["verification"]
        fidelity = check.get("logits", check["outputs"])
        choices = record["int8_choices"] or {}
        stem = choices["stem"] if record["quant"] == "int8" else "-"
        if choices.get("by") == "precision auto":
            threads = choices["threads"]
            variants.append({"version": record["version"], "quant": "int8",
                             "hswish": record["hswish"] or "n/a", "threads": [threads],
                             "stem": f"auto ({threads} thr): {choices['chosen']}, stem {stem}",
                             "file": record["file"], "default": False, "auto": True,
                             "cosine": round(fidelity["cosine"], 4), "sqnr_db": fidelity["sqnr_db"]})
            continue
        variants.append({"version": record["version"], "quant": record["quant"],
                         "hswish": record["hswish"] or ("-" if record["quant"] == "fp32" else "n/a"),
                         "stem": stem, "file": record["file"], "default": record["quant"] == "int8"
                         and stem == default_stem(configure(record["version"])).value
                         and record["hswish"] in (None, "decomposed"),
                         "cosine": round(fidelity["cosine"], 4), "sqnr_db": fidelity["sqnr_db"]})
        if variants[-1]["default"]:
            stock = stock_int8(record, work)
            variants.append({"version": record["version"], "quant": "int8", "hswish": "stock converter",
                             "stem": "conv", "file": stock["file"], "default": False,
                             "cosine": round(stock["fidelity"]["cosine"], 4),
                             "sqnr_db": stock["fidelity"]["sqnr_db"]})
    for variant in variants:
        delegation = describe(work / variant["file"])["delegation"]
        variant.update(partitions=delegation["partitions"], ops_outside=delegation["ops_outside_delegate"])
    return variants


def kind_of(variant: dict) -> str:
    """fp32, stock, default, or the stem lowering of a non-default h-swish-decomposed int8 model."""
    if variant["quant"] == "fp32":
        return "fp32"
    if variant.get("auto"):
        return "auto"
    if variant["hswish"] == "stock converter":
        return "stock"
    if variant["default"]:
        return "default"
    return variant["stem"] if variant["hswish"] in ("decomposed", "n/a") else "other h-swish"


def pack(variants: list[dict], work: Path, folder: Path, max_mib: float) -> None:
    """Copy models into ``folder`` in PACK_ORDER while they fit ``max_mib``; write manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen, size = [], 0
    for version in PACK_ORDER:
        for kind in PACK_KINDS:
            for variant in variants:
                if variant["version"] != version or variant in chosen or kind_of(variant) != kind:
                    continue
                bytes_ = (work / variant["file"]).stat().st_size
                if size + bytes_ > max_mib * 2**20:
                    continue
                has_fp32 = any(v["version"] == version and v["quant"] == "fp32" for v in chosen)
                if kind != "fp32" and not has_fp32:
                    continue        # a ratio needs the fp32 model of the same version
                chosen.append(variant)
                size += bytes_
                shutil.copy(work / variant["file"], folder / variant["file"])
    (folder / "manifest.json").write_text(json.dumps({"variants": chosen}, indent=1) + "\n")
    print(f"packed {len(chosen)} of {len(variants)} models, {size / 2**20:.1f} MiB, into {folder}")
    left = [v["file"] for v in variants if v not in chosen]
    if left:
        print("left out (size budget or kind not carried): " + ", ".join(left))


def auto_against_fixed(rows: list[dict], tool: str) -> list[str]:
    """Markdown: each ``--precision auto`` model against the fastest fixed int8 lowering (same version,
    threads, tool and run)."""
    autos = [row for row in rows if str(row["stem"]).startswith("auto")]
    if not autos:
        return []
    lines = ["", f"`--precision auto --target host` against the fastest fixed int8 lowering ({tool} medians, "
             "same run; the stock model is not a choice):", "",
             "| version | threads | auto chose | auto ms | fastest fixed | fixed ms | auto / fixed |",
             "|---|---:|---|---:|---|---:|---:|"]
    for row in autos:
        fixed = [other for other in rows if other["version"] == row["version"] and other["quant"] == "int8"
                 and other["threads"] == row["threads"] and other["hswish"] != "stock converter"
                 and not str(other["stem"]).startswith("auto")]
        best = min(fixed, key=lambda other: other[f"{tool}_ms"])
        lines.append(f"| {row['version']} | {row['threads']} | {row['stem'].split(': ', 1)[1]} | "
                     f"{row[f'{tool}_ms']} | h-swish {best['hswish']}, stem {best['stem']} | "
                     f"{best[f'{tool}_ms']} | {row[f'{tool}_ms'] / best[f'{tool}_ms']:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--versions", nargs="*", default=list(VERSIONS))
    parser.add_argument("--no-google", action="store_true", help="time with mnbench's worker only")
    parser.add_argument("--pack", type=Path, help="export, then copy models and a manifest here (no timing)")
    parser.add_argument("--max-mib", type=float, default=22.0, help="size budget of --pack")
    parser.add_argument("--merge", nargs="+", type=Path, help="CSV files of several CPUs to merge")
    parser.add_argument("--auto", action="store_true",
                        help="also export with --precision auto (decided at 1 and at 2 threads) and time it")
    parser.add_argument("--stems-only", action="store_true", help="leave out the other h-swish lowerings")
    parser.add_argument("--name", default="int8_speed", help="results/NAME.{csv,md} (default int8_speed)")
    parser.add_argument("--work", type=Path, help="export folder (default: a new temporary one); up-to-date "
                                                    "models there are reused")
    args = parser.parse_args()
    if args.merge:
        print(merge(args.merge, ROOT / "results" / "int8_speed_cpus.md"))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="int8_speed_"))
    variants = exported_variants(args.versions, work, args.auto, args.stems_only)
    if args.pack:
        pack(variants, work, args.pack, args.max_mib)
        return
    times, load = time_variants(variants, work, args.rounds, google=not args.no_google)
    rows = rows_of(variants, times, load)
    out = ROOT / "results"
    write_csv(rows, out / f"{args.name}.csv")
    stems = profile_stems([v for v in variants if not v.get("auto")], work)
    if stems:
        write_csv(stems, out / f"{args.name}_profile.csv")
    tools = ["google", "ours"] if not args.no_google else ["ours"]
    command = "python benchmarks/int8_speed.py " + " ".join(sys.argv[1:])
    lines = [header("int8 vs float32 latency on this CPU", command), "",
             f"CPU flags: {rows[0]['flags']}; load average before each round and after: {rows[0]['load']} "
             "(the machine is shared: compare ratios within this run). 224x224, batch 1, XNNPACK; "
             f"{args.rounds} interleaved rounds of >= 100 runs per tool (Google = `benchmark_litert_model`, "
             "ours = mnbench's host worker); / fp32 = ratio of medians to the float32 model, same tool, "
             "same run; "
             "p5, min / fp32 = the same for the 5th percentile and the minimum, the figures other "
             "sessions' load disturbs least. "
             "Fidelity: logits against Keras on the 64 calibration photographs (random weights, BatchNorm "
             "statistics from the photographs).", "",
             "| version | quant | h-swish | stem | threads | " +
             " | ".join(f"{t} ms | {t} / fp32 | {t} p5 / fp32 | {t} min / fp32" for t in tools) +
             " | partitions | outside XNNPACK | cosine | SQNR dB |",
             "|---|---|---|---|---:|" + "---:|---:|---:|---:|" * len(tools) + "---:|---|---:|---:|"]
    lines += ["| " + " | ".join(str(r[k]) for k in KEY) + " | " +
              " | ".join(f"{r[t + '_ms']} | {r[t + '_ratio']} | {r[t + '_p5_ratio']} | {r[t + '_min_ratio']}"
                         for t in tools) +
              f" | {r['partitions']} | {r['ops_outside']} | {r['cosine']} | {r['sqnr_db']} |" for r in rows]
    if stems:
        lines += ["", "`mnbench profile --by block --threads 1` of V3-Small (ms; `other` = the DEQUANTIZE "
                  "of the "
                  "input before a float stem):", "",
                  "| quant | h-swish | stem | stem ms | other ms | block01 ms | block02 ms | whole ms |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['quant']} | {s['hswish']} | {s['stem']} | {s['stem_ms']} | {s['dequantize_ms']} | "
                  f"{s['block01_ms']} | {s['block02_ms']} | {s['whole_ms']} |" for s in stems]
    lines += auto_against_fixed(rows, tools[0])
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
