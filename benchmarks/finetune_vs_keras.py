"""Does ``mnbench finetune`` match a plain Keras fit on a small data set? (issue 12, defect 3)

Data: three textures that ship inside scikit-image (``brick``, ``grass``, ``gravel``, 512x512 grey
photographs), cut into random 128 px crops: 60 training crops per class from the top half of each photograph
and 40 test crops per class from the bottom half (no pixel of a test crop was seen in training);
resolution 96.
Both sides train V3-Small alpha 0.75 from scratch for the same epochs on the same 180 training crops, seed by
seed, and are scored on the same 120 test crops in inference mode:
  * plain: keras.applications.MobileNetV3Small(alpha=0.75), BatchNorm momentum 0.9, Adam 1e-3, all 180
    images, no validation split, no augmentation, ``model.fit`` for the full epochs (the recipe of the issue);
  * mnbench: ``mnbench finetune``'s library with its defaults (20 % held out for validation and early
    stopping, augmentation, AdamW + cosine, BatchNorm statistics re-estimated), the weights it keeps.
Writes results/finetune_vs_keras.{csv,md}. Run: python benchmarks/finetune_vs_keras.py [--seeds 3 --epochs 15]
"""

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from _context import header  # noqa: E402
from mnbench.accuracy import datasets, pixels  # noqa: E402
from mnbench.accuracy.finetune import FinetuneOptions, finetune  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

TEXTURES = ("brick", "grass", "gravel")
TRAIN_PER_CLASS, TEST_PER_CLASS, CROP = 60, 40, 128
FIELDS = ("seed", "recipe", "epochs_run", "test_top1", "train_s")


def write_textures(folder: Path) -> tuple[Path, Path]:
    """folder/train/<texture>/ (top halves) and folder/test/<texture>/ (bottom halves) of RGB PNG crops."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in TEXTURES:
        photo = getattr(skimage.data, name)()
        half = photo.shape[0] // 2
        for split, count, rows in (("train", TRAIN_PER_CLASS, (0, half)),
                                   ("test", TEST_PER_CLASS, (half, 512))):
            target = folder / split / name
            target.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                top = rng.integers(rows[0], rows[1] - CROP + 1)
                left = rng.integers(0, photo.shape[1] - CROP + 1)
                crop = photo[top:top + CROP, left:left + CROP]
                image = Image.fromarray(np.stack([crop] * 3, axis=-1).astype(np.uint8))
                image.save(target / f"{index:03d}.png")
    return folder / "train", folder / "test"


def test_inputs(test: Path, config) -> tuple[np.ndarray, np.ndarray]:
    data = datasets.load(test)
    return pixels.eval_inputs(pixels.load_pixels(data, config.resolution), config), np.asarray(data.labels)


def plain_keras(seed: int, epochs: int, train: Path, config, test_x, test_y) -> dict:
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    data = datasets.load(train)
    x = pixels.eval_inputs(pixels.load_pixels(data, config.resolution), config)
    shape = (config.resolution, config.resolution, 3)
    model = keras.applications.MobileNetV3Small(input_shape=shape, alpha=0.75, weights=None,
                                                 classes=len(TEXTURES))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    started = time.perf_counter()
    model.fit(x, np.asarray(data.labels), batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    top1 = float(np.mean(np.argmax(model.predict(test_x, verbose=0), axis=1) == test_y))
    return {"seed": seed, "recipe": "plain keras.applications", "epochs_run": epochs,
            "test_top1": round(top1, 4), "train_s": round(seconds, 1)}


def mnbench_finetune(seed: int, epochs: int, train: Path, config, test_x, test_y, work: Path) -> dict:
    import keras

    from export.weights import build_model

    keras.backend.clear_session()
    weights = work / f"s{seed}.weights.h5"
    report = finetune(config, datasets.load(train), weights, force=True,
                      options=FinetuneOptions(epochs=epochs, seed=seed))
    model, _ = build_model(config, weights, images=None)
    top1 = float(np.mean(np.argmax(model.predict(test_x, verbose=0), axis=1) == test_y))
    return {"seed": seed, "recipe": "mnbench finetune", "epochs_run": report["epochs_run"],
            "test_top1": round(top1, 4), "train_s": report["seconds"]}


def markdown(rows: list[dict], args, seconds: float, load: tuple) -> str:
    command = f"python benchmarks/finetune_vs_keras.py --seeds {args.seeds} --epochs {args.epochs}"
    lines = [header("finetune against a plain Keras fit on 180 texture crops", command), "",
             __doc__.split("\n\n", 1)[1].split("Writes")[0].strip(), "",
             f"Load average before/after: {load[0]:.2f} / {os.getloadavg()[0]:.2f} (2 cores shared with "
             "other jobs: the seconds are only indicative).", "",
             "## Summary (test top-1 over seeds: mean, min-max)", "",
             "| recipe | seeds | mean top-1 % | range % | epochs run |", "|---|---|---|---|---|"]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        group = [r for r in rows if r["recipe"] == recipe]
        top = [100 * r["test_top1"] for r in group]
        lines.append(f"| {recipe} | {len(group)} | {statistics.mean(top):.1f} | "
                     f"{min(top):.1f}-{max(top):.1f} | {', '.join(str(r['epochs_run']) for r in group)} |")
    lines += ["", "## Every run", "", "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(row[field]) for field in FIELDS) + " |" for row in rows]
    lines += ["", f"Total time {seconds / 60:.1f} min; each test crop is "
              f"{100 / (3 * TEST_PER_CLASS):.2f} points.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()
    config = configure("v3-small", 0.75, 96, len(TEXTURES))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mnbench-ftk-") as tmp:
        train, test = write_textures(Path(tmp) / "data")
        test_x, test_y = test_inputs(test, config)
        for seed in range(args.seeds):          # interleaved, so both recipes meet the same machine load
            rows.append(plain_keras(seed, args.epochs, train, config, test_x, test_y))
            rows.append(mnbench_finetune(seed, args.epochs, train, config, test_x, test_y, Path(tmp)))
            print(rows[-2], rows[-1], flush=True)
    with open(args.out / "finetune_vs_keras.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "finetune_vs_keras.md").write_text(markdown(rows, args, time.perf_counter() - started, load))


if __name__ == "__main__":
    main()
