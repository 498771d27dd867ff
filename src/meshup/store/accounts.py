"""Writes of the identity model: used by seed files and first start (idempotent upserts by name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from meshup.store import tables as t


def upsert_account(conn: Connection, *, name: str, account_id: str, enabled: bool, now: datetime) -> str:
    row = conn.execute(select(t.accounts.c.id).where(t.accounts.c.name == name)).first()
    if row is None:
        conn.execute(insert(t.accounts).values(id=account_id, name=name, enabled=enabled, created_at=now))
        return account_id
    conn.execute(update(t.accounts).where(t.accounts.c.id == row.id).values(enabled=enabled))
    return str(row.id)


def upsert_project(conn: Connection, *, account_id: str, name: str, project_id: str) -> str:
    row = conn.execute(
        select(t.projects.c.id).where(t.projects.c.account_id == account_id, t.projects.c.name == name)
    ).first()
    if row is None:
        conn.execute(insert(t.projects).values(id=project_id, account_id=account_id, name=name, enabled=True))
        return project_id
    return str(row.id)


def upsert_enterprise_project(conn: Connection, *, account_id: str, ep_id: str, name: str) -> None:
    key = (t.enterprise_projects.c.account_id == account_id) & (t.enterprise_projects.c.id == ep_id)
    if conn.execute(select(t.enterprise_projects.c.id).where(key)).first() is None:
        conn.execute(insert(t.enterprise_projects).values(account_id=account_id, id=ep_id, name=name))
    else:
        conn.execute(update(t.enterprise_projects).where(key).values(name=name))


def enterprise_project_ids(conn: Connection, account_id: str) -> set[str]:
    rows = conn.execute(
        select(t.enterprise_projects.c.id).where(t.enterprise_projects.c.account_id == account_id)
    ).all()
    return {str(row.id) for row in rows}


def user_row(conn: Connection, account_id: str, name: str) -> Any:
    return conn.execute(
        select(t.users).where(t.users.c.account_id == account_id, t.users.c.name == name)
    ).first()


def insert_user(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(t.users).values(**values))


def update_user(conn: Connection, user_id: str, values: Mapping[str, Any]) -> None:
    if values:
        conn.execute(update(t.users).where(t.users.c.id == user_id).values(**values))


def upsert_group(conn: Connection, *, account_id: str, name: str, group_id: str) -> str:
    row = conn.execute(
        select(t.groups.c.id).where(t.groups.c.account_id == account_id, t.groups.c.name == name)
    ).first()
    if row is None:
        conn.execute(insert(t.groups).values(id=group_id, account_id=account_id, name=name))
        return group_id
    return str(row.id)


def set_memberships(conn: Connection, user_id: str, group_ids: Sequence[str]) -> None:
    conn.execute(t.group_members.delete().where(t.group_members.c.user_id == user_id))
    if group_ids:
        conn.execute(insert(t.group_members), [{"group_id": g, "user_id": user_id} for g in group_ids])


def access_key_row(conn: Connection, ak: str) -> Any:
    return conn.execute(select(t.access_keys).where(t.access_keys.c.ak == ak)).first()


def put_access_key(conn: Connection, values: Mapping[str, Any]) -> None:
    if access_key_row(conn, str(values["ak"])) is None:
        conn.execute(insert(t.access_keys).values(**values))
    else:
        changes = {k: v for k, v in values.items() if k not in ("ak", "created_at")}
        conn.execute(update(t.access_keys).where(t.access_keys.c.ak == values["ak"]).values(**changes))


def set_policies(
    conn: Connection,
    *,
    account_id: str,
    owner_kind: str,
    owner_id: str,
    policies: Sequence[Mapping[str, Any]],
) -> None:
    """Replace the policies attached to a user or group with ``policies`` (kind, scope, document)."""
    conn.execute(
        t.policies.delete().where(t.policies.c.owner_kind == owner_kind, t.policies.c.owner_id == owner_id)
    )
    rows = [
        {
            "account_id": account_id,
            "owner_kind": owner_kind,
            "owner_id": owner_id,
            "kind": policy["kind"],
            "scope_kind": policy["scope_kind"],
            "scope_value": policy.get("scope_value"),
            "position": position,
            "document": policy["document"],
        }
        for position, policy in enumerate(policies)
    ]
    if rows:
        conn.execute(insert(t.policies), rows)


class EnterpriseProjectRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def ids(self, account_id: str) -> set[str]:
        """The account's enterprise projects (the default one, "0", is implicit)."""
        return enterprise_project_ids(self.conn, account_id)
