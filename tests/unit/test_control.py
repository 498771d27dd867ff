"""Pure parts of the control API: the simulated clock, when the API is on, the token, the CLI's sources."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshup.client.admin import resolve
from meshup.client.errors import CredentialsError
from meshup.clock import ControlledClock, FixedClock, SystemClock, jumpable
from meshup.config import Settings
from meshup.control.access import check_token, control_api_enabled, derived_token
from meshup.errors import Forbidden
from meshup.iam.secrets import MasterKey

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_manual_clock_moves_only_when_told() -> None:
    wall = Wall()
    clock = ControlledClock(manual=True, wall=wall)
    wall.now += timedelta(hours=1)
    assert clock.now() == T0
    clock.advance(90)
    assert clock.now() == T0 + timedelta(seconds=90)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(T0)
    assert jumpable(clock) is clock


def test_system_mode_runs_at_its_speed_from_where_it_stood() -> None:
    wall = Wall()
    clock = ControlledClock(manual=True, wall=wall)
    clock.advance(3600)
    clock.configure(manual=False, speed=10)
    wall.now += timedelta(seconds=2)
    assert clock.now() == T0 + timedelta(seconds=3620)  # no jump back to the wall clock
    assert jumpable(clock) is None
    assert clock.speed == 10


def test_only_settable_clocks_are_jumpable() -> None:
    assert jumpable(SystemClock()) is None
    fixed = FixedClock(T0)
    assert jumpable(fixed) is fixed


@pytest.mark.parametrize(
    ("mode", "host", "enabled"),
    [
        ("auto", "127.0.0.1", True),
        ("auto", "::1", True),
        ("auto", "localhost", True),
        ("auto", "0.0.0.0", False),
        ("auto", "10.1.2.3", False),
        ("auto", "meshup.example", False),
        ("on", "0.0.0.0", True),
        ("off", "127.0.0.1", False),
    ],
)
def test_the_control_api_is_on_by_default_only_on_loopback(mode: str, host: str, enabled: bool) -> None:
    assert control_api_enabled(mode, host) is enabled


def test_settings_refuse_unknown_modes() -> None:
    with pytest.raises(ValueError, match="control API"):
        Settings(control_api="maybe")
    with pytest.raises(ValueError, match="clock"):
        Settings(clock="sundial")


def test_the_derived_token_is_stable_and_key_specific() -> None:
    text = base64.b64encode(secrets.token_bytes(32)).decode()
    one, other = (
        MasterKey.from_text(text),
        MasterKey.from_text(base64.b64encode(secrets.token_bytes(32)).decode()),
    )
    assert derived_token(one) == derived_token(MasterKey.from_text(text))
    assert derived_token(one) != derived_token(other)
    check_token(derived_token(one), derived_token(one))
    for given in (None, "", derived_token(other), "ünïcode"):
        with pytest.raises(Forbidden):
            check_token(derived_token(one), given)


def test_admin_finds_endpoint_and_token_flags_first_then_env_then_file(tmp_path: Path) -> None:
    saved = tmp_path / "meshup-credentials.json"
    saved.write_text('{"endpoint": "http://127.0.0.1:9999", "controlToken": "from-file"}')
    assert resolve(None, None, None, {}, tmp_path) == ("http://127.0.0.1:9999", "from-file")
    env = {"MESHUP_ENDPOINT": "http://127.0.0.1:7000", "MESHUP_CONTROL_TOKEN": "from-env"}
    assert resolve(None, None, None, env, tmp_path) == ("http://127.0.0.1:7000", "from-env")
    assert resolve("http://127.0.0.1:1", "flag", None, env, tmp_path) == ("http://127.0.0.1:1", "flag")
    with pytest.raises(CredentialsError, match="no control token"):
        resolve(None, None, None, {}, tmp_path / "elsewhere")
