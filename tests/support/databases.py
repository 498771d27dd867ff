"""Throwaway databases for tests: a SQLite file, or a fresh PostgreSQL database per use."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

POSTGRES_ENV = "MESHUP_TEST_POSTGRES_URL"


def postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """CREATE DATABASE meshup_t_<random> on the test server; dropped afterwards."""
    base = postgres_base_url()
    assert base is not None, f"{POSTGRES_ENV} is not set"
    name = f"meshup_t_{secrets.token_hex(6)}"
    admin = make_url(base)
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'meshup.db'}"
    else:
        with fresh_postgres() as url:
            yield url
