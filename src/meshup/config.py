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
    login_workers: int = 0  # password checks at once; 0 = one per core
    login_queue: int | None = None  # password checks waiting beyond those; None = 8 per worker
    login_address_max_failures: int = 30  # per source address and window; 0 = no limit
    login_address_window: timedelta = timedelta(minutes=5)
    access_log: bool = True
    log_level: str = "info"
    public_url: str | None = None  # advertised in token catalogues; default http://host:port
    max_body_bytes: int = 1024 * 1024
    workers: int = 2  # engine worker threads in this process; 0 = none (API only)
    processes: int = 1  # serving processes behind the one port (``serve --processes``)
    sim_speed: float = 1.0  # simulated-cluster time factor: 0 = instant, 0.5 = twice as fast
    lease_seconds: float = 30.0
    # Request heads, as an API gateway bounds them: a longer line, a larger head or more header
    # lines are refused (414/431), and a head not complete within the timeout closes the connection.
    max_header_line_bytes: int = 8 * 1024
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    head_timeout_seconds: float = 15.0
    clock: str = "system"  # the simulated clock at start: system or manual (control API)
    control_api: str = "auto"  # on, off, or auto: on only when listening on loopback
    control_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_header_line_bytes", "max_header_bytes", "max_headers", "head_timeout_seconds"):
            if not getattr(self, name) > 0:
                flag, variable = name.replace("_", "-"), f"MESHUP_{name.upper()}"
                raise ValueError(f"--{flag} / {variable} must be positive")
        if self.processes < 1:
            raise ValueError(f"--processes / MESHUP_PROCESSES must be 1 or more, not {self.processes}")
        if self.clock not in ("system", "manual"):
            raise ValueError(f"clock must be system or manual, not {self.clock!r}")
        if self.control_api not in ("on", "off", "auto"):
            raise ValueError(f"control API must be on, off or auto, not {self.control_api!r}")

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


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, not {number}")
    return number


def _positive_minutes(value: str) -> timedelta:
    minutes = float(value)
    if not minutes > 0:
        raise ValueError(f"must be more than 0, not {value}")
    return timedelta(minutes=minutes)


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
        "MESHUP_LOGIN_WORKERS": ("login_workers", _count),
        "MESHUP_LOGIN_QUEUE": ("login_queue", _count),
        "MESHUP_LOGIN_ADDRESS_MAX_FAILURES": ("login_address_max_failures", _count),
        "MESHUP_LOGIN_ADDRESS_WINDOW_MINUTES": ("login_address_window", _positive_minutes),
        "MESHUP_ACCESS_LOG": ("access_log", lambda v: v.strip().lower() not in ("0", "false", "no", "off")),
        "MESHUP_LOG_LEVEL": ("log_level", str),
        "MESHUP_PUBLIC_URL": ("public_url", str),
        "MESHUP_WORKERS": ("workers", int),
        "MESHUP_PROCESSES": ("processes", int),
        "MESHUP_SIM_SPEED": ("sim_speed", float),
        "MESHUP_LEASE_SECONDS": ("lease_seconds", float),
        "MESHUP_MAX_HEADER_LINE_BYTES": ("max_header_line_bytes", int),
        "MESHUP_MAX_HEADER_BYTES": ("max_header_bytes", int),
        "MESHUP_MAX_HEADERS": ("max_headers", int),
        "MESHUP_HEAD_TIMEOUT_SECONDS": ("head_timeout_seconds", float),
        "MESHUP_CLOCK": ("clock", str),
        "MESHUP_CONTROL_API": ("control_api", str),
        "MESHUP_CONTROL_TOKEN": ("control_token", str),
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
