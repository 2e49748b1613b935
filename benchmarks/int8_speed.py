"""int8 against float32 on this CPU: version x quantization x h-swish lowering x threads.

For each version at 224: the fp32 export, the int8 export with each h-swish lowering (V3), and the "stock"
int8 model (TFLiteConverter's own full-integer path: fused HARD_SWISH, TF's calibration ranges), all from
the same Keras model and the same 64 calibration photographs. Latency: mnbench's host worker (LiteRT +
XNNPACK, fresh process), median of per-round medians over interleaved rounds. Fidelity: logits against Keras.
Writes results/int8_speed.{csv,md}. Run: python benchmarks/int8_speed.py [--rounds 3]
"""

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _context import header  # noqa: E402
from device_bench.host import HostParams, run_worker  # noqa: E402
from export.pipeline import ExportRequest, export_many  # noqa: E402
from export.quantization import Lowering, Quant  # noqa: E402
from device_bench.tflite_file import describe  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

VERSIONS = ("v1", "v2", "v3-large", "v3-small")
PARAMS = HostParams(runs=100, min_secs=0.5, warmup=10, warmup_min_secs=0.2)


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
    path = out / record["file"].replace("_int8", "_int8_stock")
    path.write_bytes(data)
    _, logits = run_tflite(data, calib.images)
    return {"path": path, "fidelity": compare(keras_reference(model, calib.images)[1], logits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--versions", nargs="*", default=list(VERSIONS))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="int8_speed_"))
    requests = []
    for version in args.versions:
        config = configure(version)
        requests.append(ExportRequest(config, Quant.FP32))
        lowerings = list(Lowering) if version.startswith("v3") else [Lowering.DECOMPOSED]
        requests += [ExportRequest(config, Quant.INT8, hswish=lowering) for lowering in lowerings]
    records = export_many(requests, work)
    variants = []
    for record in records:
        check = record["verification"]
        variants.append({"version": record["version"], "quant": record["quant"],
                         "lowering": record["hswish"] or ("-" if record["quant"] == "fp32" else "n/a"),
                         "path": work / record["file"], "fidelity": check.get("logits", check["outputs"])})
        if record["quant"] == "int8" and record["hswish"] in (None, "decomposed"):
            stock = stock_int8(record, work)
            variants.append({"version": record["version"], "quant": "int8", "lowering": "stock converter",
                             "path": stock["path"], "fidelity": stock["fidelity"]})
    times = {(id(v), t): [] for v in variants for t in (1, 2)}
    for _ in range(args.rounds):
        for variant in variants:
            for threads in (1, 2):
                result = run_worker(variant["path"], threads, PARAMS)
                times[(id(variant), threads)].append(statistics.median(result["samples_us"]) / 1000)
    rows = []
    for variant in variants:
        info = describe(variant["path"])
        fp32 = next(v for v in variants if v["version"] == variant["version"] and v["quant"] == "fp32")
        for threads in (1, 2):
            ms = statistics.median(times[(id(variant), threads)])
            base = statistics.median(times[(id(fp32), threads)])
            rows.append({"version": variant["version"], "quant": variant["quant"],
                         "lowering": variant["lowering"],
                         "threads": threads, "median_ms": round(ms, 3), "ratio_to_fp32": round(ms / base, 2),
                         "partitions": info["delegation"]["partitions"],
                         "ops_outside": info["delegation"]["ops_outside_delegate"],
                         "logits_cosine": round(variant["fidelity"]["cosine"], 4),
                         "logits_sqnr_db": variant["fidelity"]["sqnr_db"],
                         "rounds_ms": [round(x, 3) for x in times[(id(variant), threads)]]})
    out = ROOT / "results"
    with open(out / "int8_speed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [header("int8 vs float32 latency on this CPU",
                    f"python benchmarks/int8_speed.py --rounds {args.rounds}"),
             "",
             f"224x224, batch 1, XNNPACK, {args.rounds} interleaved rounds of >= 100 runs; fidelity = logits "
             f"against the Keras model on the 64 calibration photographs (random weights, BatchNorm "
             f"statistics from the photographs).", "",
             "| version | quant | h-swish lowering | threads | median ms | / fp32 | partitions | outside "
             "XNNPACK | cosine | SQNR dB |", "|---|---|---|---:|---:|---:|---:|---|---:|---:|"]
    lines += [f"| {r['version']} | {r['quant']} | {r['lowering']} | {r['threads']} | {r['median_ms']} | "
              f"{r['ratio_to_fp32']} | {r['partitions']} | {r['ops_outside'] or ''} | {r['logits_cosine']} | "
              f"{r['logits_sqnr_db']} |" for r in rows]
    (out / "int8_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
