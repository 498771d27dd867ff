"""PostgreSQL formats the mesh-job timestamps itself; it must say what ``rfc3339`` says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from meshup.timefmt import postgres_rfc3339, rfc3339
from tests.support.databases import fresh_postgres

pytestmark = pytest.mark.postgres

offsets = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)))
instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | offsets
)


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[Any]]:
    with fresh_postgres() as url:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as connection:
            # The session's zone must not matter.
            connection.execute("SET TIME ZONE 'Asia/Kathmandu'")
            yield connection


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instants)
def test_postgres_formatting_equals_rfc3339(conn: psycopg.Connection[Any], instant: datetime) -> None:
    row = conn.execute("SELECT " + postgres_rfc3339("%s::timestamptz"), (instant,)).fetchone()
    assert row is not None and row[0] == rfc3339(instant)


def test_postgres_formatting_of_null_is_empty(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT " + postgres_rfc3339("NULL::timestamptz")).fetchone()
    assert row is not None and row[0] == "" == rfc3339(None)
