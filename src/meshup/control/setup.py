"""Wiring the control API into an application, when the settings allow it."""

from __future__ import annotations

from fastapi import FastAPI

from meshup.config import Settings
from meshup.control import routes
from meshup.control.access import control_api_enabled, derived_token
from meshup.control.service import ControlService
from meshup.http.runtime import Runtime
from meshup.iam.secrets import MasterKey


def control_token(settings: Settings, master_key: MasterKey) -> str:
    return settings.control_token or derived_token(master_key)


def install_control(app: FastAPI, rt: Runtime) -> bool:
    """Serve ``/meshup-api/`` if enabled; the state now is what ``reset`` returns to."""
    if not control_api_enabled(rt.settings.control_api, rt.settings.host):
        return False
    control = ControlService(rt)
    control.take_start_snapshot()
    routes.install(app, control, control_token(rt.settings, rt.identity.master_key))
    return True
