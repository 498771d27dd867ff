"""The mesh-job read on the hot path: raw driver connections, one statement per question.

This is the request every client polls, so it skips the ORM layers (the rest of meshup uses
SQLAlchemy Core) and asks two things: the IAM epoch (before authentication, so this process's
credential caches can be trusted) and, once the caller is known, the mesh and every node of the
job's tree, with timestamps formatted without building datetimes (``meshup.timefmt``).
Connections run in autocommit mode, so each statement is its own snapshot.

SQLite is read inline on the event loop: both reads of a 5-node tree cost about 30 µs of CPU
and never wait (WAL readers take no lock), while a hand-off to a thread alone costs about 50 µs
(bench/hot_read.py). PostgreSQL is read through a small pool of asynchronous connections, so the
event loop serves other requests while a query is on the wire; requests asking the same question
while no query for it has been sent share the next one (``_SharedReads``). Whatever is not on the hot path
(a credential this process has not cached) is read in a thread, on either database.

Each request first reads a generation with the epoch (``Snapshot``); while it stays the same,
nothing was committed, and ``jobs.service`` answers a polled job from the bytes it rendered for
that generation instead of reading the tree again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import orjson
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from meshup.errors import Unavailable
from meshup.jobs.model import WireNode
from meshup.store.db import Database
from meshup.timefmt import postgres_rfc3339, rfc3339_of_sqlite_text

T = TypeVar("T")

_TREE = """
SELECT m.id, m.project_id, m.enterprise_project_id, m.tags,
       n.id, n.parent_id, n.position, n.type, n.target, n.phase, n.reason,
       {created}, {updated}, {started}, {completed}
FROM jobs AS t
JOIN jobs AS n ON n.root_id = t.root_id
JOIN meshes AS m ON m.id = t.mesh_id
WHERE t.id = {param}
"""
_TIMES = ("created", "updated", "started", "completed")

# PostgreSQL formats the timestamps itself (its rows are WireNodes as they come); SQLite's text is
# cut in Python, which is cheaper than SQLite's string functions.
SQLITE_TREE = _TREE.format(param="?", **{key: f"n.{key}_at" for key in _TIMES})
POSTGRES_TREE = _TREE.format(param="%s", **{key: postgres_rfc3339(f"n.{key}_at") for key in _TIMES})
EPOCH_SQL = "SELECT value FROM epochs WHERE name = 'iam'"
# Changes whenever another connection commits to the file (this one only reads): while it stays
# the same, nothing read before can have changed (sqlite.org/pragma.html#pragma_data_version).
GENERATION_SQL = "PRAGMA data_version"
# PostgreSQL's counterpart, read with the epoch: the current snapshot (xmin:xmax:ids in progress,
# xmax one past the latest finished id). A transaction that wrote has an id; its commit removes
# that id from the list (it was listed) or moves xmax past it (it was not), so the text stays the
# same only while nothing was committed, and never comes back once it changed.
POSTGRES_SNAPSHOT_SQL = "SELECT (SELECT value FROM epochs WHERE name = 'iam'), pg_current_snapshot()::text"

# A job tree's change marker for live job events: the latest ``updated_at`` of its nodes (every
# write of a node sets it; a parent's is its children's latest) with microseconds, and the node
# count. Both databases give the same digits (SQLite's text with its separators dropped).
_MARKER = """
SELECT {latest}, count(*)
FROM jobs AS t
JOIN jobs AS n ON n.root_id = t.root_id
WHERE t.id = {param}
"""
SQLITE_MARKER = _MARKER.format(param="?", latest="max(n.updated_at)")
POSTGRES_MARKER = _MARKER.format(
    param="%s", latest="to_char(max(n.updated_at) AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')"
)

_UNAVAILABLE = "the database is unreachable right now; retry shortly"


@dataclass(frozen=True, slots=True)
class JobBundle:
    """A job's tree and what authorization needs of its mesh."""

    mesh_id: str
    project_id: str
    enterprise_project_id: str | None
    tags: list[tuple[str, str]]
    nodes: list[WireNode]


def _tags(raw: Any) -> list[tuple[str, str]]:
    data = orjson.loads(raw) if isinstance(raw, (str, bytes)) else (raw or [])
    return [(str(tag["key"]), str(tag.get("value", ""))) for tag in data]


def _bundle(rows: list[Any], nodes: list[WireNode]) -> JobBundle | None:
    if not rows:
        return None
    first = rows[0]
    return JobBundle(first[0], first[1], first[2], _tags(first[3]), nodes)


def _sqlite_nodes(rows: list[Any]) -> list[WireNode]:
    cut = rfc3339_of_sqlite_text
    return [
        WireNode(r[4], r[5], r[6], r[7], r[8], r[9], r[10], cut(r[11]), cut(r[12]), cut(r[13]), cut(r[14]))
        for r in rows
    ]


class Snapshot(NamedTuple):
    """What a request learns before anything else: the IAM epoch, and the generation: a value
    that differs whenever anything was committed since (SQLite's data_version, PostgreSQL's
    current snapshot). Equal generations mean equal data."""

    epoch: int
    generation: int | str | None


class _SharedRead:
    """One query and the requests waiting for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.result: asyncio.Future[Any] = loop.create_future()
        # Retrieved here too, so a failure that every waiter gave up on is not reported as unseen.
        self.result.add_done_callback(lambda done: done.cancelled() or done.exception())
        self.sent = False
        self.task: asyncio.Task[None] | None = None  # referenced, so that it runs to the end


class _SharedReads:
    """Requests that ask the same question while no query for it has been sent share the next one.

    A round trip costs the event loop more CPU than the rest of a request's reading, and the
    shared query still starts after each of its requests arrived, so each sees everything
    committed before it came (what its own query would have seen, or later).
    """

    def __init__(self, query: Callable[[str, tuple[str, ...]], Awaitable[list[Any]]]) -> None:
        self.query = query
        self._waiting: dict[tuple[str, tuple[str, ...]], _SharedRead] = {}

    async def rows(self, sql: str, params: tuple[str, ...]) -> list[Any]:
        loop = asyncio.get_running_loop()
        key = (sql, params)
        read = self._waiting.get(key)
        if read is None or read.sent or read.loop is not loop:
            if len(self._waiting) >= 10_000:  # entries of sent queries are kept only to be replaced
                self._waiting = {k: r for k, r in self._waiting.items() if not r.sent}
            read = self._waiting[key] = _SharedRead(loop)
            read.task = loop.create_task(self._send(key, read))
        rows: list[Any] = await asyncio.shield(read.result)
        return rows

    async def _send(self, key: tuple[str, tuple[str, ...]], read: _SharedRead) -> None:
        read.sent = True  # whoever asks from now on needs a later query
        if self._waiting.get(key) is read:
            del self._waiting[key]
        try:
            rows = await self.query(*key)
        except asyncio.CancelledError:
            read.result.cancel()
            raise
        except Exception as exc:
            read.result.set_exception(exc)
        else:
            read.result.set_result(rows)


def _epoch(row: Any) -> int:
    return int(row[0]) if row is not None and row[0] is not None else 0


class HotReader:
    """Where the mesh-job GET reads (see the module's docstring for which read runs where)."""

    def __init__(self, db: Database, *, pool_size: int = 8) -> None:
        self.db = db
        self.pool_size = pool_size
        self._local = threading.local()
        self._pool: Any = None
        self._shared = _SharedReads(lambda sql, params: self._postgres(sql, params))

    async def epoch(self) -> int:
        """The IAM epoch as of a moment after this call began (0 before the first change)."""
        return (await self.snapshot()).epoch

    async def snapshot(self) -> Snapshot:
        """The IAM epoch and the generation, as of a moment after this call began.

        On SQLite the generation is read first (about 1 µs); the epoch is read again only when
        it changed, so a request that follows others with no commit between reads nothing else.
        On PostgreSQL both come in one statement, shared by the requests that ask meanwhile.
        """
        if self.db.is_sqlite:
            rows = self._sqlite(GENERATION_SQL, ())
            generation = int(rows[0][0])
            seen: tuple[int, int] | None = getattr(self._local, "seen", None)
            if seen is not None and seen[0] == generation:
                return Snapshot(seen[1], generation)
            rows = self._sqlite(EPOCH_SQL, ())
            epoch = _epoch(rows[0] if rows else None)
            self._local.seen = (generation, epoch)
            return Snapshot(epoch, generation)
        rows = await self._shared.rows(POSTGRES_SNAPSHOT_SQL, ())
        return Snapshot(_epoch(rows[0]), str(rows[0][1]))

    async def bundle(self, job_id: str) -> JobBundle | None:
        """The tree of ``job_id`` with its mesh; None when no such job (or mesh) is stored."""
        if self.db.is_sqlite:
            rows = self._sqlite(SQLITE_TREE, (job_id,))
            return _bundle(rows, _sqlite_nodes(rows))
        rows = await self._shared.rows(POSTGRES_TREE, (job_id,))
        return _bundle(rows, [WireNode(*row[4:]) for row in rows])

    async def marker(self, job_id: str) -> str | None:
        """The change marker of the tree holding ``job_id`` (None when no such job): it differs
        whenever a node of the tree was written since, and grows as the tree changes."""
        if self.db.is_sqlite:
            rows = self._sqlite(SQLITE_MARKER, (job_id,))
            latest = "".join(ch for ch in str(rows[0][0] or "") if ch.isdigit()) if rows else ""
        else:
            rows = await self._postgres(POSTGRES_MARKER, (job_id,))
            latest = str(rows[0][0] or "") if rows else ""
        count = int(rows[0][1]) if rows else 0
        return f"{latest}-{count}" if count else None

    async def off_loop(self, read: Callable[[Connection], T]) -> T:
        """Run a read of the ordinary kind (SQLAlchemy, blocking) in a thread."""
        return await asyncio.to_thread(self._read, read)

    def _read(self, read: Callable[[Connection], T]) -> T:
        with self.db.read() as conn:
            return read(conn)

    def _sqlite(self, sql: str, params: tuple[str, ...]) -> list[Any]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except (DBAPIError, self.db.driver_errors) as exc:
            self._discard()
            raise Unavailable(_UNAVAILABLE) from exc

    async def _postgres(self, sql: str, params: tuple[str, ...]) -> list[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = self._pool or await self._open_pool()
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return list(await cursor.fetchall())
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(_UNAVAILABLE) from exc

    async def _open_pool(self) -> Any:
        from psycopg_pool import AsyncConnectionPool

        conninfo = make_url(self.db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            open=False,
            timeout=10,
        )
        await pool.open(wait=False)
        if self._pool is not None:  # another request opened one meanwhile
            await pool.close()
            return self._pool
        self._pool = pool
        return pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _connection(self) -> sqlite3.Connection:
        """This thread's own connection (the driver's, past the pool's proxy, which costs time)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            pooled = self.db.read_engine.raw_connection()
            conn = pooled.driver_connection
            assert isinstance(conn, sqlite3.Connection)
            self._local.pooled, self._local.conn = pooled, conn
        return conn

    def _discard(self) -> None:
        pooled = getattr(self._local, "pooled", None)
        self._local.pooled = self._local.conn = self._local.seen = None
        if pooled is not None:
            # The connection is broken; dropping it is all that is left to do.
            with contextlib.suppress(Exception):
                pooled.invalidate()
