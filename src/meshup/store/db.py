"""Engines, transactions and schema migration for SQLite and PostgreSQL with the same code.

SQLite: one file in WAL mode; writers take the lock up front (``BEGIN IMMEDIATE``) so two writers
never deadlock on a lock upgrade, and readers use deferred transactions (a consistent snapshot that
never blocks writers). PostgreSQL: one pooled engine for both.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from meshup.errors import Unavailable
from meshup.store.revisions import head_revision

WRITE_WAIT_SECONDS = 30.0  # SQLite: how long a writer waits for the write lock, then "database is locked"
WRITE_POLL_MS = 1
PING_AFTER_IDLE_SECONDS = 1.0  # PostgreSQL: a pooled connection idle longer is checked before use
MIGRATION_LOCK_ID = 0x6D657368  # "mesh": PostgreSQL advisory lock serialising start-up migrations


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # The driver's own error base class: raw-connection users catch it (store.hot).
        self.driver_errors: type[Exception] = sqlite3.Error if self.is_sqlite else _psycopg_error()
        if self.is_sqlite:
            _create_private(sqlite_path(self.url))
            self.write_engine = self._sqlite_engine(immediate=True)
            self.read_engine = self._sqlite_engine(immediate=False)
        else:
            self.write_engine = create_engine(self.url, pool_size=pool_size, max_overflow=pool_size)
            _ping_when_idle(self.write_engine)
            # Reads are read-only transactions that end with COMMIT: after a ROLLBACK psycopg
            # forgets every statement it prepared on the connection (and sends DEALLOCATE ALL).
            self.read_engine = self.write_engine.execution_options(postgresql_readonly=True)

    def _sqlite_engine(self, *, immediate: bool) -> Engine:
        engine = create_engine(
            self.url,
            connect_args={"timeout": 30, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL" if not immediate else "PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Writers wait for the write lock in _on_begin, a millisecond at a time (see there).
            cursor.execute(f"PRAGMA busy_timeout={WRITE_POLL_MS if immediate else 30000}")
            cursor.close()

        # pysqlite's own transaction handling is off (isolation_level=None); we emit BEGIN ourselves.
        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if not immediate:
                conn.exec_driver_sql("BEGIN")
                return
            # SQLite's own wait backs off to 100 ms sleeps, so a writer that has waited a while
            # keeps losing the lock to writers that just asked (the engine, one commit after
            # another), and the lock lies idle while waiters sleep. Every writer asks again each
            # millisecond instead: the lock goes to whoever asks first after it is free.
            deadline = time.monotonic() + WRITE_WAIT_SECONDS
            while True:
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                        raise

        return engine

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (SQLite: rolled back at the end; PostgreSQL: a READ ONLY
        transaction, committed)."""
        try:
            with self.read_engine.connect() as conn:
                yield conn
                if self.is_sqlite:
                    conn.rollback()
                else:
                    conn.commit()
        except (OperationalError, DBAPIError) as exc:
            if _is_unavailable(exc):
                raise Unavailable("the database is unreachable right now; retry shortly") from exc
            raise

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One unit of work: committed when the block ends, rolled back on any error."""
        try:
            with self.write_engine.begin() as conn:
                yield conn
        except (OperationalError, DBAPIError) as exc:
            if _is_unavailable(exc):
                raise Unavailable("the database is unreachable right now; retry shortly") from exc
            raise

    def ping(self) -> bool:
        try:
            with self.read_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                conn.rollback()
            return True
        except Exception:
            return False

    def at_head(self) -> bool:
        """Whether the stored schema revision is the newest one: one cheap read, no Alembic.

        A migration in progress elsewhere commits its DDL and the new revision together, so until
        it ends this reads the old revision and the caller queues up behind it in ``migrate``."""
        head = head_revision()
        if head is None:
            return False
        try:
            with self.read_engine.connect() as conn:
                stored = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
                conn.rollback()
        except DBAPIError:  # no table yet (a new database), or unreachable: Alembic's path reports it
            return False
        return stored == [head]

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several processes start at once."""
        if self.at_head():
            return
        # Imported here: Alembic (with Mako and Pygments) is a tenth of a second of every start.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", "meshup.store:migrations")
        with self.write_engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
                conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
                    conn.commit()

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def _ping_when_idle(engine: Engine) -> None:
    """PostgreSQL: check a pooled connection before use only if it has been idle a while. A ping
    before every use (``pool_pre_ping``) is a round trip per transaction; a connection used within
    the last second and broken since fails its statement instead, which answers 503 like any
    connection lost mid-request, and the pool then replaces its older connections."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("connection lost while idle in the pool") from exc


def _create_private(path: Path | None) -> None:
    """A new SQLite file holds password hashes and sealed keys: readable by its owner only
    (SQLite gives the -wal and -shm files the same mode)."""
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):  # another process created it first
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _psycopg_error() -> type[Exception]:
    import psycopg

    return psycopg.Error


def _is_unavailable(exc: Any) -> bool:
    """Connection-level failures (server down, socket gone, database locked too long)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    message = str(getattr(exc, "orig", exc)).lower()
    markers = ("connection", "could not connect", "server closed", "database is locked", "terminating")
    return any(marker in message for marker in markers)
