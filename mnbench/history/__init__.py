"""Latency history across commits and targets (``mnbench history``), as asv and conbench keep it.

``ingest`` loads result folders (through :class:`device_bench.store.ResultStore`) into a database: one
SQLite file under ``results/`` by default, or a team's PostgreSQL (``--db postgresql://...``); the SQL is
SQLAlchemy Core and the schema is versioned with Alembic migrations (``migrations/``). ``series`` turns rows
into one point per commit for each series (model x target x threads x delegate x runtime; a series never
mixes machines), ``steps`` finds the change points, ``site`` writes the static trend pages.
"""

from mnbench.errors import MnbenchError, MnbenchFailure


class HistoryError(MnbenchError):
    """A database that cannot be opened or migrated, or results that contradict what it holds (exit 2)."""


class RegressionsOpen(MnbenchFailure):
    """``mnbench history regressions`` found open steps above the threshold (exit 1)."""
