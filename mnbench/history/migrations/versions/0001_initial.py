"""The first history schema: runs, series, results (the store's columns of 2026-11 and the whole row as
JSON), samples.

A migration is a snapshot: it spells its columns out instead of importing them from ``schema.py``, which
will change after it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RESULT_COLUMNS = (  # (name, type) after run_id, in the results store's order
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


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("ingested_at", sa.String(32), nullable=False),
        sa.Column("row_count", sa.Integer, nullable=False),
    )
    op.create_table(
        "series",
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
    op.create_table(
        "results",
        sa.Column("result_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("row_key", sa.Text, nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.series_id"), nullable=False),
        *(sa.Column(name, kind) for name, kind in RESULT_COLUMNS),
        sa.Column("row_json", sa.Text, nullable=False),
        sa.UniqueConstraint("run_id", "row_key", name="uq_results_run_row"),
    )
    op.create_index("ix_results_series", "results", ["series_id", "utc_time"])
    op.create_index("ix_results_commit", "results", ["git_commit"])
    op.create_table(
        "samples",
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
        sa.Column("latencies_us", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in ("samples", "results", "series", "runs"):
        op.drop_table(table)
