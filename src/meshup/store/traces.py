"""The audit trail's table, as :class:`meshup.audit.model.Trace`.

``add`` cuts every value to its column, and ids are random: inserting a trace cannot violate a
constraint, so it can never fail the change it is written with. Listing pages newest first by
``(time, id)``; the marker of a page is the id of its last trace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, insert, or_, select

from meshup.audit.model import Trace, TraceContext, TraceQuery, TraceUser
from meshup.store import tables as t

tr = t.traces


class TraceRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_change(
        self, trace: TraceContext | None, now: datetime, *, resource_id: str, resource_name: str
    ) -> None:
        """The trace of a change a service makes, in the change's own transaction (None: untraced,
        e.g. a change made by a test or the engine rather than an API call)."""
        if trace is not None:
            self.add(trace.succeeded(now, resource_id=resource_id, resource_name=resource_name))

    def add(self, trace: Trace) -> None:
        values: dict[str, Any] = {
            "id": trace.id,
            "account_id": trace.account_id,
            "project_id": trace.project_id,
            "time": trace.time,
            "record_time": trace.record_time,
            "service_type": trace.service_type,
            "trace_name": trace.trace_name,
            "trace_type": trace.trace_type,
            "trace_rating": trace.trace_rating,
            "action": trace.action,
            "resource_type": trace.resource_type,
            "resource_id": trace.resource_id,
            "resource_name": trace.resource_name,
            "code": str(trace.code),
            "request_id": trace.request_id,
            "source_ip": trace.source_ip,
            "user_id": trace.user.id,
            "user_name": trace.user.name,
            "domain_id": trace.user.domain_id,
            "domain_name": trace.user.domain_name,
            "access_key_id": trace.user.access_key_id,
            "message": trace.message,
        }
        for name, value in values.items():
            column = tr.c[name]
            if isinstance(value, str):
                values[name] = _cut(value, getattr(column.type, "length", None))
        self.conn.execute(insert(tr).values(**values))

    def page(self, account_id: str, project_id: str, query: TraceQuery) -> tuple[list[Trace], str | None]:
        """One page of the project's traces (and the account's project-less ones), newest first,
        with the marker of the next page (None on the last)."""
        visible = and_(
            tr.c.account_id == account_id, or_(tr.c.project_id == project_id, tr.c.project_id.is_(None))
        )
        statement = select(tr).where(visible)
        if query.trace_id is not None:  # CTS: a trace id makes every other condition void
            statement = statement.where(tr.c.id == query.trace_id)
        else:
            statement = statement.where(tr.c.time > query.from_ms, tr.c.time < query.to_ms)
            for column, wanted in (
                (tr.c.service_type, query.service_type),
                (tr.c.user_name, query.user),
                (tr.c.resource_id, query.resource_id),
                (tr.c.resource_name, query.resource_name),
                (tr.c.resource_type, query.resource_type),
                (tr.c.trace_name, query.trace_name),
                (tr.c.trace_rating, query.trace_rating),
                (tr.c.access_key_id, query.access_key_id),
            ):
                if wanted is not None:
                    statement = statement.where(column == wanted)
            if query.next is not None:
                marker = self.conn.execute(
                    select(tr.c.time, tr.c.id).where(visible, tr.c.id == query.next)
                ).first()
                if marker is None:
                    return [], None
                statement = statement.where(
                    or_(tr.c.time < marker.time, and_(tr.c.time == marker.time, tr.c.id < marker.id))
                )
        rows = self.conn.execute(
            statement.order_by(tr.c.time.desc(), tr.c.id.desc()).limit(query.limit + 1)
        ).all()
        traces = [_trace(row) for row in rows[: query.limit]]
        return traces, (traces[-1].id if len(rows) > query.limit else None)

    def project_account(self, project_id: str) -> str | None:
        """The account a project belongs to (a refused call is traced in the project it named)."""
        if len(project_id) > 32 or "\x00" in project_id:
            return None
        found = self.conn.execute(select(t.projects.c.account_id).where(t.projects.c.id == project_id))
        return found.scalar()

    def purge(self, before_ms: int) -> int:
        """Drop traces older than ``before_ms``; how many went."""
        return int(self.conn.execute(delete(tr).where(tr.c.time < before_ms)).rowcount or 0)


def _cut(value: str, length: int | None) -> str:
    """Fit a value to its column: no NUL (PostgreSQL refuses it), only encodable text, cut."""
    value = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return value if length is None or len(value) <= length else value[:length]


def _trace(row: Row[Any]) -> Trace:
    return Trace(
        id=row.id,
        account_id=row.account_id,
        project_id=row.project_id,
        time=int(row.time),
        record_time=int(row.record_time),
        service_type=row.service_type,
        trace_name=row.trace_name,
        trace_type=row.trace_type,
        trace_rating=row.trace_rating,
        action=row.action,
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        resource_name=row.resource_name,
        code=int(row.code) if row.code.isdigit() else 0,
        request_id=row.request_id,
        source_ip=row.source_ip,
        user=TraceUser(
            id=row.user_id,
            name=row.user_name,
            domain_id=row.domain_id,
            domain_name=row.domain_name,
            access_key_id=row.access_key_id,
        ),
        message=row.message,
    )
