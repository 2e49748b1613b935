"""Opening the history database: a URL or a SQLite path, migrated to the newest schema on open.

Migrations are Alembic's (``migrations/versions/``), run in-process on the engine's own connection, with
no ``alembic.ini``: Alembic keeps the revision in ``alembic_version`` as every Alembic user expects, and its
batch mode rebuilds SQLite tables for the ALTERs that SQLite lacks. A database written by a newer mnbench
(a revision this one does not know) is refused rather than guessed at.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from . import HistoryError

DEFAULT_DB = Path("results/history.sqlite")
MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(db: str | Path | None) -> sa.URL:
    """``postgresql://...``, ``sqlite:///...`` or a plain file path (SQLite) -> a SQLAlchemy URL."""
    text = str(db or DEFAULT_DB)
    if "://" not in text:
        return sa.URL.create("sqlite", database=str(Path(text)))
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise HistoryError(f"--db: not a database URL or file path: {_safe(text)!r}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise HistoryError(f"--db: only sqlite and postgresql are supported, received "
                           f"{url.get_backend_name()!r}")
    return url


def open_db(db: str | Path | None = None, create: bool = True) -> sa.Engine:
    """An engine on the database, created (SQLite: with its folder) and migrated to the newest schema.

    With ``create=False`` (the commands that only read) a SQLite file that does not exist is an error, not a
    new empty database.

    Raises:
        HistoryError: if the database cannot be reached, is missing and not to be created, or holds a schema
            newer than this mnbench's.
    """
    url = database_url(db)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not create and not Path(url.database).is_file():
            raise HistoryError(f"no history database at {url.database}: `mnbench history ingest RESULTS` "
                               "creates it")
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            if MigrationContext.configure(connection).get_current_revision() != head_revision():
                _upgrade(connection)
    except sa.exc.SQLAlchemyError as error:
        raise HistoryError(f"cannot open history database {url.render_as_string()}: "
                           f"{_first_line(error)}") from None
    return engine


def _upgrade(connection: sa.Connection) -> None:
    config = _config()
    config.attributes["connection"] = connection
    current = MigrationContext.configure(connection).get_current_revision()
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if current is not None and current not in known:
        raise HistoryError(f"history database is at schema revision {current!r}, newer than this mnbench "
                           f"knows (head {head_revision()!r}); upgrade mnbench")
    command.upgrade(config, "head")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration's revision id."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def _safe(text: str) -> str:
    """A URL with its password masked, for messages."""
    try:
        return sa.make_url(text).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return text.split("@")[-1]
