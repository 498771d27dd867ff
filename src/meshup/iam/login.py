"""Password logins (Keystone ``POST /v3/auth/tokens``) with login protection, and token checks."""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from meshup.clock import Clock
from meshup.errors import AuthenticationFailed, InvalidRequest
from meshup.iam.bounded_pool import BoundedPool, PoolBusy
from meshup.iam.identity import Account, User
from meshup.iam.passwords import DUMMY_HASH, verify_password
from meshup.iam.throttle import AddressThrottle
from meshup.iam.tokens import TokenClaims, TokenCodec
from meshup.store import identity as store
from meshup.store.db import Database
from meshup.timefmt import keystone_time

GENERIC_FAILURE = "The request you have made requires authentication."

# Password checks run at a lower CPU priority: a flood of logins that saturates the hashing pool
# then slows logins, not every other request of the process.
HASHING_NICENESS = 10
# A login is refused (429) rather than queued when it would wait longer than this to start.
MAX_QUEUE_WAIT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    token_ttl: timedelta = timedelta(hours=24)
    workers: int = 0  # password checks at once; 0 = one per core
    queue: int | None = None  # password checks waiting; None = 8 per worker
    address_max_failures: int = 30  # failed logins per source address and address_window; 0 = off
    address_window: timedelta = timedelta(minutes=5)

    def pool_workers(self) -> int:
        if self.workers > 0:
            return self.workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, cores or 1)

    def pool_queue(self) -> int:
        return self.queue if self.queue is not None else 8 * self.pool_workers()


class LoginThrottled(Exception):
    """Refused before any password was checked: 429 with ``Retry-After``."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True, slots=True)
class LoginRequest:
    user_id: str | None
    user_name: str | None
    user_domain_id: str | None
    user_domain_name: str | None
    password: str
    scope: str  # "unscoped" | "project" | "domain"
    project_id: str | None
    project_name: str | None
    project_domain_id: str | None
    project_domain_name: str | None
    domain_id: str | None
    domain_name: str | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims
    account: Account
    user: User
    project: tuple[str, str] | None  # (id, name)


def _text(value: Any, path: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidRequest(f"{path}: required")
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidRequest(f"{path}: must be a non-empty string of at most 256 characters")
    if "\x00" in value:  # no stored name or id holds one, and PostgreSQL refuses it in a query
        raise InvalidRequest(f"{path}: must not contain NUL characters")
    return value


def _mapping(value: Any, path: str, *, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path}: {'required' if value is None else 'must be an object'}")
    return value


def parse_login(body: Any) -> LoginRequest:
    """Keystone v3 password authentication; names the offending field on bad input."""
    auth = _mapping(_mapping(body, "body").get("auth"), "auth")
    identity = _mapping(auth.get("identity"), "auth.identity")
    methods = identity.get("methods")
    if not isinstance(methods, list) or "password" not in methods:
        raise InvalidRequest('auth.identity.methods: must include "password" (the only supported method)')
    user = _mapping(
        _mapping(identity.get("password"), "auth.identity.password").get("user"),
        "auth.identity.password.user",
    )
    password = _text(user.get("password"), "auth.identity.password.user.password", required=True)
    user_id = _text(user.get("id"), "auth.identity.password.user.id")
    user_name = _text(user.get("name"), "auth.identity.password.user.name")
    user_domain = _mapping(user.get("domain"), "auth.identity.password.user.domain", required=False)
    if user_id is None and user_name is None:
        raise InvalidRequest("auth.identity.password.user: id or name is required")
    user_domain_id = _text(user_domain.get("id"), "auth.identity.password.user.domain.id")
    user_domain_name = _text(user_domain.get("name"), "auth.identity.password.user.domain.name")
    if user_id is None and user_domain_id is None and user_domain_name is None:
        raise InvalidRequest("auth.identity.password.user.domain: a user given by name needs its domain")
    scope = auth.get("scope")
    fields: dict[str, str | None] = {
        "project_id": None,
        "project_name": None,
        "project_domain_id": None,
        "project_domain_name": None,
        "domain_id": None,
        "domain_name": None,
    }
    kind = "unscoped"
    if scope is not None and scope != "unscoped":
        scope_map = _mapping(scope, "auth.scope")
        if "project" in scope_map:
            kind = "project"
            project = _mapping(scope_map["project"], "auth.scope.project")
            fields["project_id"] = _text(project.get("id"), "auth.scope.project.id")
            fields["project_name"] = _text(project.get("name"), "auth.scope.project.name")
            domain = _mapping(project.get("domain"), "auth.scope.project.domain", required=False)
            fields["project_domain_id"] = _text(domain.get("id"), "auth.scope.project.domain.id")
            fields["project_domain_name"] = _text(domain.get("name"), "auth.scope.project.domain.name")
            if fields["project_id"] is None and fields["project_name"] is None:
                raise InvalidRequest("auth.scope.project: id or name is required")
            if fields["project_id"] is None and not (
                fields["project_domain_id"] or fields["project_domain_name"]
            ):
                raise InvalidRequest("auth.scope.project.domain: a project given by name needs its domain")
        elif "domain" in scope_map:
            kind = "domain"
            domain = _mapping(scope_map["domain"], "auth.scope.domain")
            fields["domain_id"] = _text(domain.get("id"), "auth.scope.domain.id")
            fields["domain_name"] = _text(domain.get("name"), "auth.scope.domain.name")
            if fields["domain_id"] is None and fields["domain_name"] is None:
                raise InvalidRequest("auth.scope.domain: id or name is required")
        else:
            raise InvalidRequest("auth.scope: must name a project or a domain")
    assert password is not None
    return LoginRequest(
        user_id=user_id,
        user_name=user_name,
        user_domain_id=user_domain_id,
        user_domain_name=user_domain_name,
        password=password,
        scope=kind,
        **fields,
    )


class LoginService:
    """Password logins, bounded: a per-address budget of failures, a small pool for the hashing
    (no transaction is open while a password is checked), and a per-user lockout counted in the
    database."""

    def __init__(
        self,
        tokens: TokenCodec,
        clock: Clock,
        policy: LoginPolicy,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.clock = clock
        self.policy = policy
        self.pool = BoundedPool(
            policy.pool_workers(),
            policy.pool_queue(),
            name="meshup-login",
            niceness=HASHING_NICENESS,
            max_wait=MAX_QUEUE_WAIT_SECONDS,
        )
        self.throttle = AddressThrottle(
            policy.address_max_failures, policy.address_window.total_seconds(), monotonic=monotonic
        )

    async def attempt(self, db: Database, request: LoginRequest, source: str) -> IssuedToken:
        """A login from address ``source``: LoginThrottled, AuthenticationFailed or a token."""
        wait = self.throttle.take(source)
        if wait > 0:
            raise LoginThrottled(wait, "Too many failed logins from this address; retry later.")
        try:
            issued = await self.pool.run(lambda: self.login(db, request))
        except AuthenticationFailed:
            raise  # the charge stays: this was a failed login
        except PoolBusy as exc:
            self.throttle.refund(source)
            raise LoginThrottled(exc.retry_after, "Too many logins in progress; retry later.") from None
        except BaseException:
            self.throttle.refund(source)
            raise
        self.throttle.refund(source)
        return issued

    def close(self) -> None:
        self.pool.shutdown()

    def login(self, db: Database, request: LoginRequest) -> IssuedToken:
        """Check the password (with lockout) and issue a token; every failure looks the same.

        Reads in one short transaction, hashes outside any, records the outcome in another short
        one: a slow hash never holds a database lock (SQLite has a single writer).
        """
        scope: tuple[str, str] | AuthenticationFailed | None = None
        with db.read() as conn:
            record = self._find_user(conn, request)
            failures = None
            if record is not None:
                failures = store.get_login_failures(conn, record.user.id)
                try:
                    scope = self._scope_project(conn, record.account, request)
                except AuthenticationFailed as exc:
                    scope = exc  # told only to whoever knows the password
        # Unknown users and users without a password cost one full check too: timing tells nothing.
        known_hash = record.password_hash if record is not None else None
        matches = verify_password(known_hash or DUMMY_HASH, request.password) and known_hash is not None
        if record is None:
            raise AuthenticationFailed(GENERIC_FAILURE)
        now = self.clock.now()
        user_id = record.user.id
        if not matches:
            if not _locked(failures, now):  # a lock only ends with time: nothing to count meanwhile
                self._record_failure(db, user_id, now)
            raise AuthenticationFailed(GENERIC_FAILURE)
        if not (record.user.enabled and record.account.enabled):
            raise AuthenticationFailed(GENERIC_FAILURE)
        if not self._clear_failures(db, user_id, now):
            raise AuthenticationFailed(GENERIC_FAILURE)  # locked: refused like any failed login
        if isinstance(scope, AuthenticationFailed):
            raise scope
        # Whole seconds, as the token carries them: the issued document then equals what
        # GET /v3/auth/tokens shows later, and expires_at is exactly when the token stops working.
        issued_at = now.replace(microsecond=0)
        claims = TokenClaims(
            user_id=user_id,
            project_id=scope[0] if scope else None,
            domain_scoped=request.scope == "domain",
            password_version=record.user.password_version,
            issued_at=issued_at,
            expires_at=issued_at + self.policy.token_ttl,
        )
        return IssuedToken(self.tokens.issue(claims), claims, record.account, record.user, scope)

    def _record_failure(self, db: Database, user_id: str, now: datetime) -> None:
        try:
            with db.write() as conn:
                store.record_login_failure(
                    conn,
                    user_id,
                    now,
                    max_failures=self.policy.max_failures,
                    window=self.policy.window,
                    lockout=self.policy.lockout,
                )
        except IntegrityError:
            pass  # the user was deleted meanwhile: nothing left to protect

    def _clear_failures(self, db: Database, user_id: str, now: datetime) -> bool:
        """False when the user is locked. Writes only when there is a record to clear."""
        with db.read() as conn:
            current = store.get_login_failures(conn, user_id)
        if current is None:
            return True
        if _locked(current, now):
            return False
        with db.write() as conn:
            return store.clear_login_failures(conn, user_id, now)

    def _find_user(self, conn: Connection, request: LoginRequest) -> store.UserRecord | None:
        if request.user_id is not None:
            record = store.get_user(conn, request.user_id)
            if record is None:
                return None
            if request.user_domain_id not in (None, record.account.id):
                return None
            if request.user_domain_name not in (None, record.account.name):
                return None
            return record
        account = store.find_account(conn, account_id=request.user_domain_id, name=request.user_domain_name)
        if account is None or request.user_name is None:
            return None
        return store.find_user(conn, account.id, request.user_name)

    def _scope_project(
        self, conn: Connection, account: Account, request: LoginRequest
    ) -> tuple[str, str] | None:
        if request.scope == "domain":
            if request.domain_id not in (None, account.id) or request.domain_name not in (None, account.name):
                raise AuthenticationFailed("the user has no access to the requested domain")
            return None
        if request.scope != "project":
            return None
        if request.project_domain_id not in (None, account.id) or request.project_domain_name not in (
            None,
            account.name,
        ):
            raise AuthenticationFailed("the user has no access to the requested project")
        project = store.find_project(
            conn, account.id, project_id=request.project_id, name=request.project_name
        )
        if project is None:
            raise AuthenticationFailed("the user has no access to the requested project")
        return project


def _locked(failures: store.LoginFailures | None, now: datetime) -> bool:
    return failures is not None and failures.locked_until is not None and now < failures.locked_until


def role_of(user: User) -> dict[str, str]:
    name = "te_admin" if user.is_root else "asm_user"
    return {"id": hashlib.sha256(name.encode()).hexdigest()[:32], "name": name}


def token_body(
    issued: IssuedToken, account: Account, user: User, project: tuple[str, str] | None, catalog_url: str
) -> dict[str, Any]:
    """Keystone's token document (auth.md §2); keystoneauth1 needs ``expires_at``."""
    domain = {"id": account.id, "name": account.name}
    token: dict[str, Any] = {
        "methods": ["password"],
        "issued_at": keystone_time(issued.claims.issued_at),
        "expires_at": keystone_time(issued.claims.expires_at),
        "user": {"id": user.id, "name": user.name, "domain": domain},
        "roles": [role_of(user)],
    }
    if project is not None:
        token["project"] = {"id": project[0], "name": project[1], "domain": domain}
        endpoint_id = hashlib.sha256(f"asm/{project[1]}".encode()).hexdigest()[:32]
        token["catalog"] = [
            {
                "type": "asm",
                "name": "asm",
                "id": hashlib.sha256(b"asm").hexdigest()[:32],
                "endpoints": [
                    {
                        "id": endpoint_id,
                        "interface": "public",
                        "region": project[1],
                        "region_id": project[1],
                        "url": catalog_url,
                    }
                ],
            }
        ]
    elif issued.claims.domain_scoped:
        token["domain"] = domain
        token["catalog"] = []
    return {"token": token}


def inspect_token(conn: Connection, tokens: TokenCodec, token: str, now: datetime) -> IssuedToken:
    """A token that is still good, with what its document shows; AuthenticationFailed otherwise."""
    claims = tokens.decode(token, now)
    record = store.get_user(conn, claims.user_id)
    if record is None or not (record.user.enabled and record.account.enabled):
        raise AuthenticationFailed("the token is no longer valid")
    if record.user.password_version != claims.password_version:
        raise AuthenticationFailed("the token was revoked by a password change")
    project = None
    if claims.project_id is not None:
        project = store.find_project(conn, record.account.id, project_id=claims.project_id)
        if project is None:
            raise AuthenticationFailed("the token's project no longer exists")
    return IssuedToken(token, claims, record.account, record.user, project)
