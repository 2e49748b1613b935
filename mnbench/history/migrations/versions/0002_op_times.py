"""Per-operator times of a result row (``device_bench.op_times``), as the results store keeps them.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "op_times",
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.result_id"), primary_key=True),
        sa.Column("op_times", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("op_times")
