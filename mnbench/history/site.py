"""``mnbench history publish``: a static site of trend pages, asv-style, that works offline.

``index.html`` lists the series one section per target (the same-hardware rule: a series, a plot and a
section never mix machines), each with an inline-SVG sparkline and its latest change. ``series/<key>.html``
draws one series with plotly: the median per commit with its interval, in commit order, the step fit, and a
marked line at each step; hover shows the commit, date, runs and run ids. plotly.js is written once, as
``plotly.min.js`` beside the pages, so the site needs no network. The site is built in a temporary folder
and moved into place, so an interrupted publish leaves the previous site whole.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import HistoryError
from .steps import Step, fitted_levels
from .trends import SeriesView

PLOTLY_JS = "plotly.min.js"
NO_CHANGE = "<span class=muted>none</span>"
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}.regression{color:#b00020}
.improvement{color:#006b2d}.muted{color:#777}h2{margin-top:1.6em}svg.spark{display:block}"""


def publish(views: list[SeriesView], out: Path, title: str) -> Path:
    """Writes the site to ``out`` (replacing a previous site there) and returns the index path."""
    out = Path(out)
    if out.exists() and not (out / "index.html").is_file() and any(out.iterdir()):
        raise HistoryError(f"--out {out} is a non-empty folder without a published site; "
                           "refusing to replace it")
    from plotly.offline import get_plotlyjs

    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (build / "series").mkdir()
        (build / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
        for view in views:
            (build / view.page).write_text(series_page(view, title), encoding="utf-8")
        (build / "index.html").write_text(index_page(views, title), encoding="utf-8")
        _replace(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out / "index.html"


def _replace(build: Path, out: Path) -> None:
    """Moves the built site to ``out``; the old one is removed only once the new one is in place."""
    os.chmod(build, 0o755)
    old = out.with_name(f".{out.name}-old-{os.getpid()}")
    if out.exists():
        os.rename(out, old)
    os.rename(build, out)
    shutil.rmtree(old, ignore_errors=True)


def index_page(views: list[SeriesView], title: str) -> str:
    sections = []
    for target, group in _by_target(views).items():
        rows = "".join(_index_row(view) for view in group)
        sections.append(f"<h2>{html.escape(target)}</h2>\n<table class=\"series-table\"><tr><th>model</th>"
                        "<th>threads</th><th>delegate</th><th>runtime</th><th>commits</th>"
                        "<th class=num>latest ms</th><th>trend</th><th>latest change</th></tr>"
                        f"{rows}</table>")
    body = "\n".join(sections) or "<p>No series yet: run <code>mnbench history ingest</code> first.</p>"
    return _page(title, f"<h1>{html.escape(title)}</h1><p class=muted>{len(views)} series; one section per "
                 "machine (series never mix machines). Steps are change points in each series' medians."
                 f"</p>\n{body}", script="")


def _by_target(views: list[SeriesView]) -> dict[str, list[SeriesView]]:
    groups: dict[str, list[SeriesView]] = {}
    for view in views:
        groups.setdefault(view.info["target_label"], []).append(view)
    return groups


def _index_row(view: SeriesView) -> str:
    info, latest = view.info, view.points.iloc[-1]
    return (f"<tr class=\"series\" data-series=\"{view.info['series_key'][:16]}\">"
            f"<td><a href=\"{view.page}\">{html.escape(info['model'])}</a></td><td>{info['threads']}</td>"
            f"<td>{html.escape(info['delegate'])}</td><td>{html.escape(info['runtime'])}</td>"
            f"<td class=num>{len(view.points)}</td><td class=num>{latest['median_us'] / 1000:.3f}</td>"
            f"<td>{sparkline(view.points['median_us'].to_numpy(dtype=float), view.steps)}</td>"
            f"<td>{_change_text(view.steps[-1]) if view.steps else NO_CHANGE}</td></tr>")


def _change_text(step: Step) -> str:
    kind = "regression" if step.regression else "improvement"
    state = " (open)" if step.open else ""
    return (f"<span class=\"{kind} step\">{_percent(step.ratio)} [{_percent(step.ci_low)}, "
            f"{_percent(step.ci_high)}]{state}</span> at <code>{html.escape(step.commit_range)}</code>, "
            f"{html.escape(step.after_time[:10])}")


def _percent(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f} %"


def sparkline(values_us: np.ndarray, steps: list[Step], width: int = 140, height: int = 28) -> str:
    """An inline SVG polyline of the medians (log scale) with a red tick at each step up."""
    logs = np.log(values_us)
    span = float(logs.max() - logs.min()) or 1.0
    xs = np.linspace(2, width - 2, len(logs)) if len(logs) > 1 else np.array([width / 2])
    ys = height - 2 - (logs - logs.min()) / span * (height - 4)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    ticks = "".join(f"<line x1=\"{xs[s.index]:.1f}\" x2=\"{xs[s.index]:.1f}\" y1=\"0\" y2=\"{height}\" "
                    f"stroke=\"{'#b00020' if s.regression else '#006b2d'}\" stroke-dasharray=\"2,2\"/>"
                    for s in steps)
    return (f"<svg class=\"spark\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
            f"{ticks}<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" "
            f"points=\"{line}\"/></svg>")


def series_page(view: SeriesView, title: str) -> str:
    info = view.info
    figure = series_figure(view).to_html(full_html=False, include_plotlyjs=False, div_id="plot",
                                         config={"displaylogo": False, "responsive": True})
    steps = "".join(
        f"<tr class=\"step\"><td class=\"{'regression' if s.regression else 'improvement'}\">"
        f"{_percent(s.ratio)}</td><td>{_percent(s.ci_low)} to {_percent(s.ci_high)}</td>"
        f"<td><code>{html.escape(s.before_commit)}..{html.escape(s.after_commit)}</code></td>"
        f"<td>{html.escape(s.after_time)}</td>"
        f"<td class=num>{s.before_us / 1000:.3f} → {s.after_us / 1000:.3f}</td>"
        f"<td>{'open' if s.open else ''}</td></tr>" for s in view.steps)
    step_table = (f"<table><tr><th>step</th><th>95 % interval</th><th>commit range</th><th>first seen</th>"
                  f"<th class=num>ms</th><th></th></tr>{steps}</table>" if steps else
                  "<p class=muted>No steps: the series is level within its noise.</p>")
    facts = (f"<p>{html.escape(info['target_label'])} · {info['threads']} thread(s) · "
             f"{html.escape(info['delegate'])} · {html.escape(info['runtime'])} · {len(view.points)} commits"
             f"</p><p class=muted>model identity: <code>{html.escape(info['model_identity'])}</code></p>")
    body = (f"<p><a href=\"../index.html\">← all series</a></p><h1>{html.escape(view.name)}</h1>{facts}"
            f"{figure}<h2>Steps</h2>{step_table}")
    return _page(f"{view.name} — {title}", body, script=f"<script src=\"../{PLOTLY_JS}\"></script>")


def series_figure(view: SeriesView):
    """The plotly figure of one series: medians with intervals, the step fit, the steps marked."""
    import plotly.graph_objects as go

    points = view.points
    x = np.arange(len(points))
    ms = points["median_us"].to_numpy(dtype=float) / 1000
    hover = [f"commit {commit}<br>{first}<br>median {median:.3f} ms [{low / 1000:.3f}, {high / 1000:.3f}]"
             f"<br>{runs} run(s): {', '.join(run_ids[:3])}{' ...' if len(run_ids) > 3 else ''}"
             for commit, first, median, low, high, runs, run_ids in zip(
                 points["commit"], points["first_time"], ms, points["low_us"], points["high_us"],
                 points["runs"], points["run_ids"])]
    figure = go.Figure()
    figure.add_trace(go.Scatter(
        x=x, y=ms, mode="markers", name="median per commit", text=hover, hoverinfo="text",
        error_y={"type": "data", "symmetric": False, "array": points["high_us"] / 1000 - ms,
                 "arrayminus": ms - points["low_us"] / 1000, "thickness": 1}))
    figure.add_trace(go.Scatter(x=x, y=fitted_levels(points, view.steps) / 1000, mode="lines",
                                line={"shape": "hvh", "color": "#ff7f0e"}, name="step fit", hoverinfo="skip"))
    for step in view.steps:
        figure.add_vline(x=step.index - 0.5, line_dash="dash", line_color="#b00020" if step.regression else
                         "#006b2d", annotation_text=_percent(step.ratio), annotation_position="top")
    ticks = x[:: max(1, len(x) // 12)]
    figure.update_layout(
        height=460, margin={"l": 60, "r": 20, "t": 40, "b": 80}, hovermode="closest",
        yaxis_title="median latency (ms)", xaxis_title="commit (in the order measured)",
        xaxis={"tickmode": "array", "tickvals": ticks, "ticktext": [str(points["commit"].iat[i])[:8]
                                                                    for i in ticks]},
        legend={"orientation": "h", "y": 1.1})
    return figure


def _page(title: str, body: str, script: str) -> str:
    return (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style>{script}</head><body>{body}</body></html>\n")
