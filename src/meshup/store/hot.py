"""The mesh-job read on the hot path: one SQL statement on a raw driver connection.

Everything the GET needs comes back in one round trip and one snapshot: the IAM epoch (so the
process's credential caches can be trusted), the mesh's project, enterprise project and tags, and
every node of the job's tree with timestamps already formatted by the database. It skips the ORM
layers because this is the request every client polls; the rest of meshup uses SQLAlchemy Core.
Connections run in autocommit mode, so the one statement is its own snapshot.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from meshup.errors import Unavailable
from meshup.jobs.model import WireNode
from meshup.store.db import Database

_COLUMNS = """
    (SELECT value FROM epochs WHERE name = 'iam'),
    m.id, m.project_id, m.enterprise_project_id, m.tags,
    n.id, n.parent_id, n.position, n.type, n.target, n.phase, n.reason,
    {created}, {updated}, {started}, {completed}
FROM jobs AS t
JOIN jobs AS n ON n.root_id = t.root_id
JOIN meshes AS m ON m.id = t.mesh_id
WHERE t.id = {param}
"""

_SQLITE_TIME = "n.{0}"  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text; cut to RFC 3339 in Python
_PG_TIME = "to_char(n.{0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _statement(time_format: str, param: str) -> str:
    times = {key: time_format.format(f"{key}_at") for key in ("created", "updated", "started", "completed")}
    return "SELECT " + _COLUMNS.format(param=param, **times)


SQLITE_BUNDLE = _statement(_SQLITE_TIME, "?")
POSTGRES_BUNDLE = _statement(_PG_TIME, "%s")
EPOCH_SQL = "SELECT value FROM epochs WHERE name = 'iam'"


@dataclass(frozen=True, slots=True)
class JobBundle:
    epoch: int
    mesh_id: str | None
    project_id: str | None
    enterprise_project_id: str | None
    tags: list[tuple[str, str]]
    nodes: list[WireNode]


def _tags(raw: Any) -> list[tuple[str, str]]:
    data = orjson.loads(raw) if isinstance(raw, (str, bytes)) else (raw or [])
    return [(str(tag["key"]), str(tag.get("value", ""))) for tag in data]


def _cut(stored: str | None) -> str:
    """SQLite's stored UTC text to RFC 3339 with second precision ("" for no value)."""
    return f"{stored[:10]}T{stored[11:19]}Z" if stored else ""


def _as_is(formatted: str | None) -> str:
    return formatted or ""


def _statements(dialect: str) -> tuple[str, str]:
    return (SQLITE_BUNDLE, EPOCH_SQL) if dialect == "sqlite" else (POSTGRES_BUNDLE, EPOCH_SQL)


def _bundle(rows: list[Any], dialect: str, epoch_row: Any) -> JobBundle:
    if not rows:
        epoch = int(epoch_row[0]) if epoch_row and epoch_row[0] is not None else 0
        return JobBundle(epoch, None, None, None, [], [])
    first = rows[0]
    time = _cut if dialect == "sqlite" else _as_is
    nodes = [
        WireNode(
            r[5],
            r[6],
            r[7],
            r[8],
            r[9] or "",
            r[10],
            r[11] or "",
            time(r[12]),
            time(r[13]),
            time(r[14]),
            time(r[15]),
        )
        for r in rows
    ]
    return JobBundle(int(first[0] or 0), first[1], first[2], first[3], _tags(first[4]), nodes)


def read_bundle(cursor: Any, dialect: str, job_id: str) -> JobBundle:
    """Run the bundle statement on a DBAPI cursor of either database."""
    sql, epoch_sql = _statements(dialect)
    cursor.execute(sql, (job_id,))
    rows = cursor.fetchall()
    epoch_row = None
    if not rows:
        cursor.execute(epoch_sql)
        epoch_row = cursor.fetchone()
    return _bundle(rows, dialect, epoch_row)


class HotReader:
    """Where the mesh-job GET reads: on SQLite one raw autocommit connection per thread (a local
    file read is cheaper than any hand-off); on PostgreSQL a small pool of asynchronous connections,
    so the event loop serves other requests while a query is on the wire."""

    def __init__(self, db: Database, *, pool_size: int = 8) -> None:
        self.db = db
        self.dialect = "sqlite" if db.is_sqlite else "postgresql"
        self.pool_size = pool_size
        self._local = threading.local()
        self._pool: Any = None

    async def bundle(self, job_id: str) -> JobBundle:
        if self.dialect == "sqlite":
            return self._sqlite_bundle(job_id)
        return await self._postgres_bundle(job_id)

    def _sqlite_bundle(self, job_id: str) -> JobBundle:
        try:
            cursor = self._connection().cursor()
            try:
                return read_bundle(cursor, self.dialect, job_id)
            finally:
                cursor.close()
        except (DBAPIError, self.db.driver_errors) as exc:
            self._discard()
            raise Unavailable("the database is unreachable right now; retry shortly") from exc

    async def _postgres_bundle(self, job_id: str) -> JobBundle:
        import psycopg
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        if self._pool is None:
            conninfo = (
                make_url(self.db.url).set(drivername="postgresql").render_as_string(hide_password=False)
            )
            pool = AsyncConnectionPool(
                conninfo,
                min_size=1,
                max_size=self.pool_size,
                kwargs={"autocommit": True},
                open=False,
                timeout=10,
            )
            await pool.open(wait=False)
            self._pool = pool
        sql, epoch_sql = _statements(self.dialect)
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, (job_id,))
                rows = await cursor.fetchall()
                epoch_row = None
                if not rows:
                    epoch_row = await (await conn.execute(epoch_sql)).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable("the database is unreachable right now; retry shortly") from exc
        return _bundle(list(rows), self.dialect, epoch_row)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.db.read_engine.raw_connection()
            self._local.conn = conn
        return conn

    def _discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            # The connection is broken; dropping it is all that is left to do.
            with contextlib.suppress(Exception):
                conn.invalidate()
