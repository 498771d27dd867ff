"""Settings from command-line flags and ``MESHUP_*`` environment variables (flags win)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///meshup.db"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    master_key: str | None = field(default=None, repr=False)
    master_key_file: Path | None = None
    token_ttl: timedelta = timedelta(hours=24)
    clock_skew: timedelta = timedelta(minutes=15)
    login_max_failures: int = 5
    login_failure_window: timedelta = timedelta(minutes=15)
    login_lockout: timedelta = timedelta(minutes=15)
    access_log: bool = True
    log_level: str = "info"
    public_url: str | None = None  # advertised in token catalogues; default http://host:port
    max_body_bytes: int = 1024 * 1024
    workers: int = 2  # engine worker threads in this process; 0 = none (API only)
    sim_speed: float = 1.0  # simulated-cluster time factor: 0 = instant, 0.5 = twice as fast
    lease_seconds: float = 30.0
    audit_retention_days: int = 7  # traces older than this are purged; 0 keeps them forever

    @property
    def advertised_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _minutes(value: str) -> timedelta:
    return timedelta(minutes=float(value))


def from_environment(env: dict[str, str] | None = None) -> Settings:
    """Read ``MESHUP_*`` variables; unknown ones are ignored, malformed ones are errors."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    simple: dict[str, tuple[str, Callable[[str], Any]]] = {
        "MESHUP_DATABASE_URL": ("database_url", str),
        "MESHUP_HOST": ("host", str),
        "MESHUP_PORT": ("port", int),
        "MESHUP_MASTER_KEY": ("master_key", str),
        "MESHUP_MASTER_KEY_FILE": ("master_key_file", Path),
        "MESHUP_TOKEN_TTL_HOURS": ("token_ttl", lambda v: timedelta(hours=float(v))),
        "MESHUP_CLOCK_SKEW_MINUTES": ("clock_skew", _minutes),
        "MESHUP_LOGIN_MAX_FAILURES": ("login_max_failures", int),
        "MESHUP_LOGIN_FAILURE_WINDOW_MINUTES": ("login_failure_window", _minutes),
        "MESHUP_LOGIN_LOCKOUT_MINUTES": ("login_lockout", _minutes),
        "MESHUP_ACCESS_LOG": ("access_log", lambda v: v.strip().lower() not in ("0", "false", "no", "off")),
        "MESHUP_LOG_LEVEL": ("log_level", str),
        "MESHUP_PUBLIC_URL": ("public_url", str),
        "MESHUP_WORKERS": ("workers", int),
        "MESHUP_SIM_SPEED": ("sim_speed", float),
        "MESHUP_LEASE_SECONDS": ("lease_seconds", float),
        "MESHUP_AUDIT_RETENTION_DAYS": ("audit_retention_days", int),
    }
    for variable, (name, convert) in simple.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        try:
            values[name] = convert(raw)
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from exc
    return Settings(**values)
