"""``mnbench devices``, ``mnbench device`` and ``mnbench parse``: Android phones over ADB, and captured logs.

``devices`` and ``parse`` never import TensorFlow; ``device`` does only when no model is given (it then
exports, or reuses, the canonical fp32 and int8 models).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from device_bench.delegates import DELEGATES, GPU_BACKENDS, GPU_PRECISIONS
from device_bench.errors import BenchError

from ..cli import VERSIONS, echo_json
from ..table import format_table
from .bench import IntList

MODELS_DIR = Path("results/models")


def _delegate_list(_ctx, param, value: str) -> list[str]:
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    bad = [name for name in names if name not in DELEGATES]
    if bad or not names:
        shown = ", ".join(bad) or repr(value)
        raise click.BadParameter(f"{shown} is not one of {', '.join(DELEGATES)}", param=param)
    return list(dict.fromkeys(names))


def _adb_servers(_ctx, _param, value: tuple[str, ...]) -> list:
    from device_bench.lab import parse_server

    try:
        return [parse_server(text) for text in value]
    except BenchError as error:
        raise click.BadParameter(str(error).removeprefix("--adb-server ")) from None


ADB_SERVER_HELP = ("An adb server to ask for phones, this host's or another's (repeat for a lab); default: "
                   "$ADB_SERVER_SOCKET (tcp:HOST:PORT), else 127.0.0.1:$ANDROID_ADB_SERVER_PORT or 5037.")


def _stf_options(command):
    """``--stf URL`` and ``--stf-token-file PATH`` (the token is never an option's value)."""
    command = click.option("--stf-token-file", type=click.Path(path_type=Path, dir_okay=False),
                           metavar="PATH", help="File holding the STF access token (default: $STF_TOKEN)."
                           )(command)
    return click.option("--stf", "stf_url", metavar="URL",
                        help="A DeviceFarmer STF farm to lease phones from (mixes with --adb-server)."
                        )(command)


@click.command()
@click.option("--adb-server", "servers", multiple=True, metavar="HOST:PORT", callback=_adb_servers,
              help=ADB_SERVER_HELP)
@_stf_options
@click.option("--check", is_flag=True,
              help="Also say per phone whether benchmark_model is ready (on the phone, cached, to download).")
@click.option("--benchmark-binary", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="With --check: your build instead of Google's prebuilt.")
@click.option("--benchmark-sha256", metavar="HEX", help="With --check: the sha256 the binary must have.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def devices(servers, check: bool, benchmark_binary, benchmark_sha256, as_json: bool, **farm) -> None:
    """List the phones of the adb servers (or USB phones when no server runs): state, model, server."""
    from device_bench.binary import BinaryChoice
    from device_bench.connect import list_reachable
    from device_bench.lab import list_servers

    if farm["stf_url"]:
        _farm_devices(farm["stf_url"], farm["stf_token_file"], as_json, then_servers=bool(servers))
        if not servers:
            return
    if servers:
        listed = [(server.address, entry) for server, entry in list_servers(servers)]
    else:
        from device_bench.adb_server import AdbServer

        default = AdbServer()
        listed = [(default.address if entry.transport_id is not None else None, entry)
                  for entry in list_reachable(server=default)]
    choice = BinaryChoice(benchmark_binary, benchmark_sha256) if check else None
    items = [{**dataclasses.asdict(entry), "server": address,
              **({"benchmark_model": _readiness(entry, address, choice)} if choice else {})}
             for address, entry in listed]
    if as_json:
        echo_json(items)
    elif not items:
        click.echo("no device found: plug a phone in with USB debugging on (check `adb devices`), pass a "
                   "lab's --adb-server HOST:PORT, or a Wi-Fi/emulator HOST:PORT to `mnbench device --serial`")
    else:
        headers = ["serial", "state", "model", "product", "server"] + (["benchmark_model"] if choice else [])
        click.echo(format_table(headers, [
            [item["serial"], item["state"], item["model"] or "-", item["product"] or "-",
             item["server"] or "-"] + ([item["benchmark_model"]] if choice else []) for item in items]))


def _readiness(entry, address: str | None, choice) -> str:
    """benchmark_model's state for one listed phone (``mnbench devices --check``)."""
    from device_bench.binary import readiness
    from device_bench.connect import open_transport
    from device_bench.device_facts import read_facts
    from device_bench.lab import parse_server

    if entry.state != "device":
        return f"not ready: the phone is {entry.state}"
    try:
        server = parse_server(address) if address else None
        with open_transport(entry.serial, server=server) as transport:
            facts = read_facts(transport, entry.serial)
            return readiness(transport, facts.abilist or [facts.abi or "unknown"], choice)
    except BenchError as error:
        return f"not ready: {error}"


@click.command()
@click.argument("models", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--serial", "serials", multiple=True, metavar="SERIAL",
              help="Device from `mnbench devices`, HOST:PORT (adbd) or HOST:PORT/SERIAL (that adb server's "
                   "phone); repeat for several, run in parallel.")
@click.option("--devices-file", type=click.Path(path_type=Path, dir_okay=False),
              help="File with one device per line (as --serial) and key=value labels (# comments allowed).")
@click.option("--adb-server", "servers", multiple=True, metavar="HOST:PORT", callback=_adb_servers,
              help=ADB_SERVER_HELP)
@_stf_options
@click.option("--stf-lease", "stf_lease_s", type=click.FloatRange(min=1), default=900.0, show_default=True,
              help="The STF lease's idle timeout in seconds (mnbench keeps it alive while it runs).")
@click.option("--all-devices", is_flag=True,
              help="Every phone the adb servers list (and every free farm phone).")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Only the devices-file lines with this label, or the farm phones with this STF field "
                   "(model, sdk, abi, manufacturer, provider); repeat: all must match.")
@click.option("--lock-wait", "lock_wait_s", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Seconds to wait for a phone another mnbench process is benchmarking (farm phones held "
                   "by others: only when given, else they are skipped).")
@click.option("--threads", type=IntList(), default="1", show_default=True,
              help="--num_threads values, e.g. 1,4.")
@click.option("--delegate", "delegates", default="xnnpack", show_default=True, callback=_delegate_list,
              metavar="D[,D...]",
              help=f"Comma-separated, from {', '.join(DELEGATES)} (cpu: no XNNPACK, classic TFLite tool "
                   "only; npu: LiteRT's CompiledModel tool only; nnapi: classic tool only, deprecated from "
                   "Android 15). What the binary's tool cannot run fails with the reason.")
@click.option("--gpu-precision", type=click.Choice(GPU_PRECISIONS), default="auto", show_default=True,
              help="GPU runs: --gpu-precision (auto: the accelerator's default).")
@click.option("--gpu-backend", type=click.Choice(GPU_BACKENDS), default="auto", show_default=True,
              help="GPU runs: --gpu_backend (auto: OpenCL on Android).")
@click.option("--npu-library", "npu_libraries", multiple=True, metavar="PATH",
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="NPU runs: a vendor dispatch or compiler-plugin library to push (repeat for several).")
@click.option("--benchmark-binary", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Your benchmark_model build for the phone (default: Google's prebuilt for the installed "
                   "ai-edge-litert release, downloaded once).")
@click.option("--benchmark-sha256", metavar="HEX",
              help="The sha256 the binary must have (default: the one recorded at its first download).")
@click.option("--op-profile", is_flag=True,
              help="Pass --enable_op_profiling=true and show the top operators.")
@click.option("--runs", "num_runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="Minimum timed runs (--num_runs).")
@click.option("--min-secs", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Minimum seconds of timed runs (--min_secs).")
@click.option("--warmup", "warmup_runs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Minimum warm-up runs (--warmup_runs).")
@click.option("--timeout", "run_timeout_s", type=click.FloatRange(min=0, min_open=True), default=300.0,
              show_default=True, help="Seconds before a run is stopped and recorded as failed.")
@click.option("--cooldown-below", type=float, default=45.0, show_default=True,
              help="Before each run, wait until the hottest thermal zone is below this many °C ...")
@click.option("--cooldown-max-wait", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="... for at most this many seconds (then run anyway and note it).")
@click.option("--strict-delegation", is_flag=True,
              help="Fail runs whose delegate took only part of the graph (gpu/npu: or none of it); default: "
                   "a warning. gpu/npu runs also pass --use_cpu=false --require_full_delegation=true.")
@click.option("--results", "results_root", type=click.Path(path_type=Path, file_okay=False),
              default=Path("results/runs"), show_default=True, help="Results store folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result rows as a JSON array.")
def device(models, serials, devices_file, servers, all_devices, where, lock_wait_s, threads, delegates,
           gpu_precision, gpu_backend, npu_libraries, benchmark_binary, benchmark_sha256, op_profile,
           num_runs, min_secs, warmup_runs, run_timeout_s, cooldown_below, cooldown_max_wait,
           strict_delegation, results_root, as_json, **farm) -> None:
    """Run benchmark_model on Android phones over ADB (pinned to the big cores) and store the results."""
    from device_bench.adb_server import AdbServer
    from device_bench.android import BenchSettings, benchmark_devices, load_models, reach_devices
    from device_bench.binary import BinaryChoice
    from device_bench.lab import parse_spec, parse_where, read_devices_file, select

    specs = [parse_spec(serial) for serial in serials if serial.strip()]
    specs += read_devices_file(devices_file) if devices_file else []
    if not specs and not all_devices:
        raise click.UsageError("no device: pass --serial SERIAL (see `mnbench devices`), --devices-file or "
                               "--all-devices")
    BinaryChoice(benchmark_binary, benchmark_sha256).user()   # bad binary or pin: fail before exporting
    settings = BenchSettings(num_runs=num_runs, min_secs=min_secs, warmup_runs=warmup_runs,
                             op_profile=op_profile, run_timeout_s=run_timeout_s,
                             cooldown_below_c=cooldown_below, cooldown_max_wait_s=cooldown_max_wait,
                             strict_delegation=strict_delegation, lock_wait_s=lock_wait_s,
                             gpu_precision=gpu_precision, gpu_backend=gpu_backend,
                             npu_libraries=npu_libraries)
    loaded = load_models(models)  # the cheap local checks first
    chosen = (_farm_select(farm, specs, servers, all_devices, parse_where(where), lock_wait_s,
                           BinaryChoice(benchmark_binary, benchmark_sha256)) if farm["stf_url"]
              else select(specs, servers or [AdbServer()], all_devices, parse_where(where)))
    if not chosen:
        raise BenchError("--all-devices: the adb servers list no phone (see `mnbench devices`)")
    unusable = reach_devices(chosen)  # before any export or push: a wrong serial fails now, in one line
    if not loaded and len(unusable) == len(chosen):
        raise unusable[0]  # no device to export the canonical models for
    run = benchmark_devices(chosen, loaded or canonical_models(), threads=threads, delegates=delegates,
                            settings=settings, benchmark_binary=benchmark_binary,
                            benchmark_sha256=benchmark_sha256, results_root=results_root,
                            on_result=None if as_json else _progress,
                            on_interrupt=lambda message: click.echo(f"mnbench: {message}", err=True))
    if as_json:
        echo_json(run.rows)
    else:
        _print_run(run, op_profile)
    if run.failed:
        first = run.failed[0].row
        raise BenchError(f"{len(run.failed)} of {len(run.results)} runs failed (first: {_where(first)}: "
                         f"{first['error']}); all results are in {run.run_dir}")


def _farm_select(farm: dict, specs, servers, all_devices, where, lock_wait_s, binary) -> list:
    """Lease the farm's phones for this command (given back when it ends, however it ends), mixed with
    the adb servers' phones; a held farm phone is waited for only with an explicit --lock-wait."""
    from device_bench.farm import open_farm, select_with_farm

    ctx = click.get_current_context()
    opened = open_farm(farm["stf_url"], farm["stf_token_file"], farm["stf_lease_s"],
                       say=lambda message: click.echo(f"mnbench: {message}", err=True))
    explicit = ctx.get_parameter_source("lock_wait_s") == click.core.ParameterSource.COMMANDLINE
    return select_with_farm(ctx.with_resource(opened), specs, servers, all_devices, where,
                            lock_wait_s if explicit else 0.0, binary)


def _farm_devices(url: str, token_file, as_json: bool, then_servers: bool) -> None:
    from device_bench.farm import farm_listing, open_farm

    items = farm_listing(open_farm(url, token_file).client)
    if as_json:
        echo_json(items)
    else:
        click.echo(format_table(["serial", "state", "model", "manufacturer", "sdk", "abi", "provider"], [
            [item["serial"], item["state"], item["model"] or "-", item["manufacturer"] or "-",
             item["sdk"] or "-", item["abi"] or "-", item["provider"] or "-"] for item in items])
                   if items else f"the farm {url} lists no phone")
    if then_servers and not as_json:
        click.echo()


@click.command()
@click.argument("log", type=click.File("r", encoding="utf-8", errors="replace"))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON array.")
def parse(log, as_json: bool) -> None:
    """Turn a captured benchmark_model log (any era, '-' for stdin) into result rows, one per invocation."""
    from device_bench.parser import parse_log

    rows = parse_log(log.read())
    if as_json:
        echo_json(rows)
        return
    headers = ["run", "status", "avg us", "median us", "std us", "count", "init us", "mem MB", "delegates",
               "error"]
    click.echo(format_table(headers, [
        [index, r["status"], r["avg_us"], r["median_us"], r["std_us"], r["count"], r["init_us"],
         r["mem_overall_mb"] if r["mem_overall_mb"] is not None else r["mem_peak_mb"],
         ",".join(r["delegates"]) or "-", r["error"] or ""]
        for index, r in enumerate(rows, start=1)]))
    for index, row in enumerate(rows, start=1):
        for warning in row["warnings"]:
            click.echo(f"run {index}: warning: {warning}")
        line = _op_profile_line(f"run {index}", row)
        if line:
            click.echo(line)


def canonical_models(out_dir: Path = MODELS_DIR) -> list[Path]:
    """The fp32 and int8 models of every version at alpha 1.0, 224 px, exported or reused from out_dir."""
    from mobilenets_tf import configure

    from export.pipeline import ExportRequest, export_many
    from export.quantization import Quant

    requests = [ExportRequest(configure(version), quant) for version in VERSIONS
                for quant in (Quant.FP32, Quant.INT8)]
    click.echo(f"no model given: using the {len(requests)} canonical fp32/int8 models in {out_dir}/ "
               "(exported now if missing)", err=True)
    return [out_dir / record["file"] for record in export_many(requests, out_dir=out_dir)]


def _where(row: dict) -> str:
    return f"{row['target']} {row['model']} threads={row['threads']} {row['delegate']}"


def _progress(result) -> None:
    row = result.row
    figure = f" {row['avg_us'] / 1000:.2f} ms" if row["status"] == "ok" and row["avg_us"] else ""
    detail = f": {row['error']}" if row["error"] else ""
    click.echo(f"{_where(row)}: {row['status']}{figure}{detail}", err=True)


def _print_run(run, op_profile: bool) -> None:
    facts_by_device = {}
    for result in run.results:
        facts_by_device.setdefault(result.row["target"], result.facts)
    for serial, facts in facts_by_device.items():
        click.echo(f"{serial}: {_describe(facts)}")
    headers = ["device", "model", "threads", "delegate", "cpus", "status", "avg ms", "median ms", "std ms",
               "runs", "init ms", "°C before", "°C after"]
    rows, notes = [], []
    for result in run.results:
        row, desc = result.row, json.loads(result.row["target_desc"]).get("run", {})
        before, after = (desc.get(key) or {} for key in ("temperatures_before", "temperatures_after"))
        rows.append([row["target"], row["model"], row["threads"], row["delegate"],
                     desc.get("taskset_mask") or "-", row["status"], _ms(row["avg_us"]),
                     _ms(row["median_us"]), _ms(row["std_us"]), row["count"], _ms(row["init_us"]),
                     before.get("hottest_c"), after.get("hottest_c")])
        notes += [f"{_where(row)}: warning: {warning}" for warning in desc.get("warnings") or []]
        notes += [f"{_where(row)}: failed: {row['error']}"] if row["error"] else []
        if op_profile and result.parsed:
            notes += filter(None, [_op_profile_line(_where(row), result.parsed)])
    click.echo("\n" + format_table(headers, rows))
    for note in notes:
        click.echo(note)
    click.echo(f"\nresults: {run.run_dir}")


def _describe(facts) -> str:
    if facts is None:
        return "not reached"
    clusters = " + ".join(f"{len(c['cpus'])}x{c['max_freq_khz'] / 1e6:.2f}" for c in facts.clusters())
    battery = facts.battery_level_pct
    return (f"{facts.model or '?'} ({facts.manufacturer or '?'}), SoC {facts.soc_model or '?'} "
            f"({facts.board_platform or '?'}), {facts.abi or '?'}, Android {facts.android_release or '?'} "
            f"(SDK {facts.sdk or '?'}), cores {clusters or '?'} GHz, battery "
            f"{'?' if battery is None else battery} %")


def _op_profile_line(where: str, parsed: dict, top: int = 5) -> str | None:
    summary = [entry for entry in parsed.get("op_profile") or [] if entry.get("avg_pct") is not None]
    ranked = sorted(summary, key=lambda entry: -entry["avg_pct"])[:top]
    if not ranked:
        return None
    return f"{where}: top operators: " + ", ".join(f"{e['node_type']} {e['avg_pct']:.1f}%" for e in ranked)


def _ms(value_us: float | None) -> float | None:
    return None if value_us is None else value_us / 1000
