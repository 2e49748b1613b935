"""``mnbench bench``: latency on this CPU with the LiteRT interpreter (benchmark_model semantics)."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import echo_json
from ..table import format_table


class IntList(click.ParamType):
    """``1,2,4`` -> [1, 2, 4]; every value at least ``minimum``."""

    name = "N[,N...]"

    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            numbers = [int(part) for part in str(value).split(",") if part.strip()]
        except ValueError:
            self.fail(f"expected comma-separated integers, got {value!r}", param, ctx)
        if not numbers or min(numbers) < self.minimum:
            self.fail(f"every value must be >= {self.minimum}, got {value!r}", param, ctx)
        return list(dict.fromkeys(numbers))


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--threads", type=IntList(), default="1", show_default=True, help="Thread counts, e.g. 1,2,4.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Minimum timed runs.")
@click.option("--min-secs", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Minimum seconds of timed runs.")
@click.option("--max-secs", type=click.FloatRange(min=0, min_open=True), default=150.0, show_default=True,
              help="Stop timed runs after this long.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Minimum warm-up runs.")
@click.option("--no-xnnpack", is_flag=True, help="Plain TFLite kernels instead of the XNNPACK delegate.")
@click.option("--op-profile", is_flag=True,
              help="Then time every operator, as `mnbench profile --by op` does, and store the per-operator "
                   "times with the row, for `compare` and the history.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results/runs"),
              show_default=True, help="Results store folder.")
@click.option("--no-store", is_flag=True, help="Do not write the results store.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of result rows.")
def bench(models, threads, runs, min_secs, max_secs, warmup, no_xnnpack, op_profile, results_dir, no_store,
          as_json) -> None:
    """Benchmark .tflite models on this CPU; each (model, threads) runs in a fresh process."""
    from tqdm import tqdm

    from device_bench.host import HostParams, bench as run_bench
    from device_bench.store import StoreError

    params = HostParams(runs=runs, min_secs=min_secs, max_secs=max_secs, warmup=warmup,
                        xnnpack=not no_xnnpack)
    total = len(models) * len(threads)
    finished: list[dict] = []
    with tqdm(total=total, desc="bench", unit="run", disable=as_json or None, leave=False) as bar:
        try:
            done = run_bench(list(models), threads, params, None if no_store else results_dir,
                             on_result=lambda row: (finished.append(row), bar.update()),
                             op_profile=op_profile)
        except KeyboardInterrupt:
            if finished and not no_store:
                click.echo(f"mnbench: interrupted; the {len(finished)} finished run(s) are stored under "
                           f"{results_dir}", err=True)
            raise
    rows, run_dir = done.rows, done.run_dir
    _print(rows, run_dir, as_json)
    if done.store_error:
        raise StoreError(f"the results above were measured but not stored: {done.store_error}")
    if any(r["status"] != "ok" for r in rows):
        raise click.exceptions.Exit(1)


def _print(rows: list[dict], run_dir, as_json: bool) -> None:
    if as_json:
        echo_json(rows)
        return
    click.echo(format_table(
        ["model", "threads", "delegate", "status", "median ms", "95% CI ms", "mean ms", "p90 ms", "cv",
         "runs", "init ms", "mem MB"],
        [[r["model"], r["threads"], r["delegate"], r["status"], _ms(r.get("median_us")), _ci(r),
          _ms(r.get("mean_us")), _ms(r.get("p90_us")), r.get("cv"), r.get("count"), _ms(r.get("init_us")),
          r.get("mem_peak_mb")] for r in rows]))
    for row in rows:
        if row["status"] != "ok":
            click.echo(f"{row['model']} threads={row['threads']}: {row['error']}", err=True)
        elif row.get("op_times_error"):
            click.echo(f"{row['model']} threads={row['threads']}: no per-operator times: "
                       f"{row['op_times_error']}", err=True)
        elif row.get("op_times"):
            ranked = sorted(row["op_times"]["by_type"].items(), key=lambda item: -item[1])[:5]
            click.echo(f"{row['model']} threads={row['threads']}: operator types: "
                       + ", ".join(f"{name} {us / 1000:.3f} ms" for name, us in ranked))
    if run_dir is not None:
        click.echo(f"\nrun stored in {run_dir}")


def _ms(value):
    return None if value is None else round(value / 1000, 3)


def _ci(row) -> str | None:
    low, high = row.get("median_ci_low_us"), row.get("median_ci_high_us")
    return None if low is None else f"{low / 1000:.3f}-{high / 1000:.3f}"
