"""The server master key and what is derived from it: SK encryption at rest and token signing.

The master key comes from ``MESHUP_MASTER_KEY`` (any string of 32+ characters, or base64 of 32
bytes) or from a key file created with mode 0600 on first start. Sub-keys are derived with HKDF so
one secret never serves two purposes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SK_PREFIX = b"v1"


class MasterKeyError(RuntimeError):
    """The master key is missing, malformed, or not the one this database was set up with."""


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"meshup/{purpose}".encode()).derive(
        master
    )


class MasterKey:
    def __init__(self, material: bytes) -> None:
        if len(material) < 32:
            raise MasterKeyError("the master key must hold at least 32 bytes")
        self._sk_cipher = AESGCM(_derive(material, "sk-encryption"))
        self.token_key = _derive(material, "token-signing")
        self._check_key = _derive(material, "key-check")

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        text = text.strip()
        try:
            raw = base64.b64decode(text, validate=True)
            if len(raw) >= 32:
                return cls(raw)
        except ValueError:
            pass
        return cls(text.encode())

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Read the key file, creating it (mode 0600, never overwritten) when it does not exist."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            material = base64.b64encode(secrets.token_bytes(32))
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first; read theirs
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(material + b"\n")
        return cls.from_text(path.read_text())

    def encrypt_sk(self, ak: str, sk: str) -> bytes:
        """AES-GCM with the AK as associated data, so a ciphertext cannot be moved to another key."""
        nonce = secrets.token_bytes(12)
        return _SK_PREFIX + nonce + self._sk_cipher.encrypt(nonce, sk.encode(), ak.encode())

    def decrypt_sk(self, ak: str, blob: bytes) -> str:
        if not blob.startswith(_SK_PREFIX):
            raise MasterKeyError("unknown secret key encoding")
        nonce, sealed = blob[2:14], blob[14:]
        try:
            return self._sk_cipher.decrypt(nonce, sealed, ak.encode()).decode()
        except InvalidTag as exc:
            raise MasterKeyError("a stored secret key cannot be decrypted with this master key") from exc

    def check_value(self) -> str:
        """A fingerprint stored in the database, to notice a wrong key at start-up."""
        return hmac.new(self._check_key, b"meshup master key check", hashlib.sha256).hexdigest()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
