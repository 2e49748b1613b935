"""``mnbench profile``: where the time goes in a model, per block, per operator and per operator type."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import echo_json
from ..errors import MnbenchError
from ..table import format_table


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", default="host", show_default=True,
              help="host (slices timed here); for a phone use `mnbench device --op-profile`.")
@click.option("--by", type=click.Choice(["block", "layer", "op"]), default="block", show_default=True,
              help="One slice per network block, per layer (an operator with the element-wise operators "
                   "that follow it), or per operator (what it adds to its layer).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def profile(model: Path, target: str, by: str, threads: int, as_json: bool) -> None:
    """Time sub-models cut from MODEL (same weights and quantization) and compare their sum with the whole."""
    from device_bench.profile import profile as run_profile

    if target != "host":
        raise MnbenchError(f"profile --target {target}: phones are profiled by benchmark_model itself; "
                           "run `mnbench device --serial SERIAL MODEL --op-profile`")
    report = run_profile(model, by=by, threads=threads)
    if as_json:
        echo_json(report)
        return
    total = report["sum_us"]
    extra = ["layer"] if by == "op" else []
    click.echo(format_table(["slice", *extra, "ops", "operators", "ms", "share"],
                            [[r["slice"], *([r["layer"]] if extra else []), r["ops"], _ops(r["op_types"]),
                              r["median_us"] / 1000, f"{100 * r['median_us'] / total:.1f}%"]
                             for r in report["slices"]]))
    if report["by_op_type"]:
        click.echo("")
        click.echo(format_table(["operator type", "ms", "share"],
                                [[name, us / 1000, f"{100 * us / total:.1f}%"] for name, us in
                                 sorted(report["by_op_type"].items(), key=lambda item: -item[1])]))
    click.echo(f"\nsum of slices {total / 1000:.3f} ms, whole model {report['whole_us'] / 1000:.3f} ms "
               f"(ratio {report['sum_over_whole']:.2f}), {threads} thread(s); invoke floor "
               f"{report['floor_us']:.2f} us subtracted per slice, {report['sessions']} session(s)")
    if by == "op":
        click.echo("op: what the operator adds to its layer; negative where XNNPACK runs the longer chain as "
                   "a faster kernel")


def _ops(counts: dict) -> str:
    text = ", ".join(f"{name}" + (f" x{n}" if n > 1 else "") for name, n in counts.items())
    return text if len(text) <= 48 else text[:45] + "..."
