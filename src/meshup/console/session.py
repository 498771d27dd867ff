"""The console's cookies: the signed-in session (the IAM token itself) and request-forgery tokens.

The session cookie carries the token the API issued and what the pages show about it (account,
user, project); it is HMAC-signed so those names cannot be edited, though the API trusts only the
token. Forms carry a token derived with HMAC from the session's IAM token (or, before sign-in,
from a random pre-session cookie) and a server secret, so a page of another site cannot post one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

SESSION_COOKIE = "meshup_console"
LOGIN_COOKIE = "meshup_console_login"
COOKIE_PATH = "/console"
MAX_COOKIE_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    account: str
    user: str
    project_id: str
    project_name: str

    @property
    def who(self) -> str:
        return f"{self.account}/{self.user}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signed cookie values and forgery tokens, all under one key derived for the console."""

    def __init__(self, master: bytes) -> None:
        self._key = hmac.new(master, b"meshup/console", hashlib.sha256).digest()

    def _mac(self, purpose: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\0{text}".encode(), hashlib.sha256).digest())

    def seal(self, purpose: str, value: dict[str, object]) -> str:
        encoded = _b64(orjson.dumps(value))
        return f"{encoded}.{self._mac(purpose, encoded)}"

    def unseal(self, purpose: str, text: str | None) -> dict[str, object] | None:
        if not text or len(text) > MAX_COOKIE_LENGTH:
            return None
        encoded, _, mac = text.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(purpose, encoded).encode()):
            return None
        try:
            value = orjson.loads(_unb64(encoded))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None

    # -- the session ----------------------------------------------------------------------------

    def session_cookie(self, session: Session) -> str:
        return self.seal(
            "session",
            {
                "t": session.token,
                "a": session.account,
                "u": session.user,
                "p": session.project_id,
                "n": session.project_name,
            },
        )

    def session(self, cookie: str | None) -> Session | None:
        value = self.unseal("session", cookie)
        if value is None:
            return None
        fields = [value.get(key) for key in ("t", "a", "u", "p", "n")]
        if not all(isinstance(field, str) and field for field in fields):
            return None
        token, account, user, project_id, project_name = (str(field) for field in fields)
        return Session(token, account, user, project_id, project_name)

    # -- request forgery ------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.token)

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf_token(session).encode()
        )

    @staticmethod
    def new_login_nonce() -> str:
        return secrets.token_urlsafe(24)

    def login_token(self, nonce: str) -> str:
        return self._mac("login", nonce)

    def login_ok(self, nonce: str | None, presented: str | None) -> bool:
        if not nonce or presented is None:
            return False
        return hmac.compare_digest(presented.encode(), self.login_token(nonce).encode())
