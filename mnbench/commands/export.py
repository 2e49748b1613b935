"""``mnbench export`` and ``mnbench inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from device_bench.tflite_file import describe_integer
from export.quantization import DEFAULT_LOWERING, IoType, Lowering, Quant
from export.stem import Stem

from ..cli import VERSIONS, echo_json
from ..errors import MnbenchError
from ..table import format_table
from .models import config_options

QUANTS = tuple(quant.value for quant in Quant)


@click.command()
@click.option("--version", "versions", type=click.Choice(VERSIONS), multiple=True,
              help="MobileNet version (repeat for several; optional with --weights from `mnbench finetune`).")
@click.option("--quant", "quants", type=click.Choice(QUANTS + ("all",)), multiple=True, default=("fp32",),
              show_default=True, help="Quantization (repeat, or 'all').")
@config_options
@click.option("--classes", "num_classes", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Classifier outputs (must match --weights).")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Keras weights file (ours or keras.applications').")
@click.option("--calib-dir", type=click.Path(path_type=Path),
              help="Folder of JPEG/PNG images (recursive). Default: photographs shipped in scikit-image.")
@click.option("--calib-samples", type=click.IntRange(min=1), default=64, show_default=True,
              help="Calibration (and verification) images.")
@click.option("--io", "io_type", type=click.Choice([io.value for io in IoType]), default=IoType.INT8.value,
              show_default=True, help="Input/output type of int8 models.")
@click.option("--hswish", "lowerings", type=click.Choice([lowering.value for lowering in Lowering]),
              multiple=True, default=(DEFAULT_LOWERING["host"].value,), show_default=True,
              help="How int8 V3 models lower h-swish (repeat for several).")
@click.option("--stem", type=click.Choice([stem.value for stem in Stem]),
              help="How int8 models lower the first convolution (3x3/2 on 3 channels): float = kept "
                   "float32, quantized after it; conv = int8 as built; s2d = space-to-depth + 2x2 int8 "
                   "convolution. Default: conv (full integer; docs/int8.md, 'The stem').")
@click.option("--precision", type=click.Choice(["int8", "auto"]), default="int8", show_default=True,
              help="int8: every block int8; auto: blocks the target runs faster in float32 stay float32.")
@click.option("--float-blocks", default="", metavar="BLOCK[,BLOCK...]",
              help="Keep these blocks float32 in an int8 model, e.g. stem,block01 (see `mnbench profile`).")
@click.option("--target", default="host", show_default=True,
              help="Where --precision auto times the blocks: host, or a phone's serial "
                   "(benchmark_model over ADB).")
@click.option("--benchmark-binary", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="benchmark_model build for a phone --target (default: Google's prebuilt for the installed "
                   "ai-edge-litert release, as `mnbench device`).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Thread count --precision auto decides for.")
@click.option("--int8-softmax", is_flag=True,
              help="Keep the final softmax in int8 models (default: they end at the logits, as XNNPACK has "
                   "no int8 softmax).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/models"),
              show_default=True, help="Output folder.")
@click.option("--force", is_flag=True, help="Rebuild even if an up-to-date model exists.")
@click.option("--no-verify", is_flag=True, help="Skip the comparison with the Keras model.")
@click.option("--json", "as_json", is_flag=True, help="Print the sidecars as a JSON array.")
@click.pass_context
def export(ctx, versions, quants, alpha, resolution, knobs, num_classes, weights, calib_dir, calib_samples,
           io_type, lowerings, stem, precision, float_blocks, target, benchmark_binary, threads, int8_softmax,
           out_dir, force, no_verify, as_json) -> None:
    """Convert MobileNets to LiteRT models, calibrated on real images and verified against Keras.

    \b
    int8 h-swish lowerings (V3): decomposed = x*relu6(x+3)/6 in int8, fully delegated to XNNPACK (default);
    fused = TFLite's int8 HARD_SWISH op (not taken by XNNPACK; NEON-optimised on ARM);
    float = HARD_SWISH kept in float inside the int8 graph.
    """
    from export.pipeline import export_many

    if target != "host" and precision != "auto":
        raise MnbenchError(f"--target {target} only applies to --precision auto")
    from .accuracy import carried_options

    carried = carried_options(ctx, versions, alpha, resolution, knobs, num_classes, weights, calib_dir)
    versions = carried.pop("versions")
    common = dict(**carried, io=io_type, weights=weights, calib_samples=calib_samples,
                  verify=not no_verify, precision=precision, threads=threads, int8_softmax=int8_softmax,
                  target=target, benchmark_binary=benchmark_binary, stem=Stem(stem) if stem else None,
                  float_blocks=tuple(b.strip() for b in float_blocks.split(",") if b.strip()))
    requests = _requests(versions, QUANTS if "all" in quants else quants, lowerings, **common)
    with _progress(len(requests), as_json) as bar:
        results = export_many(requests, out_dir, force, on_done=lambda record: bar.update())
    if as_json:
        echo_json(results)
        return
    click.echo(format_table(["model", "size MB", "seconds", "fidelity vs Keras", "partitions", "status"],
                            [[r["file"], r["size_bytes"] / 1e6, r["export_seconds"], _fidelity(r),
                              r["delegation"]["partitions"],
                              "cached" if r["cached"] else "built"] for r in results]))
    for record in results:
        if record["float_ops"] and not record.get("conversion", {}).get("float_blocks"):
            click.echo(f"warning: {record['file']} keeps float operators: "
                       f"{', '.join(record['float_ops'][:8])}",
                       err=True)
        integer = record.get("integer")
        if record["quant"] == "int8" and integer and not integer["full_integer"]:
            click.echo(f"note: {record['file']}: {describe_integer(integer)}", err=True)
    calibration = results[0]["calibration"]
    click.echo(f"\nwritten to {out_dir}/ (a .json sidecar beside each model); "
               f"calibration: {calibration['source'] if calibration else 'none'}")


def _requests(versions, quants, lowerings, *, alpha, resolution, num_classes, knobs, io, widths=None,
              **options) -> list:
    """One request per (version, quantization, lowering); the lowering only multiplies int8 V3 models."""
    from mobilenets_tf import configure

    from export.pipeline import ExportRequest

    requests = {}
    for version in dict.fromkeys(versions):
        config = configure(version, alpha, resolution, num_classes, knobs=knobs, widths=widths)
        for quant in dict.fromkeys(quants):
            for lowering in dict.fromkeys(lowerings):
                request = ExportRequest(config, Quant(quant), IoType(io), hswish=Lowering(lowering),
                                        **options)
                requests.setdefault((version, quant, request.lowering), request)
    return list(requests.values())


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="export", unit="model", disable=quiet or total < 2, leave=False)


def _fidelity(record: dict) -> str:
    check = record.get("verification")
    if not check:
        return "not verified"
    if record["quant"] == "fp32":
        return f"max|diff| {check['outputs']['max_abs_diff']:.1e}"
    measure = check.get("logits", check["outputs"])
    return (f"top1 {measure['top1_agreement']:.2f} cos {measure['cosine']:.3f} "
            f"SQNR {measure['sqnr_db']:.1f} dB")


def describe_choices(choices: dict) -> str:
    """One line: the int8 lowering choices and the CPU they were measured on (or exported on)."""
    def cpu(facts: dict | None) -> str:
        if not facts:
            return "unknown CPU"
        return f"{facts['model']} ({', '.join(facts.get('flags', [])) or 'no int8 flags'})"

    blocks = ", ".join(choices["float_blocks"]) or "none"
    line = f"int8 choices: stem {choices['stem']}, float blocks: {blocks}; "
    if choices["by"] == "fixed":
        return line + f"fixed defaults, exported on {cpu(choices.get('exported_on'))}"
    return line + (f"chosen by --precision auto ({choices['chosen']}) at {choices['threads']} thread(s) on "
                   f"{choices['target']}: {cpu(choices.get('measured_on'))}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(model: Path, as_json: bool) -> None:
    """What a .tflite model contains: its configuration, operators, tensor types and delegation."""
    from device_bench.tflite_file import describe

    info = describe(model)
    if as_json:
        echo_json(info)
        return
    embedded = info["embedded"]
    click.echo(f"{model}  {info['size_bytes'] / 1e6:.2f} MB  sha256 {info['sha256'][:16]}")
    if embedded:
        config = embedded["config"]
        click.echo(f"mnbench model: {config['version']} alpha={config['alpha']:g} "
                   f"resolution={config['resolution']} "
                   f"classes={config['num_classes']} quant={embedded['quant']} "
                   f"knobs={json.dumps(config['knobs'])}")
        click.echo(f"weights: {embedded['weights']}")
        if embedded.get("int8_choices"):
            click.echo(describe_choices(embedded["int8_choices"]))
    else:
        click.echo("not written by mnbench (no embedded configuration)")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            quant = f" scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else ""
            click.echo(f"{kind[:-1]}: {t['name']} {t['dtype']} {t['shape']}{quant}")
    click.echo("")
    click.echo(format_table(["operator:output type", "count"], sorted(info["op_histogram"].items())))
    deleg = info["delegation"]
    outside = ", ".join(f"{k} x{v}" for k, v in deleg["ops_outside_delegate"].items()) or "none"
    click.echo(f"\nXNNPACK: {deleg['partitions']} partition(s); operators left outside: {outside}")
    click.echo(describe_integer(info["integer"]))
    click.echo(f"tensor types: {info['tensor_types']}")
