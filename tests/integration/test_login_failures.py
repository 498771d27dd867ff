"""Login protection on SQLite and PostgreSQL: the failure counter, and no transaction while hashing."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from meshup.clock import FixedClock
from meshup.errors import AuthenticationFailed
from meshup.iam import login as login_module
from meshup.iam.login import LoginPolicy, LoginRequest, LoginService
from meshup.iam.secrets import MasterKey
from meshup.iam.tokens import TokenCodec
from meshup.seed.apply import apply_seed
from meshup.seed.schema import load_seed
from meshup.store import identity as store
from meshup.store.db import Database, sqlite_path

SEED = Path(__file__).resolve().parents[1] / "e2e" / "login_seed.yaml"
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
LIMITS: dict[str, Any] = {
    "max_failures": 5,
    "window": timedelta(minutes=15),
    "lockout": timedelta(minutes=15),
}


@pytest.fixture
def victim(db: Database) -> str:
    with db.write() as conn:
        apply_seed(conn, load_seed(SEED), MasterKey(b"x" * 32), NOW)
    with db.read() as conn:
        account = store.find_account(conn, name="gate")
        assert account is not None
        record = store.find_user(conn, account.id, "victim")
    assert record is not None
    return record.user.id


def fail(db: Database, user_id: str, at: datetime) -> store.LoginFailures | None:
    with db.write() as conn:
        return store.record_login_failure(conn, user_id, at, **LIMITS)


def test_failures_count_up_and_the_fifth_locks(db: Database, victim: str) -> None:
    counted = [fail(db, victim, NOW + timedelta(minutes=n)) for n in range(5)]
    assert [c.count if c else None for c in counted] == [1, 2, 3, 4, 5]
    assert all(c is not None and c.window_start == NOW for c in counted)
    assert [c.locked_until if c else None for c in counted] == [None] * 4 + [NOW + timedelta(minutes=4 + 15)]
    # While locked, failures change nothing.
    assert fail(db, victim, NOW + timedelta(minutes=10)) is None
    with db.read() as conn:
        assert store.get_login_failures(conn, victim) == counted[-1]


def test_an_old_window_starts_over(db: Database, victim: str) -> None:
    for n in range(4):
        fail(db, victim, NOW + timedelta(minutes=n))
    later = NOW + timedelta(minutes=15, seconds=1)
    assert fail(db, victim, later) == store.LoginFailures(1, later, None)


def test_a_failure_after_the_lockout_within_the_window_locks_again(db: Database, victim: str) -> None:
    short = dict(LIMITS, lockout=timedelta(minutes=1))
    for _ in range(5):
        with db.write() as conn:
            store.record_login_failure(conn, victim, NOW, **short)
    with db.write() as conn:
        again = store.record_login_failure(conn, victim, NOW + timedelta(minutes=2), **short)
    assert again is not None and again.count == 6
    assert again.locked_until == NOW + timedelta(minutes=3)


def test_clearing_refuses_while_locked(db: Database, victim: str) -> None:
    fail(db, victim, NOW)
    with db.write() as conn:
        assert store.clear_login_failures(conn, victim, NOW)
        assert store.get_login_failures(conn, victim) is None
    for _ in range(5):
        fail(db, victim, NOW)
    with db.write() as conn:
        assert not store.clear_login_failures(conn, victim, NOW + timedelta(minutes=14))
    with db.write() as conn:
        assert store.clear_login_failures(conn, victim, NOW + timedelta(minutes=15))
        assert store.get_login_failures(conn, victim) is None


def test_concurrent_failures_are_all_counted_once(db: Database, victim: str) -> None:
    """Thirty writers at once, each in its own transaction: no error, no lost or extra count."""
    writers = 30
    start = threading.Barrier(writers)

    def one(_number: int) -> store.LoginFailures | None:
        start.wait()
        return fail(db, victim, NOW)

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(one, range(writers)))
    counted = sorted(r.count for r in results if r is not None)
    assert counted == [1, 2, 3, 4, 5]  # the rest met a locked user
    with db.read() as conn:
        final = store.get_login_failures(conn, victim)
    assert final is not None and final.count == 5 and final.locked_until == NOW + timedelta(minutes=15)


def test_concurrent_failures_below_the_limit_are_each_counted(db: Database, victim: str) -> None:
    writers = 20
    start = threading.Barrier(writers)

    def one(_number: int) -> store.LoginFailures | None:
        start.wait()
        with db.write() as conn:
            return store.record_login_failure(conn, victim, NOW, **dict(LIMITS, max_failures=1000))

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(one, range(writers)))
    assert sorted(r.count for r in results if r is not None) == list(range(1, writers + 1))


# --- the service: reads, hashes outside any transaction, records --------------------------------


def request(user: str, password: str) -> LoginRequest:
    return LoginRequest(
        user_id=None,
        user_name=user,
        user_domain_id=None,
        user_domain_name="gate",
        password=password,
        scope="project",
        project_id="9b2c3d4e5f60718293a4b5c6d7e8f90a",
        project_name=None,
        project_domain_id=None,
        project_domain_name=None,
        domain_id=None,
        domain_name=None,
    )


@pytest.fixture
def service(db: Database, victim: str) -> Iterator[LoginService]:
    login = LoginService(TokenCodec(b"k" * 32), FixedClock(NOW), LoginPolicy(workers=1))
    yield login
    login.close()


def test_lockout_through_the_service(db: Database, service: LoginService) -> None:
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            service.login(db, request("victim", "Wrong-Passw0rd!"))
    with pytest.raises(AuthenticationFailed) as locked:
        service.login(db, request("victim", "Victim-Passw0rd!"))
    with pytest.raises(AuthenticationFailed) as unknown:
        service.login(db, request("nobody", "Victim-Passw0rd!"))
    assert locked.value.why == unknown.value.why
    assert isinstance(service.clock, FixedClock)
    service.clock.advance(15 * 60)
    issued = service.login(db, request("victim", "Victim-Passw0rd!"))
    assert issued.project == ("9b2c3d4e5f60718293a4b5c6d7e8f90a", "cn-north-4")
    with db.read() as conn:
        assert store.get_login_failures(conn, issued.user.id) is None


def open_transactions(db: Database) -> int:
    """Transactions of other connections that are open right now (SQLite: the write lock is held)."""
    path = sqlite_path(db.url)
    if path is not None:
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            probe.close()
    dsn = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("victim", "Victim-Passw0rd!"),
        ("victim", "Wrong-Passw0rd!"),
        ("nobody", "Wrong-Passw0rd!"),
    ],
)
def test_no_transaction_is_open_while_a_password_is_checked(
    db: Database, service: LoginService, monkeypatch: pytest.MonkeyPatch, user: str, password: str
) -> None:
    seen: list[int] = []
    real = login_module.verify_password

    def watched(password_hash: str | None, candidate: str) -> bool:
        seen.append(open_transactions(db))
        return real(password_hash, candidate)

    monkeypatch.setattr(login_module, "verify_password", watched)
    with contextlib.suppress(AuthenticationFailed):
        service.login(db, request(user, password))
    assert seen == [0]  # exactly one check (unknown users too), with nothing held
