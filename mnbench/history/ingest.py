"""``mnbench history ingest``: result folders -> the history database, idempotently.

Runs are read with :class:`device_bench.store.ResultStore` (rows and raw samples exactly as the store
wrote them). A run is identified by its run id; its content (rows and samples) is hashed, so ingesting
the same run again is a no-op, and a different run under an already ingested id is refused. Each batch of
runs is one transaction: an interrupted ingest leaves every run either fully in or fully out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import sqlalchemy as sa

from device_bench.compare import model_identity, target_identity, target_label
from device_bench.store import COLUMN_NAMES, ResultStore, StoreError, is_missing, row_key, utc_now

from . import HistoryError
from .schema import results, runs, samples, series

BATCH_RUNS = 500  # runs per transaction (and per IN (...) lookup)
SERIES_FIELDS = ("model_identity", "model", "version", "quant", "target_identity", "target_label",
                 "target_kind", "threads", "delegate", "runtime")


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did: runs added and skipped (already present), rows and sample lists added."""

    runs_added: int
    runs_skipped: int
    rows_added: int
    samples_added: int


def ingest(engine: sa.Engine, sources: Sequence[str | Path], results_root: Path | str = "results/runs",
           on_batch=None) -> IngestReport:
    """Loads every run under ``sources`` (results folders, run folders, rows.csv files or run ids).

    Args:
        engine: from :func:`mnbench.history.db.open_db`.
        sources: what ``ResultStore.load`` accepts.
        results_root: the store root in which run ids are looked up.
        on_batch: optional callback ``(runs done, runs total)`` after each transaction.

    Raises:
        HistoryError: for missing or corrupt results, or a run id already ingested with other content.
    """
    store = ResultStore(results_root)
    try:
        frame = store.load(*sources)
        by_run = {run_id: _clean(group) for run_id, group in frame.groupby("run_id", sort=False)}
        loaded = {run_id: (rows, _samples(store, rows)) for run_id, rows in by_run.items()}
    except StoreError as error:
        raise HistoryError(str(error)) from None
    source_text = ", ".join(map(str, sources))
    totals = [0, 0, 0, 0]
    run_ids = list(loaded)
    for start in range(0, len(run_ids), BATCH_RUNS):
        batch = {run_id: loaded[run_id] for run_id in run_ids[start:start + BATCH_RUNS]}
        with engine.begin() as connection:
            counts = _ingest_batch(connection, batch, source_text)
        totals = [a + b for a, b in zip(totals, counts)]
        if on_batch:
            on_batch(min(start + BATCH_RUNS, len(run_ids)), len(run_ids))
    return IngestReport(*totals)


def _clean(group: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts, pandas' missing values as None."""
    return [{name: None if is_missing(value) else getattr(value, "item", lambda: value)()
             for name, value in record.items()} for record in group.astype(object).to_dict("records")]


def _samples(store: ResultStore, rows: list[dict]) -> dict[str, list[float]]:
    return {row_key(row): store.load_samples(row) for row in rows if row["samples_file"] is not None}


def content_sha256(rows: list[dict], run_samples: dict[str, list[float]]) -> str:
    """Digest of a run's rows (in the store's column order) and samples."""
    text = json.dumps([[[row[name] for name in COLUMN_NAMES] for row in rows], run_samples],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _ingest_batch(connection: sa.Connection, batch: dict, source: str) -> tuple[int, int, int, int]:
    digests = {run_id: content_sha256(*loaded) for run_id, loaded in batch.items()}
    known = dict(connection.execute(sa.select(runs.c.run_id, runs.c.content_sha256)
                                    .where(runs.c.run_id.in_(list(batch)))).all())
    for run_id, digest in known.items():
        if digest != digests[run_id]:
            raise HistoryError(f"run {run_id!r} is already in the history with other content; runs are "
                               "append-only, so one of the two copies was edited")
    new = {run_id: loaded for run_id, loaded in batch.items() if run_id not in known}
    if not new:
        return 0, len(known), 0, 0
    now = utc_now()
    connection.execute(runs.insert(), [
        {"run_id": run_id, "content_sha256": digests[run_id], "source": source, "ingested_at": now,
         "row_count": len(rows)} for run_id, (rows, _) in new.items()])
    rows = [row for rows, _ in new.values() for row in rows]
    series_ids = _series_ids(connection, rows)
    records = [{**{name: row[name] for name in COLUMN_NAMES}, "row_key": row_key(row),
                "series_id": series_ids[series_key(row)]} for row in rows]
    inserted = connection.execute(
        results.insert().returning(results.c.result_id, results.c.run_id, results.c.row_key,
                                   sort_by_parameter_order=True), records).all()
    sample_rows = [{"result_id": result_id, "latencies_us": new[run_id][1][key]}
                   for result_id, run_id, key in inserted if key in new[run_id][1]]
    if sample_rows:
        connection.execute(samples.insert(), sample_rows)
    return len(new), len(known), len(records), len(sample_rows)


def series_fields(row: dict) -> dict[str, Any]:
    """The identity of a row's series (see :mod:`mnbench.history.schema`)."""
    return {"model_identity": model_identity(row), "model": row["model"], "version": row["version"],
            "quant": row["quant"], "target_identity": target_identity(row), "target_label": target_label(row),
            "target_kind": row["target_kind"], "threads": int(row["threads"]), "delegate": row["delegate"],
            "runtime": row["runtime"]}


def series_key(row: dict) -> str:
    fields = series_fields(row)
    identity = [fields[name] for name in ("model_identity", "target_identity", "threads", "delegate", "runtime")]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def _series_ids(connection: sa.Connection, rows: Iterable[dict]) -> dict[str, int]:
    """series_key -> series_id for the rows' series, inserting the new ones."""
    wanted = {series_key(row): row for row in rows}
    ids = _known_series(connection, wanted)
    missing = [{"series_key": key, **series_fields(row)} for key, row in wanted.items() if key not in ids]
    if missing:
        connection.execute(series.insert(), missing)
        ids.update(_known_series(connection, {row["series_key"]: None for row in missing}))
    return ids


def _known_series(connection: sa.Connection, keys: Iterable[str]) -> dict[str, int]:
    query = sa.select(series.c.series_key, series.c.series_id).where(series.c.series_key.in_(list(keys)))
    return dict(connection.execute(query).all())
