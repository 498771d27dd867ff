"""Request-head limits: defaults a gateway would use, from flags or MESHUP_* variables."""

from __future__ import annotations

import pytest

from meshup.config import Settings, from_environment


def test_defaults() -> None:
    settings = Settings()
    assert settings.max_header_line_bytes == 8 * 1024
    assert settings.max_header_bytes == 32 * 1024
    assert settings.max_headers == 100
    assert 10 <= settings.head_timeout_seconds <= 30


def test_from_the_environment() -> None:
    settings = from_environment(
        {
            "MESHUP_MAX_HEADER_LINE_BYTES": "4096",
            "MESHUP_MAX_HEADER_BYTES": "16384",
            "MESHUP_MAX_HEADERS": "50",
            "MESHUP_HEAD_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert (settings.max_header_line_bytes, settings.max_header_bytes) == (4096, 16384)
    assert (settings.max_headers, settings.head_timeout_seconds) == (50, 2.5)


def test_flags_win_over_the_environment() -> None:
    settings = from_environment({"MESHUP_MAX_HEADERS": "50"}).with_overrides(
        max_headers=20, max_header_bytes=None
    )
    assert settings.max_headers == 20
    assert settings.max_header_bytes == 32 * 1024


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MESHUP_MAX_HEADERS", "0", "--max-headers / MESHUP_MAX_HEADERS must be positive"),
        ("MESHUP_MAX_HEADER_BYTES", "-1", "--max-header-bytes / MESHUP_MAX_HEADER_BYTES must be positive"),
        (
            "MESHUP_HEAD_TIMEOUT_SECONDS",
            "0",
            "--head-timeout-seconds / MESHUP_HEAD_TIMEOUT_SECONDS must be positive",
        ),
        ("MESHUP_MAX_HEADER_LINE_BYTES", "lots", "MESHUP_MAX_HEADER_LINE_BYTES"),
    ],
)
def test_invalid_limits_are_refused(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_environment({variable: value})
