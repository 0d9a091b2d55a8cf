"""Opening the database and bringing its schema up to date.

SQLite is the default: one file in dockyard's home, in WAL mode so readers never wait for the writer.
Every write transaction starts with `BEGIN IMMEDIATE`, taking SQLite's write lock up front; with the
busy timeout, concurrent writers queue instead of failing with "database is locked" half-way through
a read-then-write (which is how version numbers would otherwise collide). Read-only transactions,
marked with the `READONLY` execution option, begin deferred and run beside the writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session

from dockyard.domain.errors import InsufficientStorage

_MIGRATIONS = Path(__file__).with_name("migrations")

# sqlite3's code for "database or disk is full".
_SQLITE_FULL = 13

# Execution option for transactions that only read: they begin deferred and never wait for writers.
READONLY = "dockyard_readonly"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def open_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get(READONLY, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        # A full disk is the operator's to fix, not a bug: answer it as such (SQLite rolls the write back, the
        # database stays whole, and the same call succeeds once there is space again).
        if getattr(context.original_exception, "sqlite_errorcode", None) == _SQLITE_FULL:
            raise InsufficientStorage(
                f"The disk that holds dockyard's database ({url.removeprefix('sqlite:///')}) is full, so nothing "
                "could be saved. Free some space on it (dockyard prune, or delete versions and sessions you no "
                "longer need) and try again.") from None

    return engine


def migrate(engine: Engine) -> None:
    """Apply every migration the database has not seen yet. Safe to call on each start."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        driver: Any = connection.connection.driver_connection  # the DB-API connection (sqlite3's)
        if sqlite:
            # SQLite rebuilds a table to alter it; with foreign keys on, dropping the old copy would
            # cascade-delete every row that points at it. The pragma only works outside a transaction.
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            if sqlite:
                driver.execute("PRAGMA foreign_keys=ON")


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched: Session.execute types every result as a plain Result,
    though for those statements it is a CursorResult, which has the count."""
    return cast("CursorResult[Any]", result).rowcount


class Repository:
    """Base of the stores: write transactions take the write lock up front, reads run beside them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reader = engine.execution_options(**{READONLY: True})
        # Counts this process's committed writes, so a cache of what it read can tell it is stale
        # without asking the database (writes by other replicas are the cache's time limit's job).
        self.generation = 0

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session
        self.generation += 1

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            yield session
