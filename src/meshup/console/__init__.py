"""A browser console at ``/console``: server-rendered pages (Jinja2 and htmx) over meshup's own API.

The console is a client of the public HTTP API, called in-process with the signed-in user's
token, so a person can do exactly what the API lets them do. It imports no service and no store.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from meshup.console.pages import STATIC, Pages
from meshup.console.routes import build_router
from meshup.console.session import Signer
from meshup.console.visit import Console


def install(app: FastAPI, *, api: ASGIApp, secret: bytes) -> None:
    """Serve the console from ``app``; ``api`` is the whole meshup ASGI application it calls,
    ``secret`` a server key (shared by every process) that its cookies and form tokens derive from."""
    console = Console(api=api, signer=Signer(secret), pages=Pages())
    app.include_router(build_router(console))
    static = resources.files("meshup.console").joinpath("static")
    app.mount(STATIC, StaticFiles(directory=str(static)), name="console-static")
