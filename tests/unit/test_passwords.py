"""The stand-in hash unknown user names are checked against."""

from __future__ import annotations

from meshup.iam.passwords import DUMMY_HASH, hash_password, verify_password


def parameters(encoded: str) -> str:
    """``$argon2id$v=19$m=…,t=…,p=…``: what a verification costs, without salt and digest."""
    return "$".join(encoded.split("$")[:4])


def test_checking_against_it_costs_what_checking_a_real_hash_costs() -> None:
    assert parameters(DUMMY_HASH) == parameters(hash_password("any password"))


def test_no_password_matches_it() -> None:
    for guess in ("", "meshup-unknown-user-placeholder", "password", "Root-Passw0rd!"):
        assert not verify_password(DUMMY_HASH, guess)
