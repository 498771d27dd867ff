"""IAM tokens: opaque to clients, HMAC-signed by the server, so any process can check them.

A token names its user, its scope, its expiry and the user's password version; a password change
(version bump), a disabled or deleted user or account ends every token issued before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from meshup.errors import AuthenticationFailed

_PREFIX = "MU1."
MAX_TOKEN_LENGTH = 2048
MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    project_id: str | None  # None: unscoped or domain-scoped
    domain_scoped: bool
    password_version: int
    issued_at: datetime
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key
        # Verified tokens, so a token polled with many times is checked once (expiry still is).
        self._verified: dict[str, TokenClaims] = {}

    def issue(self, claims: TokenClaims) -> str:
        body = orjson.dumps(
            {
                "u": claims.user_id,
                "p": claims.project_id,
                "d": claims.domain_scoped,
                "v": claims.password_version,
                "i": int(claims.issued_at.timestamp()),
                "e": int(claims.expires_at.timestamp()),
                "n": secrets.token_hex(8),
            }
        )
        encoded = _b64(body)
        mac = hmac.new(self._key, encoded.encode(), hashlib.sha256).digest()
        return f"{_PREFIX}{encoded}.{_b64(mac)}"

    def decode(self, token: str, now: datetime) -> TokenClaims:
        """Check the signature and expiry; the caller checks the user behind it."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= MAX_CACHED_TOKENS:
                self._verified.clear()
            self._verified[token] = claims
        if now >= claims.expires_at:
            raise AuthenticationFailed("the token has expired", expired=True)
        return claims

    def _verify(self, token: str) -> TokenClaims:
        if len(token) > MAX_TOKEN_LENGTH or not token.startswith(_PREFIX):
            raise AuthenticationFailed("the token is not valid")
        encoded, _, mac_text = token[len(_PREFIX) :].partition(".")
        try:
            mac = _unb64(mac_text)
            expected = hmac.new(self._key, encoded.encode(), hashlib.sha256).digest()
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            raise AuthenticationFailed("the token is not valid") from exc
        if not hmac.compare_digest(mac, expected):
            raise AuthenticationFailed("the token is not valid")
        try:
            data = orjson.loads(_unb64(encoded))
            claims = TokenClaims(
                user_id=str(data["u"]),
                project_id=None if data["p"] is None else str(data["p"]),
                domain_scoped=bool(data["d"]),
                password_version=int(data["v"]),
                issued_at=datetime.fromtimestamp(int(data["i"]), UTC),
                expires_at=datetime.fromtimestamp(int(data["e"]), UTC),
            )
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise AuthenticationFailed("the token is not valid") from exc
        return claims
