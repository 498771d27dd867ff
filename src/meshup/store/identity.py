"""Reads and writes of accounts, projects, users, groups, keys and policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
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


def put_login_failures(conn: Connection, user_id: str, value: LoginFailures | None) -> None:
    conn.execute(t.login_failures.delete().where(t.login_failures.c.user_id == user_id))
    if value is not None:
        conn.execute(
            insert(t.login_failures).values(
                user_id=user_id,
                count=value.count,
                window_start=value.window_start,
                locked_until=value.locked_until,
            )
        )
