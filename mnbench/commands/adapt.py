"""``mnbench adapt``: NetAdapt to a latency budget measured on the target (docs/adapt.md)."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import VERSIONS
from .accuracy import DATA_HELP, carried_options
from .models import config_options


CLASSIC = {"step": 0.01, "short_steps": 100, "max_proposals": 0, "floor": 0.0, "confirm_secs": 0.0}
RESUME_WITH = ("resume", "data", "ray", "ray_workers", "benchmark_binary", "quiet")


@click.command()
@click.option("--version", type=click.Choice(VERSIONS),
              help="MobileNet version (optional with --weights that carry one).")
@config_options
@click.option("--weights", type=click.Path(path_type=Path),
              help="Start from these weights (a finetune output, ours, or keras.applications'); without "
                   "them the starting model is first trained for --long-epochs.")
@click.option("--data", type=click.Path(path_type=Path), help=DATA_HELP)
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
@click.option("--iterations", type=click.IntRange(min=1), default=2, show_default=True,
              help="Iterations to reach the budget: each saves (start - budget) / N (without --step).")
@click.option("--step", type=float,
              help="Latency each iteration must save, as a fraction of the starting latency (V3 used 0.01); "
                   "replaces --iterations.")
@click.option("--short-steps", type=click.IntRange(min=0), default=10, show_default=True,
              help="Fine-tuning steps per proposal.")
@click.option("--max-proposals", type=click.IntRange(min=0), default=3, show_default=True,
              help="Fine-tune only the K proposals that remove the least filter norm per millisecond saved "
                   "(0: all, as NetAdapt).")
@click.option("--floor", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True,
              help="No width shrinks below this fraction of its starting width (nor below 8 channels; 0: "
                   "down to 8).")
@click.option("--confirm-secs", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Confirm the budget at the end: adapted against start in interleaved processes with the "
                   "latency gate's sequential rule, for at most this long (0: a single timing).")
@click.option("--confirm-steps", type=click.IntRange(min=0), default=2, show_default=True,
              help="Extra steps at most while the confirmation's interval reaches over the budget.")
@click.option("--classic", is_flag=True,
              help="The defaults before issue 24 (--step 0.01 --short-steps 100 --max-proposals 0 --floor 0 "
                   "--confirm-secs 0); options typed with it win.")
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
@click.option("--ray", "ray_address", metavar="auto|ADDRESS",
              help="Fine-tune each iteration's proposals in parallel on Ray: 'auto' starts a local Ray of "
                   "--ray-workers CPUs, an address joins a running cluster (pip install 'mnbench[ray]').")
@click.option("--ray-workers", type=click.IntRange(min=1),
              help="CPUs of the local Ray of --ray auto (default: every core).")
@click.option("--out", type=click.Path(path_type=Path), help="Folder to write the results to.")
@click.option("--force", is_flag=True, help="Write into --out even if it holds files.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="OUT",
              help="Continue the interrupted run in OUT from its trace and saved model, with its options.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def adapt(ctx, version, alpha, resolution, knobs, weights, data, budget_ms, budget_ratio, target, threads,
          quant, iterations, step, short_steps, max_proposals, floor, confirm_secs, confirm_steps, classic,
          long_epochs, batch_size, learning_rate, no_flip, seed, lut_cache, benchmark_binary, ray_address,
          ray_workers, out, force, resume, quiet) -> None:
    """Shrink a model's layer widths to a latency budget measured on the target (NetAdapt, as MobileNetV3).

    Writes to OUT: adapted.weights.h5 + adapted.weights.json (export and info take them like a finetune
    output), trace.csv (every proposal, and where the time went), report.md and adapt.png. The model and the
    run's state are saved after every iteration: Ctrl-C keeps the model chosen so far, --resume OUT goes on.
    """
    from mnbench.accuracy import datasets
    from mnbench.adapt import report
    from mnbench.adapt.latency import LatencyTable, Target, timing_provenance
    from mnbench.adapt.loop import AdaptOptions, adapt as run, resume_state
    from mnbench.adapt.parallel import RayPool, Serial
    from mobilenets_tf import configure
    from mobilenets_tf.config import ModelConfig

    if ray_workers is not None and ray_address != "auto":
        raise click.UsageError("--ray-workers sizes the local Ray of --ray auto")
    if resume is not None:
        typed = [f"--{name.replace('_', '-')}" for name in ctx.params if name not in RESUME_WITH
                 and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if typed:
            raise click.UsageError(f"--resume continues with the options of the run it resumes; only --data, "
                                   f"--ray, --ray-workers, --benchmark-binary and --quiet go with it (got "
                                   f"{' '.join(typed)})")
        saved = resume_state(resume)
        state, out = saved["state"], Path(resume)
        if data is None and not state.get("data"):
            raise click.UsageError("--resume: the run did not record its --data; give it")
        images = datasets.load(data or Path(state["data"]))
        config = ModelConfig.from_dict(state["start_config"])
        options = AdaptOptions(**state["options"])
        target, quant, threads = state["target"], state["quant"], state["threads"]
        lut_cache = Path(state["lut_cache"]) if state.get("lut_cache") else None
        budget_ms = budget_ratio = weights = None
    else:
        if data is None or out is None:
            raise click.UsageError("give --data and --out (or --resume OUT)")
        if (budget_ms is None) == (budget_ratio is None):
            raise click.UsageError("give one of --budget-ms and --budget-ratio")
        if step is not None and not 0 < step <= 0.5:
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
        typed = {name: ctx.params[name] for name in CLASSIC
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
        chosen = {**CLASSIC, **typed} if classic else {name: ctx.params[name] for name in CLASSIC}
        options = AdaptOptions(**chosen, iterations=iterations, confirm_steps=confirm_steps,
                               long_epochs=long_epochs, batch_size=batch_size, learning_rate=learning_rate,
                               flip=not no_flip, seed=seed)
        out.mkdir(parents=True, exist_ok=True)
    device = Target(target, quant, threads, out / ".work", benchmark_binary)
    table = LatencyTable(lut_cache, target, config.version, quant, threads, timing_provenance())
    log = (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))
    pool = RayPool(ray_address, ray_workers) if ray_address else Serial()
    try:
        result = run(config, images, out, device, table, weights=weights, budget_ms=budget_ms,
                     budget_ratio=budget_ratio, options=options, progress=not quiet, log=log, pool=pool,
                     resume=saved if resume is not None else None, data_path=Path(data or state["data"]))
    finally:
        pool.close()
    path = report.write(out, result)
    click.echo(f"{result['verdict']}; validation top-1 {result['final_top1']:.3f}; {path}")
