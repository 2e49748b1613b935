"""The history database's tables (SQLAlchemy Core); Alembic's migrations create exactly these.

* ``runs``: one row per ingested run folder; ``content_sha256`` makes ingest idempotent (the same run
  again is skipped, a different run under the same id is refused).
* ``series``: one row per (model, target, threads, delegate, runtime). ``series_key`` is the sha256 of
  that identity; the target part is :func:`device_bench.compare.target_identity`, the model part
  :func:`device_bench.compare.model_identity` (configuration + quantization + file name), so a series
  follows a model across commits while its file's sha256 changes, and never mixes two machines.
* ``results``: the results store's columns as of this schema (``RESULT_COLUMNS``, typed, for queries) plus
  ``row_key``, ``series_id`` and ``row_json``, the complete row as the store gave it, so a column the store
  gains later is kept too (a migration can promote it to a typed column). A test checks that the
  migrations build exactly these tables.
* ``samples``: the raw per-run latencies of a result row, as a JSON list.
* ``op_times``: a result row's per-operator times (:mod:`device_bench.op_times`), when its run has them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
RESULT_COLUMNS = (  # (name, type): the results store's columns after run_id, as of migration 0001
    ("utc_time", sa.Text), ("mnbench_version", sa.Text), ("git_commit", sa.Text), ("target", sa.Text),
    ("target_kind", sa.Text), ("target_desc", sa.Text), ("runtime", sa.Text), ("model", sa.Text),
    ("model_sha256", sa.Text), ("version", sa.Text), ("alpha", sa.Float), ("resolution", sa.BigInteger),
    ("quant", sa.Text), ("config", sa.Text), ("params", sa.BigInteger), ("macs", sa.BigInteger),
    ("threads", sa.BigInteger), ("delegate", sa.Text), ("status", sa.Text), ("error", sa.Text),
    ("count", sa.BigInteger), ("init_us", sa.Float), ("first_us", sa.Float), ("warmup_avg_us", sa.Float),
    ("mean_us", sa.Float), ("avg_us", sa.Float), ("std_us", sa.Float), ("min_us", sa.Float),
    ("max_us", sa.Float), ("median_us", sa.Float), ("p90_us", sa.Float), ("p99_us", sa.Float),
    ("median_ci_low_us", sa.Float), ("median_ci_high_us", sa.Float), ("cv", sa.Float),
    ("mem_peak_mb", sa.Float), ("mem_init_mb", sa.Float), ("mem_overall_mb", sa.Float),
    ("samples_file", sa.Text),
)

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
    *(sa.Column(name, kind) for name, kind in RESULT_COLUMNS),
    sa.Column("row_json", sa.Text, nullable=False),
    sa.UniqueConstraint("run_id", "row_key", name="uq_results_run_row"),
    sa.Index("ix_results_series", "series_id", "utc_time"),
    sa.Index("ix_results_commit", "git_commit"),
)

samples = sa.Table(
    "samples", metadata,
    sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
    sa.Column("latencies_us", sa.JSON, nullable=False),
)

op_times = sa.Table(
    "op_times", metadata,
    sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
    sa.Column("op_times", sa.JSON, nullable=False),
)
