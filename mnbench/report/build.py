"""``mnbench report``: ``report.md`` and a self-contained ``report.html`` from result rows.

Sections: latency against Mult-Adds per target with the Pareto front (and the papers' view, published top-1
against measured latency), fp32 against int8 per version, thread scaling, and phone results beside the
MobileNetV3 paper's Pixel figures with both sets of conditions named. Tables come from :mod:`.tables`
(pure DataFrame functions), figures from :mod:`.figures`, output from :mod:`.render`.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Sequence

import pandas as pd

from . import ReportError, figures, paper, tables
from .render import Section, Table, formatted, to_html, to_markdown

__all__ = ["build_report", "sections"]


YES = {True: "yes", False: ""}
LATENCY_FORMATS = {"median_ms": "{:.3f}", "ci_low_ms": "{:.3f}", "ci_high_ms": "{:.3f}", "macs_m": "{:.1f}",
                   "params_m": "{:.2f}", "alpha": "{:g}"}


def build_report(frame: pd.DataFrame, out_dir: Path, title: str = "mnbench latency report",
                 sources: Sequence[str] = (), reference_dir: Path = paper.REFERENCE_DIR) -> list[Path]:
    """Writes ``report.md``, ``report.html`` and ``figures/*.png`` into ``out_dir``.

    Args:
        frame: rows in the results schema (``ResultStore.load``).
        out_dir: output folder (created).
        title: the report's title.
        sources: what the rows were loaded from, named in the report.
        reference_dir: folder of the papers' tables.

    Returns:
        The paths of report.md and report.html.

    Raises:
        ReportError: no rows, or the folder cannot be written.
    """
    if len(frame) == 0:
        raise ReportError(f"no result rows in {', '.join(map(str, sources)) or 'the sources'}")
    parts = sections(frame, reference_dir)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    named = ", ".join(f"`{source}`" for source in sources) or "results"
    intro = [f"Generated {stamp} by `mnbench report` from {named}: {len(frame)} rows, "
             f"{frame['run_id'].nunique()} runs. Latencies are medians of the timed runs; runs of a "
             "configuration with the same model file, runtime and mnbench version are combined (median of "
             "their medians); runs of other files or runtimes are left out."]
    out = Path(out_dir)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        for section in parts:
            for figure in section.figures:
                (out / "figures" / f"{figure.name}.png").write_bytes(figure.png)
        (out / "report.md").write_text(to_markdown(title, intro, parts), encoding="utf-8")
        (out / "report.html").write_text(to_html(title, intro, parts), encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot write the report to {out}: {error}") from None
    return [out / "report.md", out / "report.html"]


def sections(frame: pd.DataFrame, reference_dir: Path = paper.REFERENCE_DIR) -> list[Section]:
    """The report's sections, in order."""
    prepared = tables.prepare(frame)
    runs = tables.runs_table(frame)
    parts = [Section("Runs", tables=[Table("Runs in this report", formatted(runs, {}))])]
    if len(prepared) == 0:
        parts[0].text.append("No row ran successfully: nothing to plot.")
    else:
        parts += [_cost_section(prepared, reference_dir), _quant_section(prepared),
                  _threads_section(prepared), _phone_section(prepared, reference_dir)]
    failed = tables.failures(frame)
    if len(failed):
        failed_table = Table(f"{len(failed)} rows failed", formatted(failed, {}))
        parts.append(Section("Failed rows", tables=[failed_table]))
    return parts


def _cost_section(prepared: pd.DataFrame, reference_dir: Path) -> Section:
    table = tables.cost_latency(prepared)
    section = Section("Latency against Mult-Adds", text=[
        "One point per model and target. Mult-Adds stand in for capacity, as in the papers' plots of "
        "accuracy against Mult-Adds: a model is on the Pareto front when no other model on the same target "
        "and thread count is at least as fast with at least as many Mult-Adds. Models far off the front turn "
        "their Mult-Adds into time badly on this runtime (for example int8 h-swish without an XNNPACK "
        "kernel)."])
    section.figures += figures.cost_latency(table)
    section.tables.append(Table("Latency and cost", formatted(
        table.drop(columns=["target_key"]).assign(pareto=table["pareto"].map(YES)), LATENCY_FORMATS,
        {"target_label": "target", "macs_m": "Mult-Adds (M)", "params_m": "params (M)",
         "median_ms": "median ms", "ci_low_ms": "low", "ci_high_ms": "high"})))
    section.text.append("low/high: the 95 % interval of the median for a single run; the range of the run "
                        "medians when several runs of the same model file and runtime are combined (their "
                        "median is shown).")
    accuracy = tables.accuracy_latency(prepared, paper.published_top1(reference_dir))
    if len(accuracy):
        section.text.append("The papers plot accuracy against latency. Our exported models carry random "
                            "weights, so the accuracy below is the published top-1 of the same configuration "
                            "(source column), set against the latency measured here.")
        section.figures += figures.accuracy_latency(accuracy)
        shown = accuracy.drop(columns=["target_key"]).assign(pareto=accuracy["pareto"].map(YES))
        names = {"target_label": "target", "macs_m": "Mult-Adds (M)", "median_ms": "median ms",
                 "top1_pct": "top-1 %"}
        section.tables.append(Table("Published top-1 against measured latency", formatted(
            shown, {**LATENCY_FORMATS, "top1_pct": "{:.1f}"}, names)))
    return section


def _quant_section(prepared: pd.DataFrame) -> Section:
    table = tables.quant_speedup(prepared)
    section = Section("fp32 against int8")
    if not len(table):
        section.text.append("No configuration was measured both as fp32 and as int8 on one target.")
        return section
    section.text.append("int8 / fp32 below 1 means the int8 model is faster on that target and thread count.")
    section.figures += figures.quant_speedup(table)
    formats = {"fp32_ms": "{:.3f}", "int8_ms": "{:.3f}", "int8_over_fp32": "{:.2f}", "alpha": "{:g}"}
    names = {"target_label": "target", "fp32_ms": "fp32 ms", "int8_ms": "int8 ms",
             "int8_over_fp32": "int8 / fp32"}
    section.tables.append(Table("fp32 and int8 median latency", formatted(
        table.drop(columns=["target_key"]), formats, names)))
    return section


def _threads_section(prepared: pd.DataFrame) -> Section:
    table = tables.thread_scaling(prepared)
    section = Section("Thread scaling")
    if not len(table):
        section.text.append("No model was measured at more than one thread count on one target.")
        return section
    section.text.append("Speedup is the median at the fewest threads measured divided by the median at each "
                        "thread count; efficiency divides it by the ratio of thread counts.")
    section.figures += figures.thread_scaling(table)
    formats = {"median_ms": "{:.3f}", "speedup": "{:.2f}", "efficiency": "{:.0%}"}
    section.tables.append(Table("Latency by thread count", formatted(
        table.drop(columns=["target_key"]), formats, {"target_label": "target", "median_ms": "median ms"})))
    return section


def _phone_section(prepared: pd.DataFrame, reference_dir: Path) -> Section:
    section = Section("Phones against the MobileNetV3 paper")
    phones = prepared[prepared["target_kind"] == "android"]
    if not len(phones):
        section.text.append("No phone results in these sources (`mnbench device` measures phones).")
        return section
    table = tables.phone_vs_paper(prepared, paper.paper_latency(reference_dir))
    devices = ", ".join(sorted({f"{row.device or '?'} ({row.soc or 'SoC unknown'}, {row.target})"
                                for row in phones.itertuples()}))
    section.text += [f"Ours: {devices}; the conditions of each run are in the table.",
                     f"Paper: {paper.PAPER_CONDITIONS}. A phone that is a Pixel 1/2/3 is compared with its "
                     "own column (`same Pixel`); other phones are shown beside all three for scale only."]
    if not len(table):
        section.text.append("None of the phone results is a configuration the paper published "
                            "(V3-Large/Small 1.0 or 0.75, V2 1.0 or 0.35 at 224, fp32 or int8).")
        return section
    section.figures += figures.phone_vs_paper(table)
    section.tables.append(Table("Our phones beside the paper's Pixel latencies (ms)", formatted(
        table, {"median_ms": "{:.2f}", "pixel_ms": "{}", "ours_over_pixel": "{:.2f}"},
        {"target_label": "phone", "median_ms": "ours ms", "pixel1_ms": "paper P-1", "pixel2_ms": "paper P-2",
         "pixel3_ms": "paper P-3", "pixel_ms": "same Pixel", "ours_over_pixel": "ours / same Pixel"})))
    return section
