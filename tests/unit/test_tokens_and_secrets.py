"""Token signing and secret-key encryption."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshup.errors import AuthenticationFailed
from meshup.iam.secrets import MasterKey, MasterKeyError
from meshup.iam.tokens import TokenClaims, TokenCodec

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def claims(**overrides: object) -> TokenClaims:
    values: dict[str, object] = {
        "user_id": "u" * 32,
        "project_id": "p" * 32,
        "domain_scoped": False,
        "password_version": 3,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(hours=24),
    }
    values.update(overrides)
    return TokenClaims(**values)  # type: ignore[arg-type]


def test_token_round_trip() -> None:
    codec = TokenCodec(b"k" * 32)
    token = codec.issue(claims())
    assert codec.decode(token, NOW + timedelta(hours=1)) == claims()


def test_token_expiry_is_reported_as_expired() -> None:
    codec = TokenCodec(b"k" * 32)
    token = codec.issue(claims())
    with pytest.raises(AuthenticationFailed) as info:
        codec.decode(token, NOW + timedelta(hours=24))
    assert info.value.code == "APIGW.0307"


@pytest.mark.parametrize("position", [5, 20, -3])
def test_tampered_tokens_are_refused(position: int) -> None:
    codec = TokenCodec(b"k" * 32)
    token = codec.issue(claims())
    flipped = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
    with pytest.raises(AuthenticationFailed):
        codec.decode(flipped, NOW)


def test_token_from_another_key_is_refused() -> None:
    token = TokenCodec(b"a" * 32).issue(claims())
    with pytest.raises(AuthenticationFailed):
        TokenCodec(b"b" * 32).decode(token, NOW)


@pytest.mark.parametrize("garbage", ["", "MU1.", "MU1.x.y", "MU1.%%%.%%%", "x" * 5000, "MU1.e30.AAAA"])
def test_garbage_tokens_are_refused(garbage: str) -> None:
    with pytest.raises(AuthenticationFailed):
        TokenCodec(b"k" * 32).decode(garbage, NOW)


def test_secret_keys_are_sealed_and_bound_to_their_access_key() -> None:
    key = MasterKey(b"m" * 32)
    sealed = key.encrypt_sk("AK1", "secret-value-123")
    assert b"secret-value-123" not in sealed
    assert key.decrypt_sk("AK1", sealed) == "secret-value-123"
    with pytest.raises(MasterKeyError):
        key.decrypt_sk("AK2", sealed)
    with pytest.raises(MasterKeyError):
        MasterKey(b"n" * 32).decrypt_sk("AK1", sealed)


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "meshup.key"
    first = MasterKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    second = MasterKey.load_or_create(path)
    assert first.check_value() == second.check_value()


def test_short_master_keys_are_refused() -> None:
    with pytest.raises(MasterKeyError):
        MasterKey(b"short")
