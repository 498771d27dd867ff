"""Who may use the control API: whether it is on at all, and the token every call must carry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress

from meshup.errors import Forbidden
from meshup.iam.secrets import MasterKey

HEADER = "X-Meshup-Control-Token"
MODES = ("on", "off", "auto")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def control_api_enabled(mode: str, host: str) -> bool:
    """``auto`` (the default) serves the control API only to this machine: it can erase every
    account and move time, so reaching it from the network must be a deliberate choice."""
    if mode not in MODES:
        raise ValueError(f"control API mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        return is_loopback(host)
    return mode == "on"


def derived_token(master_key: MasterKey) -> str:
    """The default token: stable across restarts with the same key, and reveals nothing of it."""
    digest = hmac.new(master_key.token_key, b"meshup control API token", hashlib.sha256).digest()
    return "mct-" + base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def check_token(expected: str, given: str | None) -> None:
    if not given:
        raise Forbidden(f"the control API needs the server's control token in the {HEADER} header")
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden(f"the {HEADER} header does not hold this server's control token")
