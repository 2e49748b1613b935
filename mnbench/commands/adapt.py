"""``mnbench adapt``: NetAdapt to a latency budget measured on the target (docs/adapt.md)."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import VERSIONS
from .accuracy import DATA_HELP, carried_options
from .models import config_options


@click.command()
@click.option("--version", type=click.Choice(VERSIONS),
              help="MobileNet version (optional with --weights that carry one).")
@config_options
@click.option("--weights", type=click.Path(path_type=Path),
              help="Start from these weights (a finetune output, ours, or keras.applications'); without "
                   "them the starting model is first trained for --long-epochs.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help=DATA_HELP)
@click.option("--budget-ms", type=click.FloatRange(min=0, min_open=True),
              help="Latency budget in milliseconds.")
@click.option("--budget-ratio", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Latency budget as a fraction of the starting model's measured latency.")
@click.option("--target", default="host", show_default=True,
              help="Where latency is measured: host, or an Android phone's serial (benchmark_model over "
                   "ADB).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--quant", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True,
              help="Precision the latency is measured at (the precision you will deploy).")
@click.option("--step", type=float, default=0.01, show_default=True,
              help="Latency each iteration must save, as a fraction of the starting latency (V3 used 0.01).")
@click.option("--short-steps", type=click.IntRange(min=0), default=100, show_default=True,
              help="Fine-tuning steps per proposal.")
@click.option("--max-proposals", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fine-tune only the K proposals that remove the least filter norm (0: all, as NetAdapt).")
@click.option("--long-epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Fine-tuning epochs of the final model.")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=5e-4,
              show_default=True, help="Learning rate of the short fine-tunes.")
@click.option("--no-flip", is_flag=True, help="No horizontal flips in augmentation (digits, text).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lut-cache", type=click.Path(path_type=Path), default=Path("results/adapt/lut"),
              show_default=True,
              help="Folder of latency tables, one per target, version, precision and threads.")
@click.option("--benchmark-binary", type=click.Path(path_type=Path),
              help="benchmark_model for a phone --target (default: the prebuilt one for its ABI).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write the results to.")
@click.option("--force", is_flag=True, help="Write into --out even if it holds files.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def adapt(ctx, version, alpha, resolution, knobs, weights, data, budget_ms, budget_ratio, target, threads,
          quant, step, short_steps, max_proposals, long_epochs, batch_size, learning_rate, no_flip, seed,
          lut_cache, benchmark_binary, out, force, quiet) -> None:
    """Shrink a model's layer widths to a latency budget measured on the target (NetAdapt, as MobileNetV3).

    Writes to OUT: adapted.weights.h5 + adapted.weights.json (export and info take them like a finetune
    output), trace.csv (every proposal), report.md and adapt.png. Ctrl-C writes the model chosen so far.
    """
    from mnbench.accuracy import datasets
    from mnbench.adapt import report
    from mnbench.adapt.latency import LatencyTable, Target, timing_provenance
    from mnbench.adapt.loop import AdaptOptions, adapt as run
    from mobilenets_tf import configure

    if (budget_ms is None) == (budget_ratio is None):
        raise click.UsageError("give one of --budget-ms and --budget-ratio")
    if not 0 < step <= 0.5:
        raise click.BadParameter(f"must be in (0, 0.5], got {step:g}", param_hint="--step")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise click.UsageError(f"--out {out} exists and is not an empty folder; pass --force to write "
                               "into it")
    images = datasets.load(data)
    carried = carried_options(ctx, (version,) if version else (), alpha, resolution, knobs,
                              len(images.class_names), weights, None, classes_typed=False)
    config = configure(carried["versions"][0], carried["alpha"], carried["resolution"],
                       len(images.class_names), knobs=carried["knobs"], widths=carried["widths"])
    out.mkdir(parents=True, exist_ok=True)
    device = Target(target, quant, threads, out / ".work", benchmark_binary)
    table = LatencyTable(lut_cache, target, config.version, quant, threads, timing_provenance())
    options = AdaptOptions(step=step, short_steps=short_steps, max_proposals=max_proposals,
                           long_epochs=long_epochs, batch_size=batch_size, learning_rate=learning_rate,
                           flip=not no_flip, seed=seed)
    log = (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))
    result = run(config, images, out, device, table, weights=weights, budget_ms=budget_ms,
                 budget_ratio=budget_ratio, options=options, progress=not quiet, log=log)
    path = report.write(out, result)
    click.echo(f"{result['verdict']}; validation top-1 {result['final_top1']:.3f}; {path}")
