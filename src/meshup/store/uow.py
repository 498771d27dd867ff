"""The unit of work: one transaction and the repositories that read and write inside it.

A service opens one per use case (``with self.uow() as uow: … uow.commit()``); leaving the block
without ``commit()`` rolls everything back. The engine's owner hooks run inside the engine's own
finishing transaction: ``uow.joining(conn)`` builds a unit of work on that connection, which the
engine commits. A unique key or conditional update that a concurrent transaction won surfaces as
:class:`~meshup.store.errors.Collision`; :func:`retry_lost_race` runs the use case once more so
that its checks see the winner and answer as they would a serial caller.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from types import TracebackType
from typing import Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from meshup.store.accounts import EnterpriseProjectRepository
from meshup.store.db import Database
from meshup.store.errors import Collision
from meshup.store.jobs import JobTreeRepository
from meshup.store.meshes import MeshRepository
from meshup.store.traces import TraceRepository
from meshup.store.upgrades import UpgradeTaskRepository

T = TypeVar("T")


class UnitOfWork:
    meshes: MeshRepository
    tasks: UpgradeTaskRepository
    jobs: JobTreeRepository
    enterprise_projects: EnterpriseProjectRepository
    traces: TraceRepository

    def __init__(self, db: Database | None, *, read_only: bool = False, conn: Connection | None = None):
        self._db = db
        self._read_only = read_only
        self._joined = conn
        self._stack = ExitStack()
        self._conn: Connection | None = None
        self._done = False

    @property
    def connection(self) -> Connection:
        """For adapters that work inside the same transaction (the engine's scheduler)."""
        assert self._conn is not None, "the unit of work is not open"
        return self._conn

    def __enter__(self) -> UnitOfWork:
        if self._joined is not None:
            conn = self._joined
        else:
            assert self._db is not None
            conn = self._stack.enter_context(self._db.read() if self._read_only else self._db.write())
        self._conn = conn
        self._done = False
        self.meshes = MeshRepository(conn)
        self.tasks = UpgradeTaskRepository(conn)
        self.jobs = JobTreeRepository(conn)
        self.enterprise_projects = EnterpriseProjectRepository(conn)
        self.traces = TraceRepository(conn)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._joined is None and not self._done and self._conn is not None:
                self._conn.rollback()  # nothing is written unless the service said commit()
            self._stack.__exit__(kind, error, tb)
        except IntegrityError as exc:
            raise Collision(_COLLISION) from exc
        finally:
            self._conn = None
        if isinstance(error, IntegrityError):
            raise Collision(_COLLISION) from error

    def commit(self) -> None:
        """Make the work durable (inside the engine's transaction: when the engine commits)."""
        if self._joined is None:
            try:
                self.connection.commit()
            except IntegrityError as exc:
                raise Collision(_COLLISION) from exc
        self._done = True

    def rollback(self) -> None:
        if self._joined is None:
            self.connection.rollback()
        self._done = True


_COLLISION = "the resource was changed by a concurrent request; retry"


class UnitOfWorkFactory:
    """What services get: a new unit of work per use case, or one inside an engine transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        return UnitOfWork(self.db, read_only=read_only)

    def joining(self, conn: Connection) -> UnitOfWork:
        return UnitOfWork(None, conn=conn)


class Scheduler(Protocol):
    """Makes the first leaves of a tree just written runnable, in the same unit of work."""

    def __call__(self, uow: UnitOfWork, root_id: str, now: datetime) -> None: ...


def retry_lost_race(work: Callable[[], T]) -> T:
    """``work`` (one whole use case in its own unit of work), once more if it lost a race."""
    try:
        return work()
    except Collision:
        return work()
