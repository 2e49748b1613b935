"""``mnbench history``: ingest result folders into a database, query it, publish trend pages, gate on steps.

The database is ``--db`` (or ``$MNBENCH_HISTORY_DB``): a SQLite file path (default
``results/history.sqlite``) or a URL such as ``postgresql://user@host/db``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import echo_json
from ..table import format_table
from .compare import Fraction

DB_OPTION = click.option("--db", envvar="MNBENCH_HISTORY_DB", default=None, metavar="URL|PATH",
                         help="SQLite file or database URL (postgresql://...)  "
                              "[default: results/history.sqlite]")


def _filter_options(command):
    for option in reversed([
            click.option("--model", help="Model file name or version contains this (e.g. v3-small, int8)."),
            click.option("--target", help="Target contains this (e.g. 'host', 'EPYC', a phone serial)."),
            click.option("--threads", type=click.IntRange(min=1), help="Only this thread count."),
            click.option("--delegate", help="Only this delegate (e.g. xnnpack, gpu)."),
            click.option("--since", metavar="DATE", callback=_check_since,
                         help="Only results measured at or after this UTC date or time "
                              "(2026-11-01[T12:00:00Z])."),
    ]):
        command = option(command)
    return command


def _check_since(ctx, param, value):
    import re

    if value is not None and not re.fullmatch(r"\d{4}-\d\d-\d\d(T\d\d(:\d\d(:\d\d(\.\d+)?)?)?Z?)?", value):
        raise click.BadParameter(f"expected an ISO date like 2026-11-01, got {value!r}")
    return value


def _selection(model, target, threads, delegate, since):
    from ..history.series import SeriesFilter

    return SeriesFilter(model=model, target=target, threads=threads, delegate=delegate, since=since)


@click.group()
def history() -> None:
    """Latency over commits: a database of runs, trend pages and step detection."""


@history.command()
@click.argument("results", nargs=-1, required=True)
@DB_OPTION
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results/runs"),
              show_default=True, help="Store folder in which run ids are looked up.")
@click.option("--verify", is_flag=True,
              help="Re-read runs already in the history and refuse any whose files changed since.")
def ingest(results, db, results_dir, verify) -> None:
    """Load RESULTS (results folders, run folders, rows.csv files or run ids); runs already in are skipped."""
    from ..history.db import open_db
    from ..history.ingest import ingest as load

    report = load(open_db(db), results, results_dir, verify)
    click.echo(f"{report.runs_added} run(s) added ({report.rows_added} rows, {report.samples_added} with "
               f"samples), {report.runs_skipped} already in the history")


@history.command()
@DB_OPTION
@_filter_options
@click.option("--series", "by_series", is_flag=True,
              help="One line per series (points, steps) instead of rows.")
@click.option("--failed", is_flag=True, help="Only failed rows.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Rows to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def query(db, model, target, threads, delegate, since, by_series, failed, limit, as_json) -> None:
    """Results (newest first) or series matching the filters."""
    from ..history.db import open_db

    engine, selected = open_db(db, create=False), _selection(model, target, threads, delegate, since)
    if by_series:
        from ..history.trends import analyse

        records = [{**{k: view.info[k] for k in ("series_key", "target_label", "model", "threads", "delegate",
                                                  "runtime")},
                    "commits": len(view.points), "latest_median_us": float(view.points["median_us"].iat[-1]),
                    "latest_commit": view.points["commit"].iat[-1],
                    "steps": [step.as_dict() for step in view.steps]} for view in analyse(engine, selected)]
        if as_json:
            return echo_json(records)
        return click.echo(format_table(
            ["target", "model", "threads", "delegate", "runtime", "commits", "latest ms", "steps"],
            [[r["target_label"], r["model"], r["threads"], r["delegate"], r["runtime"], r["commits"],
              round(r["latest_median_us"] / 1000, 3), len(r["steps"])] for r in records]))
    import pandas as pd

    from ..history.series import result_rows

    with engine.connect() as connection:
        rows = result_rows(connection, selected, "failed" if failed else None, limit)
    if as_json:
        return echo_json(rows.drop(columns=["result_id", "series_id", "row_json"]).astype(object)
                         .where(rows.notna(), None).to_dict("records"))
    click.echo(format_table(
        ["utc time", "commit", "target", "model", "threads", "delegate", "status", "median ms", "run id"],
        [[r.utc_time, (r.git_commit or "")[:10], r.target_label, r.model, r.threads, r.delegate, r.status,
          None if pd.isna(r.median_us) else round(r.median_us / 1000, 3), r.run_id]
         for r in rows.itertuples()]))


@history.command()
@DB_OPTION
@_filter_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the site (index.html, series/, plotly.min.js); replaces a previous site.")
@click.option("--title", default="mnbench latency history", show_default=True)
def publish(db, model, target, threads, delegate, since, out_dir, title) -> None:
    """Write static trend pages: an index of series and one interactive page per series."""
    from ..history.db import open_db
    from ..history.site import publish as write_site
    from ..history.trends import analyse

    views = analyse(open_db(db, create=False), _selection(model, target, threads, delegate, since))
    index = write_site(views, out_dir, title)
    click.echo(f"{len(views)} series, {sum(len(v.steps) for v in views)} step(s): {index}")


@history.command()
@DB_OPTION
@_filter_options
@click.option("--threshold", type=Fraction(), default="5%", show_default=True,
              help="Exit 1 if an open step up is larger than this.")
@click.option("--json", "as_json", is_flag=True, help="Print the open steps as JSON.")
def regressions(db, model, target, threads, delegate, since, threshold, as_json) -> None:
    """List open steps up (regressions not undone since) and, where the commits around a step have op times,
    the operators that changed most; exit 1 if any step exceeds --threshold."""
    from ..history import RegressionsOpen
    from ..history.db import open_db
    from ..history.trends import analyse

    from device_bench.op_times import summary

    from ..history.operators import step_operators

    engine = open_db(db, create=False)
    views = analyse(engine, _selection(model, target, threads, delegate, since))
    found = [(view, step) for view in views for step in view.steps if step.open]
    over = [(view, step) for view, step in found if step.ratio > 1 + threshold]
    with engine.connect() as connection:
        operators = [step_operators(connection, view, step) for view, step in found]
    if as_json:
        echo_json([{"series": view.name, "target": view.info["target_label"], "page": view.page,
                    "exceeds_threshold": step.ratio > 1 + threshold, **step.as_dict(), "operators": changed}
                   for (view, step), changed in zip(found, operators)])
    else:
        click.echo(format_table(
            ["target", "series", "step", "interval", "commits", "first seen", "over"],
            [[view.info["target_label"], view.name, f"{(step.ratio - 1) * 100:+.1f} %",
              f"{(step.ci_low - 1) * 100:+.1f}..{(step.ci_high - 1) * 100:+.1f} %", step.commit_range,
              step.after_time, "yes" if step.ratio > 1 + threshold else ""] for view, step in found])
            if found else "no open regressions")
        for (view, step), changed in zip(found, operators):
            if changed:
                click.echo(f"operators that changed most, {view.name} at {step.commit_range}: "
                           f"{summary(changed)}")
    if over:
        raise RegressionsOpen(f"{len(over)} open step(s) above +{threshold:.0%}: " + ", ".join(
            f"{view.name} on {view.info['target_label']} {(step.ratio - 1) * 100:+.1f} % at "
            f"{step.commit_range}"
            for view, step in over[:3]) + (" ..." if len(over) > 3 else ""))
