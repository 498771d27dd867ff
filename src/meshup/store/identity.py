"""Reads and writes of accounts, projects, users, groups, keys and policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, insert, literal, null, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from meshup.iam.identity import Account, User
from meshup.store import tables as t
from meshup.timefmt import as_utc

IAM_EPOCH = "iam"


def read_epoch(conn: Connection, name: str) -> int:
    value = conn.execute(select(t.epochs.c.value).where(t.epochs.c.name == name)).scalar()
    return int(value or 0)


def bump_epoch(conn: Connection, name: str) -> None:
    """Tell every process that cached state of this kind changed (read at the next request)."""
    stmt: Any
    if conn.dialect.name == "postgresql":
        stmt = pg_insert(t.epochs).values(name=name, value=1)
    else:
        stmt = sqlite_insert(t.epochs).values(name=name, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={"value": t.epochs.c.value + 1})
    conn.execute(stmt)


def _account(row: Any) -> Account:
    return Account(id=row.id, name=row.name, enabled=bool(row.enabled))


def _user(row: Any) -> User:
    return User(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        is_root=bool(row.is_root),
        enabled=bool(row.enabled),
        password_version=int(row.password_version),
        tags=dict(row.tags or {}),
    )


@dataclass(frozen=True, slots=True)
class PolicyRow:
    kind: str  # identity | role
    scope_kind: str
    scope_value: str | None
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserRecord:
    account: Account
    user: User
    password_hash: str | None


def find_account(
    conn: Connection, *, account_id: str | None = None, name: str | None = None
) -> Account | None:
    query = select(t.accounts)
    if account_id is not None:
        query = query.where(t.accounts.c.id == account_id)
    if name is not None:
        query = query.where(t.accounts.c.name == name)
    row = conn.execute(query).first()
    return _account(row) if row else None


def get_user(conn: Connection, user_id: str) -> UserRecord | None:
    row = conn.execute(
        select(
            t.users, t.accounts.c.name.label("account_name"), t.accounts.c.enabled.label("account_enabled")
        )
        .join(t.accounts, t.accounts.c.id == t.users.c.account_id)
        .where(t.users.c.id == user_id)
    ).first()
    if row is None:
        return None
    account = Account(id=row.account_id, name=row.account_name, enabled=bool(row.account_enabled))
    return UserRecord(account=account, user=_user(row), password_hash=row.password_hash)


def find_user(conn: Connection, account_id: str, name: str) -> UserRecord | None:
    user_id = conn.execute(
        select(t.users.c.id).where(t.users.c.account_id == account_id, t.users.c.name == name)
    ).scalar()
    return get_user(conn, user_id) if user_id else None


def account_projects(conn: Connection, account_id: str) -> dict[str, str]:
    rows = conn.execute(
        select(t.projects.c.id, t.projects.c.name).where(t.projects.c.account_id == account_id)
    ).all()
    return {row.id: row.name for row in rows}


def find_project(
    conn: Connection, account_id: str, *, project_id: str | None = None, name: str | None = None
) -> tuple[str, str] | None:
    query = select(t.projects.c.id, t.projects.c.name).where(t.projects.c.account_id == account_id)
    if project_id is not None:
        query = query.where(t.projects.c.id == project_id)
    if name is not None:
        query = query.where(t.projects.c.name == name)
    row = conn.execute(query).first()
    return (row.id, row.name) if row else None


def user_policies(conn: Connection, user_id: str) -> list[PolicyRow]:
    """The user's own policies and those of every group it belongs to, in a stable order."""
    group_ids = select(t.group_members.c.group_id).where(t.group_members.c.user_id == user_id)
    rows = conn.execute(
        select(t.policies)
        .where(
            ((t.policies.c.owner_kind == "user") & (t.policies.c.owner_id == user_id))
            | ((t.policies.c.owner_kind == "group") & t.policies.c.owner_id.in_(group_ids))
        )
        .order_by(t.policies.c.owner_kind.desc(), t.policies.c.owner_id, t.policies.c.position)
    ).all()
    return [PolicyRow(r.kind, r.scope_kind, r.scope_value, dict(r.document)) for r in rows]


@dataclass(frozen=True, slots=True)
class AccessKeyRow:
    ak: str
    user_id: str
    sk_encrypted: bytes
    security_token_sha256: str | None
    expires_at: datetime | None
    enabled: bool


def get_access_key(conn: Connection, ak: str) -> AccessKeyRow | None:
    row = conn.execute(select(t.access_keys).where(t.access_keys.c.ak == ak)).first()
    if row is None:
        return None
    return AccessKeyRow(
        ak=row.ak,
        user_id=row.user_id,
        sk_encrypted=bytes(row.sk_encrypted),
        security_token_sha256=row.security_token_sha256,
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        enabled=bool(row.enabled),
    )


def count_accounts(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(t.accounts)).scalar() or 0)


def get_setting(conn: Connection, name: str) -> str | None:
    value = conn.execute(select(t.settings.c.value).where(t.settings.c.name == name)).scalar()
    return None if value is None else str(value)


def set_setting(conn: Connection, name: str, value: str) -> None:
    if get_setting(conn, name) is None:
        conn.execute(insert(t.settings).values(name=name, value=value))
    else:
        conn.execute(update(t.settings).where(t.settings.c.name == name).values(value=value))


# -- login protection ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginFailures:
    count: int
    window_start: datetime
    locked_until: datetime | None


def get_login_failures(conn: Connection, user_id: str) -> LoginFailures | None:
    row = conn.execute(select(t.login_failures).where(t.login_failures.c.user_id == user_id)).first()
    if row is None:
        return None
    return LoginFailures(
        count=int(row._mapping["count"]),
        window_start=as_utc(row.window_start),
        locked_until=as_utc(row.locked_until) if row.locked_until else None,
    )


def record_login_failure(
    conn: Connection,
    user_id: str,
    now: datetime,
    *,
    max_failures: int,
    window: timedelta,
    lockout: timedelta,
) -> LoginFailures | None:
    """Count one failed login in a single statement, atomic under any concurrency.

    A window older than ``window`` starts over; the failure that reaches ``max_failures`` locks
    the user until ``now + lockout``. A user locked right now is left as is (None is returned).
    Concurrent callers, in any number of processes, serialise on the row: none is lost and none
    meets a duplicate key.
    """
    table = t.login_failures
    ts = table.c.window_start.type
    at = literal(now, ts)
    expired = table.c.window_start < literal(now - window, ts)
    count = case((expired, 1), else_=table.c.count + 1)
    locks = literal(now + lockout, ts)
    insert_stmt: Any = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    stmt = (
        insert_stmt.values(
            user_id=user_id,
            count=1,
            window_start=at,
            locked_until=now + lockout if max_failures <= 1 else None,
        )
        .on_conflict_do_update(
            index_elements=[table.c.user_id],
            set_={
                "count": count,
                "window_start": case((expired, at), else_=table.c.window_start),
                "locked_until": case((count >= max_failures, locks), else_=null()),
            },
            where=or_(table.c.locked_until.is_(None), table.c.locked_until <= at),
        )
        .returning(table.c.count, table.c.window_start, table.c.locked_until)
    )
    row = conn.execute(stmt).first()
    if row is None:
        return None
    return LoginFailures(
        count=int(row[0]),
        window_start=as_utc(row[1]),
        locked_until=as_utc(row[2]) if row[2] is not None else None,
    )


def clear_login_failures(conn: Connection, user_id: str, now: datetime) -> bool:
    """After a correct password: forget the user's failures unless the user is locked right now.

    False when the user is locked (the login must be refused), in the same transaction that would
    otherwise have cleared the record.
    """
    table = t.login_failures
    at = literal(now, table.c.locked_until.type)
    conn.execute(
        table.delete().where(
            table.c.user_id == user_id, or_(table.c.locked_until.is_(None), table.c.locked_until <= at)
        )
    )
    still_locked = conn.execute(select(table.c.user_id).where(table.c.user_id == user_id)).first()
    return still_locked is None
