"""The one place where instants become wire strings and back."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(instant: datetime | None) -> str:
    """RFC 3339 UTC with second precision; a missing instant is the empty string (contract §1)."""
    if instant is None:
        return ""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
