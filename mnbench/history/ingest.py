"""``mnbench history ingest``: result folders -> the history database, idempotently.

Runs are read with :class:`device_bench.store.ResultStore` (rows and raw samples exactly as the store
wrote them). A run is identified by its run id, which the store also uses as the run's folder name: a run
folder whose name is already in the history is skipped without being read, so ingesting a whole results
folder again costs seconds. With ``verify`` every run is read and its content (rows and samples, hashed at
the first ingest) compared, and a run edited since is refused. Each batch of runs is one transaction: an
interrupted ingest leaves every run either fully in or fully out.
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
from device_bench.store import ResultStore, StoreError, is_missing, row_key, utc_now

from . import HistoryError
from .schema import RESULT_COLUMNS, op_times, results, runs, samples, series

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
           verify: bool = False) -> IngestReport:
    """Loads every run under ``sources`` (results folders, run folders, rows.csv files or run ids).

    Args:
        engine: from :func:`mnbench.history.db.open_db`.
        sources: what ``ResultStore.load`` accepts.
        results_root: the store root in which run ids are looked up.
        verify: also read the runs already in the history and refuse any whose content changed.

    Raises:
        HistoryError: for missing or corrupt results, or a run id already ingested with other content.
    """
    store = ResultStore(results_root)
    folders = _run_sources(sources)
    with engine.connect() as connection:
        known = _known_runs(connection, [name for name in folders.values() if name])
    unread = 0 if verify else sum(1 for name in folders.values() if name in known)
    todo = [source for source, name in folders.items() if verify or name not in known]
    totals = [0, unread, 0, 0]
    for start in range(0, len(todo), BATCH_RUNS):
        batch = _load(store, todo[start:start + BATCH_RUNS])
        with engine.begin() as connection:
            counts = _ingest_batch(connection, batch, ", ".join(map(str, sources)))
        totals = [a + b for a, b in zip(totals, counts)]
    return IngestReport(*totals)


def _run_sources(sources: Sequence[str | Path]) -> dict[Path | str, str | None]:
    """Each source, with results folders split into their run folders: ``{source: run id or None}``."""
    out: dict[Path | str, str | None] = {}
    for source in sources:
        path = Path(source)
        if path.is_dir() and not (path / "rows.csv").is_file():  # a results folder: its runs, as the store
            found = [hit for name in ("rows.csv", "samples.json") for hit in path.rglob(name)]  # finds them
            runs = sorted({hit.parent for hit in found
                           if not any(part.startswith(".") for part in hit.relative_to(path).parts)})
            out.update({run: run.name for run in runs} if runs else {path: None})
        else:
            out[path if path.exists() else source] = path.name if path.is_dir() else None
    return out


def _known_runs(connection: sa.Connection, names: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(names), BATCH_RUNS):
        chunk = names[start:start + BATCH_RUNS]
        known.update(connection.execute(sa.select(runs.c.run_id).where(runs.c.run_id.in_(chunk))).scalars())
    return known


def _load(store: ResultStore, sources: list) -> dict[str, tuple[list[dict], dict[str, list[float]], dict]]:
    """``{run_id: (rows, samples, op times)}`` of the runs named by ``sources``."""
    try:
        by_run: dict[str, list[dict]] = {}
        for row in _records(store.load(*sources)):
            by_run.setdefault(row["run_id"], []).append(row)
        return {run_id: (rows, _samples(store, rows), _op_times(store, rows))
                for run_id, rows in by_run.items()}
    except StoreError as error:
        raise HistoryError(str(error)) from None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts of Python values, pandas' missing values as None."""
    return [{name: None if is_missing(value) else getattr(value, "item", lambda: value)()
             for name, value in record.items()} for record in frame.astype(object).to_dict("records")]


def _samples(store: ResultStore, rows: list[dict]) -> dict[str, list[float]]:
    return {row_key(row): store.load_samples(row) for row in rows if row["samples_file"] is not None}


def _op_times(store: ResultStore, rows: list[dict]) -> dict[str, dict]:
    return {row_key(row): found for row in rows if (found := store.load_op_times(row)) is not None}


def content_sha256(rows: list[dict], run_samples: dict[str, list[float]],
                   run_op_times: dict[str, dict] | None = None) -> str:
    """Digest of a run's rows (every column the store gave), samples and op times (a run without op times
    has the digest it had before the history kept them)."""
    text = json.dumps([rows, run_samples, *([run_op_times] if run_op_times else [])], sort_keys=True,
                      default=str)
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
         "row_count": len(rows)} for run_id, (rows, *_) in new.items()])
    rows = [row for rows, *_ in new.values() for row in rows]
    series_ids = _series_ids(connection, rows)
    records = [{**{name: row.get(name) for name, _ in RESULT_COLUMNS}, "run_id": row["run_id"],
                "row_key": row_key(row), "series_id": series_ids[series_key(row)],
                "row_json": json.dumps(row, sort_keys=True)} for row in rows]
    inserted = connection.execute(
        results.insert().returning(results.c.result_id, results.c.run_id, results.c.row_key,
                                   sort_by_parameter_order=True), records).all()
    sample_rows = [{"result_id": result_id, "latencies_us": new[run_id][1][key]}
                   for result_id, run_id, key in inserted if key in new[run_id][1]]
    if sample_rows:
        connection.execute(samples.insert(), sample_rows)
    op_rows = [{"result_id": result_id, "op_times": new[run_id][2][key]}
               for result_id, run_id, key in inserted if key in new[run_id][2]]
    if op_rows:
        connection.execute(op_times.insert(), op_rows)
    return len(new), len(known), len(records), len(sample_rows)


def series_fields(row: dict) -> dict[str, Any]:
    """The identity of a row's series (see :mod:`mnbench.history.schema`)."""
    return {"model_identity": model_identity(row), "model": row["model"], "version": row["version"],
            "quant": row["quant"], "target_identity": target_identity(row), "target_label": target_label(row),
            "target_kind": row["target_kind"], "threads": int(row["threads"]), "delegate": row["delegate"],
            "runtime": row["runtime"]}


def series_key(row: dict) -> str:
    fields = series_fields(row)
    identity = [fields[name]
                for name in ("model_identity", "target_identity", "threads", "delegate", "runtime")]
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
