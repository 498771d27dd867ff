"""The audit trail's store on SQLite and PostgreSQL: a trace commits and rolls back with the change
it records, never fails it, pages newest first, and is purged after its retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from meshup.audit.model import CallName, TraceContext, TraceQuery, TraceUser, epoch_ms
from meshup.audit.service import AuditService
from meshup.clock import FixedClock
from meshup.iam.secrets import MasterKey
from meshup.iam.service import IdentityService
from meshup.store import tables as t
from meshup.store.db import Database
from meshup.store.errors import Collision
from meshup.store.uow import UnitOfWorkFactory
from tests.integration.test_uow import ACCOUNT, NOW, PROJECT, mesh

USER = TraceUser(id="u" * 32, name="alice", domain_id=ACCOUNT, domain_name="acme", access_key_id="AKALICE")


@pytest.fixture
def units(db: Database) -> UnitOfWorkFactory:
    with db.write() as conn:
        conn.execute(insert(t.accounts).values(id=ACCOUNT, name="acme", enabled=True, created_at=NOW))
        conn.execute(
            insert(t.projects).values(id=PROJECT, account_id=ACCOUNT, name="cn-north-4", enabled=True)
        )
    return UnitOfWorkFactory(db)


def context(**changes: object) -> TraceContext:
    values: dict[str, object] = {
        "account_id": ACCOUNT,
        "project_id": PROJECT,
        "request_id": "r" * 32,
        "source_ip": "127.0.0.1",
        "user": USER,
        "name": CallName("createMesh", "mesh"),
        "action": "asm:mesh:create",
        "code": 201,
    }
    values.update(changes)
    return TraceContext(**values)  # type: ignore[arg-type]


def all_traces(units: UnitOfWorkFactory) -> list[str]:
    with units(read_only=True) as uow:
        return [row.trace_name for row in uow.connection.execute(select(t.traces)).all()]


def window(**filters: object) -> TraceQuery:
    return TraceQuery(from_ms=0, to_ms=epoch_ms(NOW) + 10**9, **filters)  # type: ignore[arg-type]


def test_a_trace_commits_with_its_change(units: UnitOfWorkFactory) -> None:
    value = mesh("mesh-a", "c1")
    with units() as uow:
        uow.meshes.add(value)
        uow.traces.add(context().succeeded(NOW, resource_id=value.id, resource_name=value.name))
        uow.commit()
    with units(read_only=True) as uow:
        traces, marker = uow.traces.page(ACCOUNT, PROJECT, window())
    assert marker is None
    assert [(tr.trace_name, tr.resource_id, tr.code, tr.trace_rating) for tr in traces] == [
        ("createMesh", value.id, 201, "normal")
    ]
    assert traces[0].user == USER


def test_a_trace_is_rolled_back_with_its_change(units: UnitOfWorkFactory) -> None:
    taken = mesh("mesh-b", "c2")
    with units() as uow:
        uow.meshes.add(taken)
        uow.commit()
    with pytest.raises(RuntimeError), units() as uow:  # the use case fails before committing
        uow.traces.add(context().succeeded(NOW))
        uow.meshes.add(mesh("mesh-c", "c3"))
        raise RuntimeError("the change failed")
    with pytest.raises(Collision), units() as uow:  # the database refuses the change itself
        uow.traces.add(context().succeeded(NOW))
        uow.meshes.add(mesh("mesh-b", "c4"))  # the live name is taken
        uow.commit()
    assert all_traces(units) == []
    with units(read_only=True) as uow:
        assert uow.meshes.named(PROJECT, "mesh-c") is None


def test_a_trace_never_violates_a_constraint(units: UnitOfWorkFactory) -> None:
    huge = "x\x00\ud800" * 2000  # too long, a NUL (PostgreSQL refuses it), a lone surrogate
    wide = context(request_id=huge, source_ip=huge, user=TraceUser(id=huge, name=huge), action=huge)
    with units() as uow:
        uow.traces.add(wide.ended(NOW, 409, message=huge, resource_id=huge, resource_name="ü" * 500))
        uow.traces.add(wide.ended(NOW, 409, message=huge))  # same instant, same request: a new id
        uow.commit()
    with units(read_only=True) as uow:
        traces, _ = uow.traces.page(ACCOUNT, PROJECT, window())
    assert len(traces) == 2 and len(traces[0].message) == 512 and traces[0].trace_rating == "warning"
    assert "\x00" not in traces[0].resource_id and traces[0].user.name.startswith("x\ufffd?")


def test_pages_filters_and_visibility(units: UnitOfWorkFactory) -> None:
    with units() as uow:
        for second in range(5):
            uow.traces.add(context().succeeded(NOW + timedelta(seconds=second), resource_id=f"m{second}"))
        uow.traces.add(context(project_id=None, name=CallName("login", "user", "IAM")).ended(NOW, 401))
        uow.traces.add(context(project_id="c" * 32).succeeded(NOW))  # another project
        uow.traces.add(context(account_id="d" * 32).succeeded(NOW))  # another account
        uow.commit()
    with units(read_only=True) as uow:
        first, marker = uow.traces.page(ACCOUNT, PROJECT, window(limit=4))
        rest, end = uow.traces.page(ACCOUNT, PROJECT, window(limit=4, next=marker))
        logins, _ = uow.traces.page(ACCOUNT, PROJECT, window(service_type="IAM", trace_rating="warning"))
        one, _ = uow.traces.page(ACCOUNT, PROJECT, window(resource_id="m3"))
        late, _ = uow.traces.page(ACCOUNT, PROJECT, TraceQuery(from_ms=epoch_ms(NOW) + 2000, to_ms=10**15))
    assert [tr.resource_id for tr in first] == ["m4", "m3", "m2", "m1"] and marker == first[-1].id
    assert len(rest) == 2 and end is None and {tr.trace_name for tr in rest} == {"createMesh", "login"}
    assert [tr.trace_name for tr in logins] == ["login"]
    assert [tr.resource_id for tr in one] == ["m3"]
    assert [tr.resource_id for tr in late] == ["m4", "m3"]  # from is exclusive


def identity() -> IdentityService:
    return IdentityService(MasterKey(b"k" * 32), FixedClock(NOW))


def test_retention_purges_old_traces(units: UnitOfWorkFactory) -> None:
    clock = FixedClock(NOW)
    with units() as uow:
        uow.traces.add(context().succeeded(NOW - timedelta(days=8)))
        uow.traces.add(context(name=CallName("deleteMesh", "mesh")).succeeded(NOW - timedelta(days=6)))
        uow.commit()
    assert AuditService(identity(), units, clock, retention_days=0).purge(force=True) == 0
    assert AuditService(identity(), units, clock, retention_days=7).purge(force=True) == 1
    assert all_traces(units) == ["deleteMesh"]


def test_a_failed_audit_write_does_not_raise(units: UnitOfWorkFactory) -> None:
    broken = UnitOfWorkFactory(Database("postgresql://nobody@127.0.0.1:1/none"))
    AuditService(identity(), broken, FixedClock(NOW)).refused(context(), 403, "denied")
    service = AuditService(identity(), units, FixedClock(NOW))
    service.refused(context(account_id=""), 403, "denied")  # the account comes from the project
    service.refused(context(account_id="", project_id="e" * 32), 401, "no such project: not traced")
    assert all_traces(units) == ["createMesh"]


def test_times_are_epoch_milliseconds() -> None:
    trace = context().succeeded(datetime(2026, 1, 1, tzinfo=UTC))
    assert trace.time == trace.record_time == 1767225600000
