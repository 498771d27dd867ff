"""The one place where instants become wire strings and back.

Wire timestamps are RFC 3339 UTC with second precision (contract §1). ``rfc3339`` is the
definition. The mesh-job read formats every timestamp of a tree on each poll without building
datetimes: ``rfc3339_of_sqlite_text`` cuts SQLite's stored text, ``postgres_rfc3339`` is SQL for
PostgreSQL; tests hold both to ``rfc3339`` for random instants.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(instant: datetime | None) -> str:
    """RFC 3339 UTC with second precision; a missing instant is the empty string (contract §1)."""
    if instant is None:
        return ""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    elif instant.utcoffset():
        instant = instant.astimezone(UTC)
    # Fields, not strftime: the year is always four digits, whatever the platform's C library does.
    return (
        f"{instant.year:04d}-{instant.month:02d}-{instant.day:02d}"
        f"T{instant.hour:02d}:{instant.minute:02d}:{instant.second:02d}Z"
    )


def rfc3339_of_sqlite_text(stored: str | None) -> str:
    """``rfc3339`` of a UTC instant as SQLite holds it (``YYYY-MM-DD HH:MM:SS.ffffff`` text).

    A cut in Python: cheaper than SQLite's string functions, and exact, unlike SQLite's
    ``strftime``, which works in milliseconds and would round 10:00:05.9996 up to :06."""
    return f"{stored[:10]}T{stored[11:19]}Z" if stored else ""


def postgres_rfc3339(column: str) -> str:
    """SQL for PostgreSQL that formats a ``timestamptz`` column as ``rfc3339`` does ("" for NULL)."""
    return f"COALESCE(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"


def keystone_time(instant: datetime) -> str:
    """Keystone's token timestamps carry microseconds: 2026-11-28T10:00:00.000000Z."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset); naive input is taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def as_utc(instant: datetime) -> datetime:
    """Databases may hand back naive datetimes (SQLite); they are stored as UTC."""
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)
