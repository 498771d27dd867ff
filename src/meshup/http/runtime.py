"""The objects a running server shares between requests, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from meshup.clock import Clock
from meshup.config import Settings
from meshup.http.metrics import HttpMetrics
from meshup.iam.login import LoginService
from meshup.iam.service import IdentityService
from meshup.jobs.service import JobService
from meshup.store.db import Database

if TYPE_CHECKING:
    from meshup.audit.service import AuditService
    from meshup.engine.worker import Engine
    from meshup.meshes.service import MeshService
    from meshup.namespaces.service import NamespaceService
    from meshup.upgrades.service import UpgradeService


@dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    clock: Clock
    metrics: HttpMetrics
    identity: IdentityService
    login: LoginService
    jobs: JobService
    upgrades: UpgradeService
    meshes: MeshService
    engine: Engine
    namespaces: NamespaceService
    audit: AuditService


def runtime(request: Request) -> Runtime:
    value: Runtime = request.app.state.runtime
    return value
