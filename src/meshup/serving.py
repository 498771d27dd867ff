"""Serving the API over HTTP: in this process, or in N processes behind one port.

With ``processes`` above 1 this process does what must happen once (migrations, the first-start
account, a seed file: the command does those before calling here) and then only supervises:
uvicorn's supervisor binds the port, starts N serving processes and hands each the listening
socket, replaces one that dies (a SIGKILL included) and on SIGTERM or SIGINT stops them all,
each draining as a single server does. A serving process is spawned, not forked, so it imports
meshup afresh and builds its own runtime: its own engine workers (claims are transactions, as
with any number of ``meshup worker`` processes), caches, metrics and login budget.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from meshup.config import Settings
from meshup.gc_pause import pause_gc, resume_gc
from meshup.http.heads import HeadLimits, bounded_protocol
from meshup.http.metrics import HttpMetrics
from meshup.logs import configure_logging

# Open event streams would otherwise hold a SIGTERM until they end (up to an hour); after this
# grace the remaining connections close and the engine workers drain as usual.
GRACEFUL_SHUTDOWN_SECONDS = 10
_BUILT_IN_EACH_PROCESS = "meshup:app"  # never imported: ServeConfig.load builds the application
_PR_SET_PDEATHSIG = 1


def for_processes(settings: Settings) -> Settings:
    """``settings`` as N serving processes can honour them; ValueError for what they cannot.

    The control API moves one process's clock, holds one process's workers and resets to one
    process's start-up snapshot: with several processes it would act on whichever answered."""
    if settings.processes == 1:
        return settings
    if settings.control_api == "on":
        raise ValueError("the control API needs a single process: use --processes 1 with --control-api on")
    if settings.clock == "manual":
        raise ValueError("a manual clock is moved through the control API: use --processes 1")
    return settings.with_overrides(control_api="off")


def head_limits(settings: Settings) -> HeadLimits:
    return HeadLimits(
        max_line_bytes=settings.max_header_line_bytes,
        max_head_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        timeout=settings.head_timeout_seconds,
    )


class ServeConfig(uvicorn.Config):
    """uvicorn's configuration, with meshup's application and request-head protocol.

    Given an application (one process) it serves that; otherwise ``load`` builds one in the
    process that will serve it, after the supervisor has pickled this object across."""

    def __init__(self, settings: Settings, *, app: Any = None, metrics: HttpMetrics | None = None) -> None:
        self.settings = settings
        self.supervisor = os.getpid()
        super().__init__(
            app if app is not None else _BUILT_IN_EACH_PROCESS,
            host=settings.host,
            port=settings.port,
            http=bounded_protocol(head_limits(settings), metrics=metrics, access_log=settings.access_log)
            if app is not None
            else "h11",  # replaced in load(); a class made at run time cannot be pickled
            workers=settings.processes,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )

    def configure_logging(self) -> None:
        super().configure_logging()
        configure_logging(self.settings.log_level)

    def load(self) -> None:
        if self.app == _BUILT_IN_EACH_PROCESS:
            _end_with(self.supervisor)
            pause_gc()
            from meshup.app import build_runtime, create_app

            rt = build_runtime(self.settings)
            self.app = create_app(self.settings, runtime=rt, access_log_stream=sys.stdout.buffer)
            self.http = bounded_protocol(
                head_limits(self.settings), metrics=rt.metrics, access_log=self.settings.access_log
            )
            super().load()
            resume_gc()
            return
        super().load()


def serve(settings: Settings, *, app: Any = None, metrics: HttpMetrics | None = None) -> None:
    """Serve until SIGTERM or SIGINT: ``app`` here, or (``settings.processes`` > 1) N processes."""
    if settings.processes == 1:
        assert app is not None, "one process serves the application built by the caller"
        server = uvicorn.Server(ServeConfig(settings, app=app, metrics=metrics))
        resume_gc()
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    config = ServeConfig(settings)
    resume_gc()
    socket = config.bind_socket()
    try:
        Multiprocess(config, sockets=[socket]).run()
    finally:
        socket.close()


def _end_with(supervisor: int) -> None:
    """Ask Linux to SIGTERM this serving process when its supervisor dies (a SIGKILL included),
    so no orphan keeps the port. Elsewhere the supervisor's own SIGTERM is the only stop."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request above
        os.kill(os.getpid(), signal.SIGTERM)
