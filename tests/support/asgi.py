"""Requests to the full served application in this process (its lifespan included), no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
BASE_URL = "http://127.0.0.1:8080"


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Start the app as a server would (ASGI lifespan) and shut it down afterwards."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await from_app.get()
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
        await task


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


def run_served(app: Any, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Start the app, run ``work`` against it, stop it: all in a fresh event loop."""

    async def main() -> T:
        async with served(app) as client:
            return await work(client)

    return asyncio.run(main())
