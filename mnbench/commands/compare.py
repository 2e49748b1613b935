"""``mnbench compare``, ``mnbench ab`` and ``mnbench report``: verdicts on latency changes, and reports.

``compare`` and ``ab`` exit 1 when a pair is judged a regression (or failed) unless ``--fail-on never``,
2 on bad input (missing or corrupt results, nothing in common, refused targets), so CI can gate on them.
The gate's failure is an error (``GateFailed``, which ``mnbench.cli`` maps to exit 1) with a one-line
message saying what failed; ``click.exceptions.Exit(1)`` would also set the status but say nothing.
Both append their Markdown to ``$GITHUB_STEP_SUMMARY`` when it is set.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..cli import echo_json
from ..table import format_table

FAIL_ON = click.Choice(["regression", "noisy", "never"])
_PERCENT_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*")


class Fraction(click.ParamType):
    """``5%`` or ``0.05`` -> 0.05; must lie in (0, 1)."""

    name = "PCT"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        match = _PERCENT_RE.fullmatch(str(value))
        number = float(match.group(1)) / (100 if match and match.group(2) else 1) if match else None
        if number is None or not 0 < number < 1:
            self.fail(f"expected a percentage like 5% or a fraction like 0.05, got {value!r}", param, ctx)
        return number


def _write_markdown(text: str, target: Path | None) -> None:
    from ..report import ReportError
    from ..report.markdown import append_step_summary

    if target is not None:
        if str(target) == "-":
            click.echo(text)
        else:
            try:
                target.write_text(text, encoding="utf-8")
            except OSError as error:
                raise ReportError(f"cannot write {target}: {error}") from None
    append_step_summary(text)


def _load(store, source: str, side: str):
    from device_bench.compare import CompareError
    from device_bench.store import StoreError

    try:
        return store.load(source)
    except StoreError as error:
        raise CompareError(f"{side} {source!r}: {error}") from None


@click.command()
@click.argument("baseline")
@click.argument("current")
@click.option("--threshold", type=Fraction(), default="5%", show_default=True,
              help="Change that counts, e.g. 5% or 0.05.")
@click.option("--confidence", type=click.FloatRange(0.5, 1, max_open=True), default=0.95, show_default=True,
              help="Coverage of each interval.")
@click.option("--fail-on", type=FAIL_ON, default="regression", show_default=True,
              help="Exit 1 on a regression (or failed row); 'noisy' also on undecided pairs; 'never'.")
@click.option("--allow-different-targets", is_flag=True,
              help="Pair rows that ran on different machines or phones.")
@click.option("--match", type=click.Choice(["config", "sha"]), default="config", show_default=True,
              help="Pair models by configuration (default) or only identical files.")
@click.option("--markdown", "markdown_file", type=click.Path(path_type=Path, allow_dash=True),
              help="Write the Markdown table here ('-': stdout).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results/runs"),
              show_default=True, help="Store folder in which run ids are looked up.")
def compare(baseline, current, threshold, confidence, fail_on, allow_different_targets, match, markdown_file,
            as_json, results_dir) -> None:
    """Compare CURRENT results against BASELINE (each a results folder, a rows.csv or a run id)."""
    from device_bench import compare as comparing
    from device_bench.store import ResultStore, StoreError

    from ..report.markdown import comparison_markdown

    store = ResultStore(results_dir)
    frames = _load(store, baseline, "baseline"), _load(store, current, "current")
    settings = comparing.CompareSettings(threshold, confidence, match, allow_different_targets)
    try:
        result = comparing.compare(*frames, store.load_samples, settings, store.load_op_times)
    except StoreError as error:
        raise comparing.CompareError(str(error)) from None
    _write_markdown(comparison_markdown(result), markdown_file)
    if as_json:
        echo_json(result.as_dict())
    elif str(markdown_file) != "-":
        _print_comparison(result)
    if result.failing(fail_on):
        failing = result.pairs[result.pairs["verdict"].isin(comparing.FAILING[fail_on])]
        names = ", ".join(f"{row.model} t{row.threads} ({row.verdict}, x{row.ratio or 0:.3f})"
                          for row in failing.head(3).itertuples())
        raise comparing.GateFailed(f"latency gate failed on {len(failing)} of {len(result.pairs)} pairs: "
                                   f"{names}{' ...' if len(failing) > 3 else ''}")


def _print_comparison(result) -> None:
    pairs = result.pairs.to_dict("records")
    several = len({p["target"] for p in pairs}) > 1
    headers = ["verdict"] + (["target"] if several else []) + [
        "model", "threads", "delegate", "base ms", "cur ms", "ratio", "interval", "notes"]
    rows = [[p["verdict"]] + ([p["target"]] if several else []) + [
        p["model"], p["threads"], p["delegate"], _ms(p["baseline_median_us"]), _ms(p["current_median_us"]),
        _round(p["ratio"]), None if p["ci_low"] is None else f"{p['ci_low']:.3f}-{p['ci_high']:.3f}",
        p["notes"] or ""] for p in pairs]
    click.echo(format_table(headers, rows))
    if not several and pairs:
        click.echo(f"target: {pairs[0]['target']}")
    from device_bench.op_times import summary

    for p in pairs:
        if p.get("operators") and p["verdict"] != "unchanged":
            where = f"{p['target']} " if several else ""
            click.echo(f"operators that changed most, {where}{p['model']} t{p['threads']} {p['delegate']}: "
                       f"{summary(p['operators'])}")
    counts = ", ".join(f"{count} {name}" for name, count in result.counts().items() if count)
    click.echo(f"\n{counts} of {len(pairs)} pairs (threshold ±{result.settings.threshold:.0%}, "
               f"{result.settings.confidence:.0%} intervals)")
    if len(result.unpaired):
        click.echo(f"{len(result.unpaired)} row(s) not compared (see --json or --markdown)", err=True)
    from ..report.markdown import SINGLE_PROCESS_NOTE, single_process

    if single_process(result):
        click.echo(f"note: {SINGLE_PROCESS_NOTE}")


@click.command()
@click.argument("model_a", type=click.Path(path_type=Path))
@click.argument("model_b", type=click.Path(path_type=Path))
@click.option("--target", default="host", show_default=True,
              help="'host', or a phone serial (interleaved engine: benchmark_model runs of A and B in random "
                   "order, stored under --results).")
@click.option("--benchmark-binary", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Phone target: your benchmark_model build (default: Google's prebuilt).")
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results/runs"),
              show_default=True, help="Phone target: store folder for the runs.")
@click.option("--engine", type=click.Choice(["interleaved", "rounds"]), default="interleaved",
              show_default=True,
              help="'interleaved': A and B alternated at random inside fresh processes, sampling until the "
                   "interval decides or --max-secs run out; 'rounds': the former fixed rounds of two "
                   "processes.")
@click.option("--max-secs", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              help="Time budget of the interleaved engine; undecided after it: 'noisy'.")
@click.option("--seed", type=int, help="Seed of the interleaved engine's random orders (default: random).")
@click.option("--rounds", type=click.IntRange(min=6), default=10, show_default=True,
              help="Rounds engine: rounds of A and B, each in a fresh process, order alternating AB, BA, ...")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Interpreter threads.")
@click.option("--threshold", type=Fraction(), default="5%", show_default=True, help="Change that counts.")
@click.option("--confidence", type=click.FloatRange(0.5, 1, max_open=True), default=0.95, show_default=True)
@click.option("--runs", type=click.IntRange(min=1),
              help="Minimum timed runs (interleaved: pairs) per process [rounds: 20, interleaved: 40].")
@click.option("--min-secs", type=click.FloatRange(min=0),
              help="Minimum seconds of timed runs per process [rounds: 0.3, interleaved: 1.0].")
@click.option("--warmup", type=click.IntRange(min=0),
              help="Warm-up runs per process [rounds: 1, interleaved: 3].")
@click.option("--no-xnnpack", is_flag=True, help="Plain TFLite kernels instead of the XNNPACK delegate.")
@click.option("--fail-on", type=FAIL_ON, default="regression", show_default=True,
              help="Exit 1 on a regression; 'noisy' also when undecided; 'never'.")
@click.option("--op-profile", is_flag=True,
              help="Host: after the verdict, time every operator of A and of B (as `mnbench profile --by "
                   "op`) and name the operators whose time changed most.")
@click.option("--markdown", "markdown_file", type=click.Path(path_type=Path, allow_dash=True),
              help="Write the Markdown section here ('-': stdout).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON object (verdict, ratio, ci_low, ci_high, processes or rounds, ...).")
def ab(model_a, model_b, target, benchmark_binary, results_dir, engine, max_secs, seed, rounds, threads,
       threshold, confidence, runs, min_secs, warmup, no_xnnpack, fail_on, op_profile, markdown_file,
       as_json) -> None:
    """Interleaved A/B latency test of MODEL_B against MODEL_A on one target; reports B/A."""
    from dataclasses import replace

    from tqdm import tqdm

    from device_bench import ab as abtest
    from device_bench import interleave

    from ..report.markdown import ab_markdown, changes_markdown, gate_markdown

    if op_profile and target != "host":
        raise click.UsageError("--op-profile: on a phone run `mnbench device --op-profile` on both models "
                               "and `mnbench compare` the two runs")
    defaults = interleave.PAIR_PARAMS if engine == "interleaved" else abtest.AB_PARAMS
    given = {"runs": runs, "min_secs": min_secs, "warmup": warmup}
    params = replace(defaults, xnnpack=not no_xnnpack, **{k: v for k, v in given.items() if v is not None})
    if engine == "interleaved":
        settings = interleave.GateSettings(threshold, confidence, max_secs, threads, params, seed)
        runner = None
        if target != "host":
            from device_bench.android_run import BenchSettings

            phone = BenchSettings(**{key: value for key, value in (
                ("num_runs", runs), ("min_secs", min_secs), ("warmup_runs", warmup)) if value is not None})
            runner = interleave.phone_pair_runner(target, "cpu" if no_xnnpack else "xnnpack", phone,
                                                  benchmark_binary, results_dir)
        with tqdm(total=None, desc="ab", unit="process", disable=as_json or None, leave=False) as bar:
            result = interleave.run_gate(model_a, model_b, settings, target, runner=runner,
                                         on_process=lambda item, interval: bar.update())
        markdown, printer = gate_markdown(result), _print_gate
    else:
        settings = abtest.ABSettings(rounds, threads, threshold, confidence, params)
        with tqdm(total=rounds, desc="ab", unit="round", disable=as_json or None, leave=False) as bar:
            result = abtest.run_ab(model_a, model_b, settings, target, on_round=lambda item: bar.update())
        markdown, printer = ab_markdown(result), _print_ab
    operators = None
    if op_profile:
        from device_bench import op_times
        from device_bench.profile import op_times_of

        operators = op_times.changes([op_times_of(model_a, threads, params)],
                                     [op_times_of(model_b, threads, params)])
        markdown += "\n".join(changes_markdown(operators, "B against A", result.verdict)) + "\n"
    _write_markdown(markdown, markdown_file)
    if as_json:
        echo_json({**result.as_dict(), **({"operators": operators} if op_profile else {})})
    elif str(markdown_file) != "-":
        printer(result)
        if operators:
            click.echo(f"operators that changed most, B against A: {op_times.summary(operators)}")
    from device_bench.compare import FAILING, GateFailed

    if result.verdict in FAILING[fail_on]:
        raise GateFailed(f"latency gate failed: B/A = {result.ratio:.3f} "
                         f"({result.ci_low:.3f}-{result.ci_high:.3f}) is {result.verdict}")


def _print_header(result) -> None:
    click.echo(f"A  {result.model_a}  sha256 {str(result.sha256_a)[:12]}")
    click.echo(f"B  {result.model_b}  sha256 {str(result.sha256_b)[:12]}")
    desc = result.target_desc
    click.echo(f"{result.target} ({desc.get('cpu', '')}, {desc.get('cores', '?')} cores), {result.runtime}, "
               f"{result.threads} thread(s), {result.delegate}\n")


def _print_ab(result) -> None:
    _print_header(result)
    click.echo(format_table(["round", "order", "A median ms", "B median ms", "B/A"],
                            [[r.index, r.order, _ms(r.a_median_us), _ms(r.b_median_us), round(r.ratio, 4)]
                             for r in result.rounds]))
    click.echo(f"\nB/A = {result.ratio:.3f}  ({result.confidence:.0%} interval {result.ci_low:.3f}-"
               f"{result.ci_high:.3f}, threshold ±{result.threshold:.0%}): {result.verdict}")


def _print_gate(result) -> None:
    _print_header(result)
    click.echo(format_table(["process", "pairs", "A median ms", "B median ms", "B/A", "s", "heavy load"],
                            [[p.index, p.pairs, _ms(p.a_median_us), _ms(p.b_median_us), round(p.ratio, 4),
                              round(p.seconds, 1), p.heavy or ""] for p in result.processes]))
    within = result.within_process
    bounds = f"{within['ci_low']:.3f}-{within['ci_high']:.3f}, " if within['ci_low'] else ""
    click.echo(f"\ninside processes (pairs pooled, for diagnosis): B/A = {within['ratio']:.3f} "
               f"({bounds}{within['pairs']} pairs)")
    click.echo(f"B/A = {result.ratio:.3f}  ({result.confidence:.0%} sequential interval {result.ci_low:.3f}-"
               f"{result.ci_high:.3f} after {len(result.processes)} processes, {result.seconds:.0f} s; "
               f"threshold ±{result.threshold:.0%}): {result.verdict}")
    if result.why:
        click.echo(f"why noisy: {result.why}")


@click.command()
@click.argument("results", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for report.md, report.html and the figures.")
@click.option("--title", default="mnbench latency report", show_default=True)
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results/runs"),
              show_default=True, help="Store folder in which run ids are looked up.")
def report(results, out_dir, title, results_dir) -> None:
    """Write report.md and a self-contained report.html from RESULTS (folders, rows.csv files or run ids)."""
    from device_bench.store import ResultStore, StoreError

    from ..report import ReportError
    from ..report.build import build_report

    try:
        frame = ResultStore(results_dir).load(*results)
    except StoreError as error:
        raise ReportError(str(error)) from None
    written = build_report(frame, out_dir, title=title, sources=list(results))
    for path in written:
        click.echo(str(path))


def _ms(value):
    return None if value is None else round(value / 1000, 3)


def _round(value):
    return None if value is None else round(value, 3)
