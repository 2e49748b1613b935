"""Series from the history database: which series match a question, and one point per commit of each.

A point is a commit of one series: the median of its runs' medians (``avg_us`` for phone rows that have
no median), with an interval that covers every run's 95 % interval of the median (one run: that interval,
from the raw samples; several: from the lowest low to the highest high, so run-to-run spread shows).
Commits are in the order they were first measured (CI measures each commit after its parent); rows
without a commit are points of their own, labelled by run id. Failed rows are not points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from .schema import results, series

POINT_COLUMNS = ("commit", "first_time", "last_time", "median_us", "low_us", "high_us", "runs", "run_ids")


@dataclass(frozen=True)
class SeriesFilter:
    """Substrings (case-insensitive) and values that select series; None selects all."""

    model: str | None = None
    target: str | None = None
    threads: int | None = None
    delegate: str | None = None
    since: str | None = None  # ISO date or time: results measured at or after it

    def series_clause(self):
        clauses = []
        if self.model:
            clauses.append(sa.or_(series.c.model.icontains(self.model, autoescape=True),
                                  series.c.version.icontains(self.model, autoescape=True)))
        if self.target:
            clauses.append(series.c.target_label.icontains(self.target, autoescape=True))
        if self.threads is not None:
            clauses.append(series.c.threads == self.threads)
        if self.delegate:
            clauses.append(series.c.delegate == self.delegate)
        return sa.and_(sa.true(), *clauses)


def list_series(connection: sa.Connection, selected: SeriesFilter = SeriesFilter()) -> pd.DataFrame:
    """Matching series, one row each, ordered by target then model, threads, delegate, runtime."""
    query = (sa.select(series).where(selected.series_clause())
             .order_by(series.c.target_label, series.c.model, series.c.threads, series.c.delegate,
                       series.c.runtime))
    return pd.DataFrame(connection.execute(query).mappings().all(), columns=list(series.c.keys()))


def result_rows(connection: sa.Connection, selected: SeriesFilter = SeriesFilter(),
                status: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Result rows of the matching series (newest first) with their series' target label."""
    query = (sa.select(results, series.c.target_label).join(series)
             .where(selected.series_clause()).order_by(results.c.utc_time.desc(), results.c.result_id))
    if selected.since:
        query = query.where(results.c.utc_time >= selected.since)
    if status:
        query = query.where(results.c.status == status)
    if limit:
        query = query.limit(limit)
    rows = connection.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[*results.c.keys(), "target_label"])


def points(connection: sa.Connection, series_ids: list[int],
           since: str | None = None) -> dict[int, pd.DataFrame]:
    """``{series_id: points}``, one row per commit (``POINT_COLUMNS``), in commit order."""
    columns = [results.c.series_id, results.c.run_id, results.c.git_commit, results.c.utc_time,
               sa.func.coalesce(results.c.median_us, results.c.avg_us).label("value_us"),
               results.c.median_ci_low_us, results.c.median_ci_high_us]
    query = sa.select(*columns).where(results.c.status == "ok")
    if since:
        query = query.where(results.c.utc_time >= since)
    frames = []
    for start in range(0, len(series_ids), 500):
        chunk = query.where(results.c.series_id.in_(series_ids[start:start + 500]))
        frames.append(pd.DataFrame(connection.execute(chunk).all(), columns=[c.name for c in columns]))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[c.name for c in columns])
    rows = rows[rows["value_us"].notna()]
    return {int(series_id): per_commit(group) for series_id, group in rows.groupby("series_id")}


def per_commit(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of one series -> one point per commit, ordered by first measurement."""
    rows = rows.assign(commit=rows["git_commit"].fillna("run " + rows["run_id"].astype(str)),
                       low=rows["median_ci_low_us"].fillna(rows["value_us"]).astype(float),
                       high=rows["median_ci_high_us"].fillna(rows["value_us"]).astype(float))
    grouped = rows.sort_values(["utc_time", "run_id"]).groupby("commit", sort=False)
    out = pd.DataFrame({
        "first_time": grouped["utc_time"].min(), "last_time": grouped["utc_time"].max(),
        "median_us": grouped["value_us"].agg(lambda values: float(np.median(values.astype(float)))),
        "low_us": grouped["low"].min(), "high_us": grouped["high"].max(),
        "runs": grouped["run_id"].nunique(), "run_ids": grouped["run_id"].agg(lambda ids: sorted(set(ids))),
    }).reset_index()
    out = out.sort_values(["first_time", "commit"], kind="stable").reset_index(drop=True)
    return out[list(POINT_COLUMNS)]
