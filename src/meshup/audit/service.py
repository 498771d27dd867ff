"""Use cases of the audit trail: list a project's traces (CTS ``ListTraces``), record refused
and failed calls and password logins, purge traces past their retention.

A successful change is traced by its own service, in the unit of work of the change. Everything
recorded here is best-effort, in a short transaction of its own after the answer was decided: an
audit write that fails is logged and never changes what the caller is told.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import Connection

from meshup.audit.model import LOGIN, Trace, TraceContext, TraceQuery, TraceUser, epoch_ms
from meshup.clock import Clock
from meshup.iam import actions
from meshup.iam.login import IssuedToken, LoginRequest
from meshup.iam.service import Caller, IdentityService
from meshup.store import identity as identity_store
from meshup.store.uow import UnitOfWorkFactory

log = logging.getLogger("meshup.audit")

PURGE_EVERY = 600.0  # seconds

LOCKED_OUT = "the user is locked out after repeated failed logins"


class AuditService:
    def __init__(
        self, identity: IdentityService, uow: UnitOfWorkFactory, clock: Clock, *, retention_days: int = 7
    ) -> None:
        self.identity = identity
        self.uow = uow
        self.clock = clock
        self.retention_days = retention_days
        self._last_purge: float | None = None

    def list_traces(
        self, caller: Caller, project_id: str, query: TraceQuery, ip: str
    ) -> tuple[list[Trace], str | None]:
        self.identity.precheck(caller, actions.LIST_TRACES, project_id)
        self.identity.authorize(caller, actions.LIST_TRACES, project_id, None, ip)
        if query.data:
            return [], None  # data events are object-storage reads and writes: there are none
        with self.uow(read_only=True) as uow:
            return uow.traces.page(caller.principal.account.id, project_id, query)

    def refused(self, context: TraceContext, code: int, message: str) -> None:
        """A call that was refused (4xx) or failed (5xx); without a known caller, the trace goes
        to the account that owns the project in the path (if there is one)."""
        try:
            now = self.clock.now()
            with self.uow() as uow:
                account_id = context.account_id
                if not account_id and context.project_id:
                    account_id = uow.traces.project_account(context.project_id) or ""
                if not account_id:
                    return
                trace = context.ended(now, code, message=message)
                uow.traces.add(dataclasses.replace(trace, account_id=account_id))
                uow.commit()
        except Exception as exc:  # the database is unreachable: the answer stands as it is
            log.warning(
                "could not record the trace of request %s (%s)", context.request_id, type(exc).__name__
            )

    def login(
        self, request: LoginRequest, issued: IssuedToken | None, request_id: str, source_ip: str
    ) -> None:
        """A password login: a token issued, or refused (401). A refusal is traced in the account
        the request named, if it exists, with whether the user is now locked out."""
        try:
            now = self.clock.now()
            code = 401 if issued is None else 201
            user = None if issued is None else _user(issued)
            with self.uow() as uow:
                message = ""
                if user is None:
                    user, message = self._login_target(uow.connection, request, now)
                    if user is None:
                        return
                context = TraceContext(
                    account_id=user.domain_id,
                    project_id=None,
                    request_id=request_id,
                    source_ip=source_ip,
                    user=user,
                    name=LOGIN,
                    action="",
                    code=201,
                    resource_id=user.id,
                )
                trace = context.ended(now, code, message=message, resource_name=user.name)
                uow.traces.add(trace)
                uow.commit()
        except Exception as exc:
            log.warning("could not record the login trace of request %s (%s)", request_id, type(exc).__name__)

    def _login_target(
        self, conn: Connection, request: LoginRequest, now: datetime
    ) -> tuple[TraceUser | None, str]:
        record = None
        if request.user_id is not None:
            record = identity_store.get_user(conn, request.user_id)
            account = record.account if record is not None else None
        else:
            account = identity_store.find_account(
                conn, account_id=request.user_domain_id, name=request.user_domain_name
            )
            if account is not None and request.user_name is not None:
                record = identity_store.find_user(conn, account.id, request.user_name)
        if account is None:
            return None, ""
        if record is None:
            # An unknown user name is caller-supplied text: named, but not as a user id.
            name = request.user_name or ""
            return TraceUser(name=name, domain_id=account.id, domain_name=account.name), "unknown user"
        failures = identity_store.get_login_failures(conn, record.user.id)
        locked = failures is not None and failures.locked_until is not None and failures.locked_until > now
        user = TraceUser(
            id=record.user.id, name=record.user.name, domain_id=account.id, domain_name=account.name
        )
        return user, (LOCKED_OUT if locked else "authentication failed")

    def purge(self, *, force: bool = False) -> int:
        """Drop traces older than the retention (none when it is 0: keep forever). Called at
        start-up and by the workers' housekeeping, which calls often: it runs every
        ``PURGE_EVERY`` at most, unless forced."""
        if self.retention_days <= 0:
            return 0
        started = time.monotonic()
        if not force and self._last_purge is not None and started - self._last_purge < PURGE_EVERY:
            return 0
        self._last_purge = started
        cutoff = epoch_ms(self.clock.now() - timedelta(days=self.retention_days))
        with self.uow() as uow:
            dropped = uow.traces.purge(cutoff)
            uow.commit()
        if dropped:
            log.info("purged %d traces older than %d days", dropped, self.retention_days)
        return dropped


def _user(issued: IssuedToken) -> TraceUser:
    return TraceUser(
        id=issued.user.id,
        name=issued.user.name,
        domain_id=issued.account.id,
        domain_name=issued.account.name,
    )
