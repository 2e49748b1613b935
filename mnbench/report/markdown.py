"""Markdown for pull-request comments and GitHub job summaries: comparisons, A/B results, tables.

Imports neither matplotlib nor TensorFlow, so ``mnbench compare`` and ``mnbench ab`` stay quick to start.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from device_bench.ab import ABResult
from device_bench.compare import Comparison

from . import ReportError

MARKS = {"regression": "🔴", "failed": "❌", "improvement": "🟢", "unchanged": "⚪", "noisy": "🟡"}
SINGLE_PROCESS_NOTE = ("Some pairs have one process per side: their intervals see the spread between runs "
                       "inside one process, not the larger spread between processes, so small differences "
                       "can be flagged that a repeat would not show. Bench each side three times (the "
                       "comparison then uses every process) or use `mnbench ab`.")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                   right: set[int] = frozenset()) -> str:
    """A GitHub Markdown table; ``right`` holds the indices of right-aligned columns; None shows as –."""
    def cell(value: Any) -> str:
        text = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    rule = ["---:" if index in right else "---" for index in range(len(headers))]
    lines = ["| " + " | ".join(map(cell, headers)) + " |", "| " + " | ".join(rule) + " |"]
    return "\n".join(lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows])


def single_process(comparison: Comparison) -> bool:
    """Whether a pair was judged from one process per side (sample-level interval only)."""
    pairs = comparison.pairs
    return bool(len(pairs)) and bool(((pairs["baseline_runs"] == 1) & (pairs["current_runs"] == 1)).any())


def comparison_markdown(comparison: Comparison, title: str = "Latency: current against baseline") -> str:
    """A section: verdict counts, the rule, provenance, one table row per pair, the rows left unpaired."""
    settings = comparison.settings
    counts = comparison.counts()
    summary = ", ".join(f"{MARKS[name]} {count} {name}" for name, count in counts.items() if count)
    lines = [f"### {title}", "", f"**{summary}** of {len(comparison.pairs)} pairs. Ratio = current / "
             f"baseline median; {settings.confidence:.0%} interval; regression when the whole interval is "
             f"above +{settings.threshold:.0%}, improvement when below -{settings.threshold:.0%}, noisy when "
             f"it is wider than {2 * settings.threshold:.0%}.", "", _provenance(comparison)]
    if single_process(comparison):
        lines += ["", f"⚠️ {SINGLE_PROCESS_NOTE}"]
    rows = [[f"{MARKS.get(p['verdict'], '')} {p['verdict']}", p["target"], f"`{p['model']}`", p["threads"],
             p["delegate"], _ms(p["baseline_median_us"]), _ms(p["current_median_us"]), _num(p["ratio"]),
             None if _missing(p["ci_low"]) else f"{p['ci_low']:.3f}–{p['ci_high']:.3f}", p["notes"]]
            for p in comparison.pairs.to_dict("records")]
    headers = ["verdict", "target", "model", "threads", "delegate", "baseline ms", "current ms", "ratio",
               "interval", "notes"]
    lines += ["", markdown_table(headers, rows, right={3, 5, 6, 7})]
    lines += operators_markdown(comparison)
    if len(comparison.unpaired):
        lines += ["", "<details><summary>Rows not compared</summary>", "",
                  markdown_table(list(comparison.unpaired.columns), comparison.unpaired.values.tolist()),
                  "", "</details>"]
    return "\n".join(lines) + "\n"


def operators_markdown(comparison: Comparison, shown: int = 5) -> list[str]:
    """Lines naming, for each pair that changed (or is undecided) and has per-operator times on both sides,
    the operator types and nodes whose time changed most."""
    lines = []
    for pair in comparison.pairs.to_dict("records"):
        if pair.get("operators") and pair["verdict"] != "unchanged":
            lines += changes_markdown(pair["operators"], f"`{pair['model']}`, {pair['threads']} thread(s), "
                                      f"{pair['delegate']}", pair["verdict"], shown)
    return lines


def changes_markdown(found: dict | None, what: str, verdict: str, shown: int = 5) -> list[str]:
    """Lines for one ``device_bench.op_times.changes`` result: a sentence and a table (types, then nodes)."""
    if not found:
        return []
    rows = [[kind, f"`{entry['name']}`" + (f" ({entry['type']})" if "type" in entry else ""),
             _ms(entry["baseline_us"]), _ms(entry["current_us"]), f"{entry['change_us'] / 1e3:+.3f}",
             None if entry["share"] is None else f"{entry['share']:.0%}"]
            for kind, key in (("type", "by_type"), ("node", "by_node")) for entry in found[key][:shown]]
    unmatched = f"; {found['nodes_unmatched']} node(s) found on one side only" if found["nodes_unmatched"] \
        else ""
    return ["", f"**Operators that changed most**: {what} ({MARKS.get(verdict, '')} {verdict}). "
                f"All operators {_ms(found['baseline_us'])} → {_ms(found['current_us'])} ms "
                f"({found['change_us'] / 1e3:+.3f} ms), per {found['source']}'s op profile{unmatched}.",
            "", markdown_table(["by", "operator", "baseline ms", "current ms", "change ms",
                                "share of change"], rows, right={2, 3, 4, 5})]


def ab_markdown(result: ABResult) -> str:
    """A section for one A/B test: verdict, ratio and interval, conditions, the rounds."""
    desc = result.target_desc
    where = result.target if result.target != "host" else \
        f"host ({desc.get('cpu')}, {desc.get('cores')} cores)"
    same = result.sha256_a is not None and result.sha256_a == result.sha256_b
    lines = [f"### A/B latency: `{result.model_b}` against `{result.model_a}`", "",
             f"{MARKS.get(result.verdict, '')} **{result.verdict}**: B/A = {result.ratio:.3f} "
             f"({result.confidence:.0%} interval {result.ci_low:.3f}–{result.ci_high:.3f}; threshold "
             f"±{result.threshold:.0%})", "",
             f"A: `{result.model_a}` (sha256 `{str(result.sha256_a)[:12]}`); B: `{result.model_b}` (sha256 "
             f"`{str(result.sha256_b)[:12]}`)" + (", the same file: an A/A test" if same else "") + ".", "",
             f"{len(result.rounds)} interleaved rounds (AB, BA, ...), each model in a fresh process per "
             f"round; {where}, {result.runtime}, {result.threads} thread(s), {result.delegate}.", ""]
    rows = [[item.index, item.order, _ms(item.a_median_us), _ms(item.b_median_us), _num(item.ratio)]
            for item in result.rounds]
    lines.append(markdown_table(["round", "order", "A median ms", "B median ms", "B/A"], rows,
                                right={0, 2, 3, 4}))
    return "\n".join(lines) + "\n"


def gate_markdown(result) -> str:
    """A section for one interleaved A/B test (``device_bench.interleave.GateResult``)."""
    desc = result.target_desc
    where = result.target if result.target != "host" else \
        f"host ({desc.get('cpu')}, {desc.get('cores')} cores)"
    same = result.sha256_a is not None and result.sha256_a == result.sha256_b
    within = result.within_process
    lines = [f"### A/B latency: `{result.model_b}` against `{result.model_a}`", "",
             f"{MARKS.get(result.verdict, '')} **{result.verdict}**: B/A = {result.ratio:.3f} "
             f"({result.confidence:.0%} sequential interval {result.ci_low:.3f}–{result.ci_high:.3f}; "
             f"threshold ±{result.threshold:.0%})" + (f". Why noisy: {result.why}" if result.why else ""), "",
             f"A: `{result.model_a}` (sha256 `{str(result.sha256_a)[:12]}`); B: `{result.model_b}` (sha256 "
             f"`{str(result.sha256_b)[:12]}`)" + (", the same file: an A/A test" if same else "") + ".", "",
             f"{len(result.processes)} fresh processes in {result.seconds:.0f} s (budget "
             f"{result.max_secs:.0f} s), A and B alternated at random inside each; {where}, "
             f"{result.runtime}, {result.threads} thread(s), {result.delegate}. Between processes B/A "
             f"varies by "
             f"{result.spread:.1%}; inside them (all {within['pairs']} pairs pooled, which ignores that) "
             f"B/A = {within['ratio']:.3f}.", ""]
    rows = [[item.index, item.pairs, _ms(item.a_median_us), _ms(item.b_median_us), _num(item.ratio),
             f"{item.seconds:.1f}", item.heavy or ""] for item in result.processes]
    lines.append(markdown_table(["process", "pairs", "A median ms", "B median ms", "B/A", "s", "heavy load"],
                                rows, right={0, 1, 2, 3, 4, 5}))
    return "\n".join(lines) + "\n"


def append_step_summary(text: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Appends ``text`` to the file named by ``$GITHUB_STEP_SUMMARY``; returns it, or None when unset.

    Raises:
        ReportError: the variable is set but the file cannot be written.
    """
    name = environ.get("GITHUB_STEP_SUMMARY")
    if not name:
        return None
    try:
        with open(name, "a", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
    except OSError as error:
        raise ReportError(f"cannot append to $GITHUB_STEP_SUMMARY ({name}): {error}") from None
    return Path(name)


def _provenance(comparison: Comparison) -> str:
    def describe(runs: list[dict]) -> str:
        commits = sorted({(run["git_commit"] or "?")[:12] for run in runs})
        dates = sorted(run["utc_time"][:10] for run in runs if run["utc_time"])
        span = (dates[0] + (f"..{dates[-1]}" if dates[-1] != dates[0] else "")) if dates else "?"
        return f"{len(runs)} run(s), commit {', '.join(commits)}, {span}"

    return f"Baseline: {describe(comparison.baseline_runs)}. Current: {describe(comparison.current_runs)}."


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ms(value: float | None) -> str | None:
    return None if _missing(value) else f"{value / 1e3:.3f}"


def _num(value: float | None) -> str | None:
    return None if _missing(value) else f"{value:.3f}"
