"""The composition root: settings in, a wired ASGI application out."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp

from meshup import __version__
from meshup.audit import routes as audit_routes
from meshup.audit.service import AuditService
from meshup.clock import Clock, ControlledClock, SystemClock
from meshup.config import Settings
from meshup.control.setup import install_control
from meshup.drivers.base import ClusterDrivers
from meshup.drivers.simulated import SimulatedDrivers
from meshup.drivers.simulated_timing import SimTiming
from meshup.engine.worker import Engine, EngineConfig, RootFinished, WorkerPool, schedule
from meshup.errors import AuthenticationFailed, InvalidRequest, MeshupError, MethodNotAllowed, NotFound
from meshup.http import ops
from meshup.http.access_log import LineWriter
from meshup.http.access_log import write_to as write_access_log_to
from meshup.http.engine_metrics import EngineCollector
from meshup.http.envelopes import echo
from meshup.http.errors import error_response
from meshup.http.fastpath import MeshJobFastPath
from meshup.http.metrics import HttpMetrics
from meshup.http.middleware import RequestContextMiddleware
from meshup.http.requests import request_id
from meshup.http.runtime import Runtime
from meshup.iam import routes as iam_routes
from meshup.iam.login import LoginPolicy, LoginService
from meshup.iam.service import IdentityService
from meshup.jobs import routes as job_routes
from meshup.jobs.model import JobNode
from meshup.jobs.service import JobService
from meshup.keys import load_master_key
from meshup.meshes import routes as mesh_routes
from meshup.meshes.plans import OWNER as MESH_OWNER
from meshup.meshes.service import MeshService
from meshup.namespaces import routes as namespace_routes
from meshup.namespaces.service import NamespaceService
from meshup.store.db import Database
from meshup.store.hot import HotReader
from meshup.store.uow import UnitOfWork, UnitOfWorkFactory
from meshup.upgrades import routes as upgrade_routes
from meshup.upgrades.service import OWNER, UpgradeService
from meshup.upgrades.steps import STEPS

log = logging.getLogger("meshup")


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    db: Database | None = None,
    drivers: ClusterDrivers | None = None,
) -> Runtime:
    """Everything wired; ``drivers`` defaults to simulated clusters in the database.

    Without a ``clock``, IAM follows the system clock and everything else (engine, services,
    simulated clusters) a :class:`ControlledClock` the control API can stop and move."""
    sim: Clock = clock or ControlledClock(manual=settings.clock == "manual")
    clock = clock or SystemClock()
    db = db or Database(settings.database_url)
    db.migrate()
    drivers = drivers or SimulatedDrivers(db, sim, SimTiming(speed=settings.sim_speed))
    master_key = load_master_key(settings, db)
    identity = IdentityService(master_key, clock, clock_skew=settings.clock_skew)
    login = LoginService(
        identity.tokens,
        clock,
        LoginPolicy(
            max_failures=settings.login_max_failures,
            window=settings.login_failure_window,
            lockout=settings.login_lockout,
            token_ttl=settings.token_ttl,
            workers=settings.login_workers,
            queue=settings.login_queue,
            address_max_failures=settings.login_address_max_failures,
            address_window=settings.login_address_window,
        ),
    )
    units = UnitOfWorkFactory(db)
    upgrades = UpgradeService(identity, units, drivers=drivers, scheduler=schedule_in, clock=sim)
    meshes = MeshService(identity, units, drivers=drivers, scheduler=schedule_in, clock=sim)
    engine = Engine(
        db,
        sim,
        EngineConfig(lease=timedelta(seconds=settings.lease_seconds)),
        steps=STEPS,
        drivers=drivers,
        on_root_finished=RootDispatcher(
            {OWNER: upgrades.on_step_finished, MESH_OWNER: meshes.on_lifecycle_finished}
        ),
    )
    audit = AuditService(identity, units, clock, retention_days=settings.audit_retention_days)
    return Runtime(
        settings=settings,
        db=db,
        clock=clock,
        metrics=HttpMetrics(),
        identity=identity,
        login=login,
        jobs=JobService(identity, HotReader(db)),
        upgrades=upgrades,
        meshes=meshes,
        engine=engine,
        namespaces=NamespaceService(identity, units, drivers=drivers, clock=clock),
        audit=audit,
    )


def schedule_in(uow: UnitOfWork, root_id: str, now: datetime) -> None:
    """The engine's scheduler, inside the unit of work that wrote the tree."""
    schedule(uow.connection, root_id, now)


class RootDispatcher:
    """Tell the owner of a finished job tree (named in its root's payload)."""

    def __init__(self, owners: Mapping[str, RootFinished]) -> None:
        self.owners = owners

    def __call__(
        self, conn: Connection, root: JobNode, payloads: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None:
        owner = self.owners.get(str(payloads.get(root.id, {}).get("owner", "")))
        if owner is not None:
            owner(conn, root, payloads, now)


@functools.lru_cache(maxsize=64)
def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))


def allowed_methods(app: FastAPI, path: str) -> str:
    """The ``Allow`` value of a path: what the OpenAPI document lists for its template (GET implies HEAD)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        if _template_pattern(template).fullmatch(path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    runtime: Runtime | None = None,
    access_log_stream: BinaryIO | None = None,
) -> ASGIApp:
    """The application; with ``access_log_stream`` (a served process's stdout), the access log is
    written there from a thread while the application runs (``http.access_log``)."""
    rt = runtime or build_runtime(settings, clock=clock)
    rt.metrics.registry.register(
        EngineCollector.for_database(rt.db, rt.clock, live_within=settings.lease_seconds)
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool = (
            WorkerPool(rt.engine, settings.workers, chores=[rt.audit.purge]) if settings.workers > 0 else None
        )
        if pool is not None:
            pool.start()
        writer = None
        if settings.access_log and access_log_stream is not None:
            writer = LineWriter(access_log_stream).start()
            write_access_log_to(writer)
        try:
            yield
        finally:
            if writer is not None:
                write_access_log_to(None)
                writer.close()
            if pool is not None:
                # Drain: stop claiming, let steps in flight record their outcome.
                await run_in_threadpool(pool.stop)
            await rt.jobs.reader.close()
            rt.db.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="meshup",
        version=__version__,
        description=(
            "Huawei Cloud ASM mesh-upgrade service: mesh jobs, canary upgrade tasks, meshes, "
            "with IAM token or AK/SK (SDK-HMAC-SHA256, SDK-HMAC-SM3, V11-HMAC-SHA256) authentication."
        ),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.runtime = rt

    async def on_error(request: Request, exc: Exception) -> Response:
        return error_response(exc, path=request.url.path, request_id=request_id(request), metrics=rt.metrics)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(
            echo(str(part)) for part in first.get("loc", ()) if part not in ("body", "path", "query")
        )
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
        return await on_error(request, InvalidRequest(message))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return await on_error(request, NotFound("no such resource or API"))
        if exc.status_code == 405:
            allowed = allowed_methods(app, request.url.path)
            response = await on_error(
                request,
                MethodNotAllowed(
                    f"method {echo(request.method)} is not allowed on this resource (allowed: {allowed})"
                ),
            )
            response.headers["Allow"] = allowed
            return response
        return await on_error(request, InvalidRequest(str(exc.detail)))

    app.add_exception_handler(MeshupError, on_error)
    app.add_exception_handler(AuthenticationFailed, on_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_error)

    app.include_router(job_routes.router)
    app.include_router(upgrade_routes.router)
    app.include_router(mesh_routes.router)
    app.include_router(namespace_routes.router)
    app.include_router(iam_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(ops.router)
    install_control(app, rt)
    ops.install_openapi(app)
    # Outermost: request ids, metrics and the access log for everything, the fast path included.
    wrapped = RequestContextMiddleware(
        MeshJobFastPath(app, rt), metrics=rt.metrics, access_log=settings.access_log
    )
    # The console calls the whole application, as any client of the API would. Imported here so
    # that worker processes, which build a runtime but serve nothing, do not load templates.
    from meshup import console

    console.install(app, api=wrapped, secret=rt.identity.master_key.token_key)
    return wrapped
