"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return str(_hasher.hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        return False
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash of nothing anyone knows: verifying against it costs as much as a real check, so an
# unknown user name takes as long as a wrong password. Written out rather than computed: hashing
# at import was a tenth of a second of every start (a unit test keeps its cost the hasher's own).
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$7UPJJr/slZ+JamrYNxA49w$Zss68LoEZYQ2C8/V5jYwhSUfM1iUnN/Jn6ETVvUeyT8"
)
