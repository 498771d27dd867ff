"""Faults of simulated clusters at run time: the rules seed files declare (``clusters.faults``,
read by ``drivers.simulated_faults``), listed, added and removed while a server runs.

A fault added here carries an ``id``; one a seed file declared gets a stable id from its
cluster and its rule (it does not change as the fault fires).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from meshup.errors import InvalidRequest, NotFound, shown
from meshup.store import tables as t


@dataclass(frozen=True, slots=True)
class NewFault:
    cluster: str
    account: str | None
    job_type: str
    times: int | None
    reason: str
    extra: dict[str, Any]


def fault_id(account_id: str, cluster_id: str, rule: dict[str, Any]) -> str:
    if rule.get("id"):
        return str(rule["id"])
    declared = {key: value for key, value in rule.items() if key != "fired"}
    text = json.dumps([account_id, cluster_id, declared], sort_keys=True, default=str)
    return "seed-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _view(account_name: str, account_id: str, cluster_id: str, rule: dict[str, Any]) -> dict[str, Any]:
    view = {key: value for key, value in rule.items() if key != "id"}
    view.setdefault("fired", 0)
    return {
        "id": fault_id(account_id, cluster_id, rule),
        "account": account_name,
        "cluster": cluster_id,
        **view,
    }


def _clusters(conn: Connection, cluster: str | None, account: str | None, *, lock: bool = False) -> list[Any]:
    stmt = select(t.clusters.c.account_id, t.clusters.c.id, t.clusters.c.faults, t.accounts.c.name).join(
        t.accounts, t.accounts.c.id == t.clusters.c.account_id
    )
    if cluster is not None:
        stmt = stmt.where(t.clusters.c.id == cluster)
    if account is not None:
        stmt = stmt.where(t.accounts.c.name == account)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=t.clusters)
    return list(conn.execute(stmt.order_by(t.accounts.c.name, t.clusters.c.id)))


def list_faults(conn: Connection, cluster: str | None = None) -> list[dict[str, Any]]:
    return [
        _view(row.name, row.account_id, row.id, dict(rule))
        for row in _clusters(conn, cluster, None)
        for rule in row.faults or []
    ]


def add_fault(conn: Connection, fault: NewFault, now: datetime) -> dict[str, Any]:
    rows = _clusters(conn, fault.cluster, fault.account, lock=True)
    if not rows:
        raise NotFound(f"no simulated cluster {shown(fault.cluster)}")
    if len(rows) > 1:
        raise InvalidRequest(f"cluster {shown(fault.cluster)} exists in several accounts; name the account")
    row = rows[0]
    rule = {
        "id": "flt-" + secrets.token_hex(8),
        "jobType": fault.job_type,
        "times": fault.times,
        "reason": fault.reason,
        "fired": 0,
        **fault.extra,
    }
    _write(conn, row.account_id, row.id, [*(row.faults or []), rule], now)
    return _view(row.name, row.account_id, row.id, rule)


def delete_fault(conn: Connection, wanted: str, now: datetime) -> None:
    for row in _clusters(conn, None, None, lock=True):
        rules = list(row.faults or [])
        for index, rule in enumerate(rules):
            if fault_id(row.account_id, row.id, dict(rule)) == wanted:
                _write(conn, row.account_id, row.id, rules[:index] + rules[index + 1 :], now)
                return
    raise NotFound(f"no fault {shown(wanted)}")


def _write(conn: Connection, account_id: str, cluster_id: str, rules: list[Any], now: datetime) -> None:
    conn.execute(
        update(t.clusters)
        .where(t.clusters.c.account_id == account_id, t.clusters.c.id == cluster_id)
        .values(faults=rules, updated_at=now)
    )
