"""Which operators a step of a series changed: the per-operator times of the commits on each side of it.

A step's operators compare the op times (:mod:`device_bench.op_times`) of the last commit before the step
that has them with those of the first commit after it that has them, each within the step's own segments
(never across another step); the rows of one commit are averaged.
"""

from __future__ import annotations

import sqlalchemy as sa

from device_bench import op_times as times

from .schema import op_times, results
from .steps import Step
from .trends import SeriesView


def by_commit(connection: sa.Connection, series_id: int) -> dict[str, list[dict]]:
    """``{commit: [op times of its ok rows]}`` of one series; commits labelled as ``series.points`` does."""
    query = (sa.select(results.c.git_commit, results.c.run_id, op_times.c.op_times)
             .join(op_times, op_times.c.result_id == results.c.result_id)
             .where(results.c.series_id == series_id, results.c.status == "ok"))
    found: dict[str, list[dict]] = {}
    for commit, run_id, value in connection.execute(query):
        found.setdefault(commit or f"run {run_id}", []).append(value)
    return found


def step_operators(connection: sa.Connection, view: SeriesView, step: Step) -> dict | None:
    """``op_times.changes`` across ``step`` of ``view``'s series, or None when a side has no op times."""
    found = by_commit(connection, int(view.info["series_id"]))
    if not found:
        return None
    bounds = [0, *(item.index for item in view.steps), len(view.points)]
    position = bounds.index(step.index)
    commits = list(view.points["commit"])
    before = [found[c] for c in reversed(commits[bounds[position - 1]:step.index]) if c in found]
    after = [found[c] for c in commits[step.index:bounds[position + 1]] if c in found]
    if not before or not after:
        return None
    try:
        return times.changes(before[0], after[0])
    except times.OpTimesError:  # one commit's rows mix profilers
        return None
