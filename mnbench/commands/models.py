"""``mnbench models`` and ``mnbench info``: architectures and their cost, without TensorFlow."""

from __future__ import annotations

import click

from mobilenets_tf import configure, get_version, list_versions

from ..cli import VERSIONS, echo_json, parse_knobs
from ..table import format_table


def config_options(func):
    """--version/--alpha/--resolution/--set, shared by every command that names a model."""
    func = click.option("--set", "knobs", multiple=True, metavar="KEY=VALUE",
                        help="Ablation knob, e.g. separable=false, activation=relu (see `mnbench "
                             "models`).")(func)
    func = click.option("--resolution", type=int, default=224, show_default=True,
                        help="Input size (>= 32).")(func)
    func = click.option("--alpha", type=float, default=1.0, show_default=True,
                        help="Width multiplier in (0, 2].")(func)
    return func


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json: bool) -> None:
    """List every version at its canonical widths (224 px), with params and Mult-Adds, and its knobs."""
    rows = []
    for name in list_versions():
        version = get_version(name)
        for alpha in version.canonical_alphas:
            report = configure(name, alpha, 224).cost()
            rows.append({"version": name, "alpha": alpha, "resolution": 224, "params": report.params,
                         "macs": report.macs, "paper": version.paper})
    if as_json:
        echo_json(rows)
        return
    click.echo(format_table(["version", "alpha", "resolution", "params", "Mult-Adds", "paper"],
                            [[r["version"], r["alpha"], r["resolution"], r["params"], r["macs"], r["paper"]]
                             for r in rows]))
    click.echo("\nknobs (--set KEY=VALUE; default = the published model):")
    for name in list_versions():
        for knob in get_version(name).knobs:
            choices = "|".join(map(str, knob.choices)) if knob.choices else type(knob.default).__name__
            default = str(knob.default).lower() if isinstance(knob.default, bool) else knob.default
            setting = f"{knob.name}={default}"
            click.echo(f"  {name:9} {setting:24} {choices:20} {knob.help}")


@click.command()
@click.option("--version", "version", type=click.Choice(VERSIONS), required=True, help="MobileNet version.")
@config_options
@click.option("--classes", "num_classes", type=int, default=1000, show_default=True,
              help="Classifier outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info(version: str, alpha: float, resolution: int, knobs: tuple[str, ...], num_classes: int,
         as_json: bool) -> None:
    """Per-layer params and Mult-Adds of one configuration, counted as the papers count them."""
    config = configure(version, alpha, resolution, num_classes, knobs=parse_knobs(knobs))
    report = config.cost()
    if as_json:
        echo_json({"version": config.version, "alpha": config.alpha, "resolution": config.resolution,
                   "num_classes": config.num_classes, "knobs": config.knobs, "params": report.params,
                   "macs": report.macs, "layers": report.as_dicts()})
        return
    click.echo(format_table(
        ["layer", "kind", "output", "params", "Mult-Adds"],
        [[r.name, r.kind, "x".join(map(str, r.output_shape)), r.params, r.macs] for r in report.rows]))
    knob_text = ", ".join(f"{k}={v}" for k, v in config.non_default_knobs.items()) or "published model"
    click.echo(f"\n{version} alpha={config.alpha:g} resolution={resolution} ({knob_text}): "
               f"{report.params:,} params ({report.params / 1e6:.2f} M), "
               f"{report.macs:,} Mult-Adds ({report.macs / 1e6:.1f} M)")
