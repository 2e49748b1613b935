"""The history database's tables (SQLAlchemy Core); Alembic's migrations create exactly these.

* ``runs``: one row per ingested run folder; ``content_sha256`` makes ingest idempotent (the same run
  again is skipped, a different run under the same id is refused).
* ``series``: one row per (model, target, threads, delegate, runtime). ``series_key`` is the sha256 of
  that identity; the target part is :func:`device_bench.compare.target_identity`, the model part
  :func:`device_bench.compare.model_identity` (configuration + quantization + file name), so a series
  follows a model across commits while its file's sha256 changes, and never mixes two machines.
* ``results``: every column of the results store (``device_bench.store.COLUMNS``) plus ``row_key`` and
  ``series_id``. The columns are derived from the store's schema; a test checks that the migrations build
  the same tables, so a new store column fails the tests until a migration adds it.
* ``samples``: the raw per-run latencies of a result row, as a JSON list.
"""

from __future__ import annotations

import sqlalchemy as sa

from device_bench.store import COLUMNS, FLOAT, INT, STR

SQL_TYPES = {STR: sa.Text, INT: sa.BigInteger, FLOAT: sa.Float}
metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("ingested_at", sa.String(32), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
)

series = sa.Table(
    "series", metadata,
    sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("series_key", sa.String(64), nullable=False, unique=True),
    sa.Column("model_identity", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.Text),
    sa.Column("quant", sa.Text),
    sa.Column("target_identity", sa.Text, nullable=False),
    sa.Column("target_label", sa.Text, nullable=False),
    sa.Column("target_kind", sa.Text, nullable=False),
    sa.Column("threads", sa.Integer, nullable=False),
    sa.Column("delegate", sa.Text, nullable=False),
    sa.Column("runtime", sa.Text, nullable=False),
)

results = sa.Table(
    "results", metadata,
    sa.Column("result_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("row_key", sa.Text, nullable=False),
    sa.Column("series_id", sa.Integer, sa.ForeignKey("series.series_id"), nullable=False),
    *(sa.Column(name, SQL_TYPES[dtype]) for name, dtype in COLUMNS if name != "run_id"),
    sa.UniqueConstraint("run_id", "row_key", name="uq_results_run_row"),
    sa.Index("ix_results_series", "series_id", "utc_time"),
    sa.Index("ix_results_commit", "git_commit"),
)

samples = sa.Table(
    "samples", metadata,
    sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
    sa.Column("latencies_us", sa.JSON, nullable=False),
)
