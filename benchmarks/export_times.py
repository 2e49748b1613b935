"""Export time, size and fidelity for every version x (fp32, int8) at 224, against the stock conversion.

mnbench: `mnbench export` path (random weights with BatchNorm statistics from the calibration photos,
64 calibration images, verification on), all eight models in one process, then again (cached).
Stock: keras.applications models through tf.lite.TFLiteConverter.from_keras_model, int8 calibrated on 16
images, no verification (the issue's baseline). Writes results/export_times.{csv,md}.

Run: python benchmarks/export_times.py
"""

import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _context import header  # noqa: E402

VERSIONS = ("v1", "v2", "v3-large", "v3-small")
STOCK = r'''
import time, numpy as np
from mobilenets_tf import _quiet
import tensorflow as tf, keras
from device_bench.quiet import captured
apps = {"v1": keras.applications.MobileNet, "v2": keras.applications.MobileNetV2,
        "v3-large": keras.applications.MobileNetV3Large, "v3-small": keras.applications.MobileNetV3Small}
rng = np.random.default_rng(0)
data = [rng.uniform(0, 255, (1, 224, 224, 3)).astype("float32") for _ in range(16)]
for name, app in apps.items():
    model = app(input_shape=(224, 224, 3), weights=None)
    for quant in ("fp32", "int8"):
        start = time.perf_counter()
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if quant == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([d] for d in data)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        with captured():
            converter.convert()
        print(name, quant, round(time.perf_counter() - start, 2), flush=True)
'''


def main() -> None:
    out = ROOT / "results"
    models = ROOT / "results" / "models"
    command = [sys.executable, "-m", "mnbench.cli", "export", *sum((["--version", v] for v in VERSIONS), []),
               "--quant", "fp32", "--quant", "int8", "--out", str(models), "--json"]
    import json

    started = time.perf_counter()
    built = json.loads(subprocess.run(command + ["--force"], capture_output=True, text=True,
                                      check=True).stdout)
    total_built = time.perf_counter() - started
    started = time.perf_counter()
    cached = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    total_cached = time.perf_counter() - started
    started = time.perf_counter()
    stock = subprocess.run([sys.executable, "-c", STOCK], capture_output=True, text=True, check=True,
                           cwd=ROOT)
    total_stock = time.perf_counter() - started
    stock_times = {tuple(line.split()[:2]): float(line.split()[2]) for line in stock.stdout.splitlines()}

    rows = []
    for record in built:
        check = record["verification"]
        measure = check.get("logits", check["outputs"])
        rows.append({"model": record["file"], "size_mb": round(record["size_bytes"] / 1e6, 2),
                     "export_s": record["export_seconds"],
                     "stock_convert_s": stock_times.get((record["version"], record["quant"])),
                     "fp32_max_abs_diff":
                         check["outputs"]["max_abs_diff"] if record["quant"] == "fp32" else None,
                     "logits_top1_agreement": measure["top1_agreement"], "logits_cosine": measure["cosine"],
                     "logits_sqnr_db": measure["sqnr_db"], "partitions": record["delegation"]["partitions"],
                     "ops_outside_delegate": record["delegation"]["ops_outside_delegate"]})
    with open(out / "export_times.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [header("Export times at 224 (4 versions x fp32 + int8)", "python benchmarks/export_times.py"),
             "",
             f"Wall time of one `mnbench export` call for all 8 models (with TensorFlow start-up, "
             f"calibration on 64 photographs and verification): **{total_built:.1f} s**; the same call again "
             f"(cached): **{total_cached:.1f} s**; stock keras.applications + from_keras_model, no "
             f"verification, 16 calibration images, one process: **{total_stock:.1f} s**.", "",
             "| model | size MB | export s | stock convert s | fp32 max abs diff | top-1 agree | cosine | "
             "SQNR dB | XNNPACK partitions | ops outside "
             "|", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        diff = f"{r['fp32_max_abs_diff']:.1e}" if r["fp32_max_abs_diff"] is not None else ""
        lines.append(f"| {r['model']} | {r['size_mb']} | {r['export_s']} | {r['stock_convert_s']} | {diff} | "
                     f"{r['logits_top1_agreement']:.2f} | {r['logits_cosine']:.4f} | {r['logits_sqnr_db']} | "
                     f"{r['partitions']} | {r['ops_outside_delegate'] or ''} |")
    lines += ["", "Fidelity is measured on the logits (the softmax input) against the Keras model on the 64 "
              "calibration images; export s per model excludes TensorFlow start-up, and the first model of "
              "each version carries the shared build, BatchNorm statistics and Keras reference run.",
              f"Cached re-export: {sum(r['cached'] for r in cached)} of {len(cached)} models reused."]
    (out / "export_times.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
