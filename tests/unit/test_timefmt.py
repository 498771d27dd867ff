"""``rfc3339``, and the cut of SQLite's stored text that the mesh-job read uses instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from meshup.store import tables as t
from meshup.timefmt import parse_rfc3339, rfc3339, rfc3339_of_sqlite_text

offsets = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)))
# Instants whose UTC conversion stays within datetime's range.
instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | offsets
)


def stored_by_sqlite(instant: datetime) -> str:
    """The text SQLAlchemy writes to SQLite for a timestamp column (the store writes UTC)."""
    dialect = sqlite.dialect()
    process = t.jobs.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return str(process(instant.astimezone(UTC)))


@given(instants)
def test_sqlite_text_cut_equals_rfc3339(instant: datetime) -> None:
    assert rfc3339_of_sqlite_text(stored_by_sqlite(instant)) == rfc3339(instant)


def test_sqlite_text_cut_truncates_like_rfc3339() -> None:
    almost = datetime(2026, 11, 27, 10, 0, 5, 999_900, tzinfo=UTC)
    assert rfc3339_of_sqlite_text(stored_by_sqlite(almost)) == rfc3339(almost) == "2026-11-27T10:00:05Z"


def test_missing_instants_are_empty() -> None:
    assert rfc3339(None) == "" == rfc3339_of_sqlite_text(None)


@given(instants)
def test_rfc3339_is_utc_with_second_precision(instant: datetime) -> None:
    text = rfc3339(instant)
    assert len(text) == 20 and text.endswith("Z")
    assert parse_rfc3339(text) == instant.astimezone(UTC).replace(microsecond=0)


def test_naive_instants_are_utc_and_years_have_four_digits() -> None:
    assert rfc3339(datetime(2026, 11, 27, 10, 0, 5, 999999)) == "2026-11-27T10:00:05Z"
    assert rfc3339(datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0005-01-02T03:04:05Z"
    assert rfc3339(datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))) == "2025-12-31T23:30:00Z"
