"""``mnbench evaluate`` and ``mnbench finetune``: accuracy beside latency."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import VERSIONS, echo_json, parse_knobs
from ..table import format_table
from .models import config_options

DATA_HELP = ("Folder with one sub-folder of JPEG/PNG images per class, or a labels file "
             "(image path,label per line).")


def _input_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected LOW,HIGH such as 0,255 or -1,1, got {text!r}",
                                 param_hint="--input-range") from None
    if not low < high:
        raise click.BadParameter(f"LOW must be below HIGH, got {text!r}", param_hint="--input-range")
    return low, high


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help=DATA_HELP)
@click.option("--limit", type=click.IntRange(min=1),
              help="Evaluate at most N images, spread over the classes.")
@click.option("--class-names", "class_names_file", type=click.Path(path_type=Path),
              help="The model's class names in output order: a finetune weights sidecar (.json) or one per "
                   "line.")
@click.option("--input-range", help="LOW,HIGH input range of a model mnbench did not export, e.g. -1,1.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Interpreter threads.")
@click.option("--skip-unreadable", is_flag=True,
              help="Leave out images that cannot be decoded (default: error).")
@click.option("--confusions", type=click.IntRange(min=0), default=5, show_default=True,
              help="Most frequent (true -> predicted) mistakes to list.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results/accuracy"),
              show_default=True, help="Accuracy results folder.")
@click.option("--no-store", is_flag=True, help="Do not write the accuracy results.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per model.")
def evaluate(models, data, limit, class_names_file, input_range, threads, skip_unreadable, confusions,
             results_dir, no_store, as_json) -> None:
    """Top-1/top-5, per-class accuracy and confusions of .tflite models on labeled images (LiteRT, this
    CPU)."""
    from tqdm import tqdm

    from mnbench.accuracy import datasets, results
    from mnbench.accuracy.evaluate import evaluate as run, read_class_names

    images = datasets.limit(datasets.load(data), limit)
    names = read_class_names(class_names_file) if class_names_file else None
    with tqdm(total=len(images), desc="evaluate", unit="img", disable=as_json or None, leave=False) as bar:
        rows = run(list(models), images, threads, _input_range(input_range), names, skip_unreadable,
                   confusions, on_image=lambda done, total: bar.update(done - bar.n))
    stored = None if no_store else results.write_run(
        rows, [images.relative(p) for p in images.paths], [images.class_names[i] for i in images.labels],
        results_dir)
    if as_json:
        echo_json([{k: v for k, v in row.items() if k != "predictions"} for row in rows])
        return
    _print_evaluation(rows, images, stored)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _print_evaluation(rows, images, stored) -> None:
    click.echo(format_table(
        ["model", "quant", "images", "top-1 %", "95% CI", "top-5 %", "class-mean top-1 %", "agree w/ first %",
         "lost/gained", "McNemar p"],
        [[r["model"], r["quant"], r["count"], _pct(r["top1"]),
          f"{_pct(r['top1_ci95'][0])}-{_pct(r['top1_ci95'][1])}",
          _pct(r["top5"]) + ("" if r["top5_k"] == 5 else f" (top-{r['top5_k']})"), _pct(r["mean_class_top1"]),
          _pct(r.get("vs_first", {}).get("agreement")),
          f"{r['vs_first']['lost']}/{r['vs_first']['gained']}" if "vs_first" in r else "-",
          f"{r['vs_first']['mcnemar_p']:.3g}" if "vs_first" in r else "-"] for r in rows],
        right=[False, False, True, True, True, True, True, True, True, True]))
    for row in rows:
        worst = sorted(row["per_class"], key=lambda c: (c["top1"], c["class"]))[:5]
        click.echo(f"\n{row['model']}: lowest classes "
                   + ", ".join(f"{c['class']} {_pct(c['top1'])} % of {c['count']}" for c in worst))
        if row["confusions"]:
            click.echo("  most confused: " + ", ".join(
                f"{c['true']} -> {c['predicted']} x{c['count']} ({_pct(c['fraction_of_true'])} %)"
                for c in row["confusions"]))
    click.echo(f"\ndata: {images.source}; class names: {rows[0]['class_names_source']}")
    if rows[0]["skipped"]:
        click.echo(f"skipped {rows[0]['skipped']} unreadable image(s)")
    if stored is not None:
        click.echo(f"stored in {stored}")


@click.command()
@click.option("--version", type=click.Choice(VERSIONS), required=True, help="MobileNet version.")
@config_options
@click.option("--data", required=True, type=click.Path(path_type=Path), help=DATA_HELP)
@click.option("--val-data", type=click.Path(path_type=Path),
              help="Separate validation images (default: a split).")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.2,
              show_default=True,
              help="Stratified share of --data held out for validation and early stopping.")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Start from these weights (ours, a finetune output, or keras.applications' ImageNet "
                   "file).")
@click.option("--freeze", is_flag=True, help="With --weights: train only the classifier.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Maximum epochs.")
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True,
              help="Stop after this many epochs without a better validation top-1.")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate (default 2e-3 from scratch, 5e-4 from --weights).")
@click.option("--no-flip", is_flag=True, help="No horizontal flips in augmentation (digits, text).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Weights file to write (*.weights.h5).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
@click.pass_context
def finetune(ctx, version, alpha, resolution, knobs, data, val_data, val_fraction, weights, freeze, epochs,
             patience, batch_size, learning_rate, no_flip, seed, out, force, as_json) -> None:
    """Train a MobileNet on labeled images on this CPU, from scratch or from --weights.

    The weights are written with a sidecar (OUT with .json) holding the configuration and class names, so
    `mnbench export --weights OUT` and `mnbench evaluate` need no repeated options. Export int8 with
    --calib-dir set to the training images: the default photographs are not what the model will see.
    """
    from mnbench.accuracy import datasets
    from mnbench.accuracy.finetune import FinetuneOptions, finetune as train

    images = datasets.load(data)
    validation = datasets.load(val_data) if val_data else None
    config = _finetune_config(ctx, version, alpha, resolution, knobs, weights, len(images.class_names))
    options = FinetuneOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                              val_fraction=val_fraction, patience=patience, flip=not no_flip, freeze=freeze,
                              seed=seed)
    with _TrainingProgress(disable=as_json) as progress:
        report = train(config, images, out, weights, validation, options, force, progress)
    if as_json:
        echo_json(report)
        return
    _print_training(report, config, data)


def _finetune_config(ctx, version, alpha, resolution, knobs, weights, classes):
    """The configuration to train: typed options, else those the --weights carry, else the defaults."""
    from mobilenets_tf import configure

    carried = carried_options(ctx, (version,), alpha, resolution, knobs, classes, weights, None,
                              classes_typed=False)
    return configure(version, carried["alpha"], carried["resolution"], classes, knobs=carried["knobs"])


def carried_options(ctx, versions, alpha, resolution, knobs, num_classes, weights, calib_dir,
                    classes_typed: bool | None = None) -> dict:
    """Options a command gets from weights written by ``mnbench finetune`` where the user typed none.

    For ``mnbench export --weights W`` (and ``finetune --weights W``): version, alpha, resolution, knobs and
    classes come from ``W``'s sidecar; typed ones must agree with it (a typed resolution replaces the trained
    one); ``calib_dir`` defaults to the images ``W`` was trained on. Without a sidecar the typed options
    (and their defaults) stand, and a version is required.

    Returns:
        dict with versions (tuple), alpha, resolution, knobs (dict), num_classes and calib_dir.

    Raises:
        click.UsageError: no --version and no weights that carry one.
        WeightsFileError: typed options that contradict the weights, or a stale sidecar.
    """
    from click.core import ParameterSource

    from mnbench.accuracy.weights_file import carried_config, read_sidecar

    def typed(name):
        return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE

    knob_values = parse_knobs(knobs)
    classes_typed = typed("num_classes") if classes_typed is None else classes_typed
    config = carried_config(weights, version=versions[0] if len(set(versions)) == 1 else None,
                            alpha=alpha if typed("alpha") else None,
                            resolution=resolution if typed("resolution") else None, knobs=knob_values,
                            num_classes=num_classes if classes_typed else None) if weights else None
    if config is None:
        if not versions:
            raise click.UsageError("Missing option '--version' (needed unless --weights come from mnbench "
                                   "finetune)")
        return {"versions": tuple(versions), "alpha": alpha, "resolution": resolution, "knobs": knob_values,
                "num_classes": num_classes, "calib_dir": calib_dir}
    if len(set(versions)) > 1:
        raise click.UsageError(f"--weights {weights} fit one version ({config.version}); pass one --version "
                               f"or none")
    return {"versions": (config.version,), "alpha": config.alpha, "resolution": config.resolution,
            "knobs": dict(config.knobs), "num_classes": config.num_classes,
            "calib_dir": calib_dir if calib_dir is not None else read_sidecar(weights).training_data}


class _TrainingProgress:
    """tqdm bars for loading images and training steps, fed by finetune's ``on_progress``."""

    def __init__(self, disable: bool):
        self.disable, self.bar, self.stage = disable or None, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def __call__(self, stage, done, total, info):
        from tqdm import tqdm

        if stage == "epoch":
            if self.bar is not None and "val_accuracy" in info:
                self.bar.set_postfix(epoch=done, val_top1=f"{info['val_accuracy']:.3f}")
            return
        if stage != self.stage:
            if self.bar is not None:
                self.bar.close()
            unit = {"load": "img", "train": "step", "batchnorm": "batch"}.get(stage, "it")
            self.bar, self.stage = tqdm(total=total, desc=stage, unit=unit, disable=self.disable,
                                        leave=False), stage
        self.bar.update(done - self.bar.n)
        if stage == "train" and done % 10 == 0:
            self.bar.set_postfix(epoch=info.get("epoch"), loss=f"{info.get('loss', float('nan')):.3f}",
                                 refresh=False)


def _print_training(report, config, data) -> None:
    bn = report["batchnorm"]
    click.echo(f"trained {config.version} alpha={config.alpha:g} resolution={config.resolution} "
               f"({len(report['class_names'])} classes) on {report['train_images']} images, validated on "
               f"{report['val_images']}: {report['epochs_run']} epoch(s), best {report['best_epoch']}, "
               f"{report['seconds']:.0f} s")
    if "val_top1" in bn:
        click.echo(f"validation top-1 {_pct(bn['val_top1'])} % in inference mode, as exported "
                   f"({_pct(bn['val_top1_batch_statistics'])} % with batch statistics); BatchNorm: "
                   f"{bn['method']}")
    click.echo(f"wrote {report['weights']} and {report['sidecar']}")
    knobs = "".join(f" --set {k}={str(v).lower()}" for k, v in config.non_default_knobs.items())
    click.echo(f"next: mnbench export --version {config.version} --alpha {config.alpha:g} --resolution "
               f"{config.resolution} --classes {config.num_classes}{knobs} --weights {report['weights']} "
               f"--quant fp32 --quant int8 --calib-dir {data}")
