"""One browser request of the console: who is signed in, and an API client acting as them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp

from meshup.console.api import ApiClient, ApiReply, segment
from meshup.console.pages import BASE, Pages, harden
from meshup.console.session import COOKIE_PATH, SESSION_COOKIE, Session, Signer
from meshup.console.tasks import TASKS_COOKIE, RememberedTasks


@dataclass(frozen=True, slots=True)
class Console:
    """What the routes share: the whole meshup ASGI app (to call), the signer, the templates."""

    api: ASGIApp
    signer: Signer
    pages: Pages


class SignedOut(Exception):
    def __init__(self, reply: ApiReply) -> None:
        super().__init__(reply.message)
        self.reason = "expired" if reply.expired else "invalid"


class Visit:
    """One browser request: who is signed in, and an API client acting as them."""

    def __init__(self, console: Console, request: Request) -> None:
        self.console = console
        self.request = request
        self.session: Session | None = console.signer.session(request.cookies.get(SESSION_COOKIE))
        client = request.client
        self.api = ApiClient(
            console.api,
            client=(client.host, client.port) if client else None,
            host=request.headers.get("host", "127.0.0.1"),
            scheme=request.url.scheme,
            token=self.session.token if self.session else None,
        )
        self.htmx = request.headers.get("hx-request") == "true"
        self.https = request.url.scheme == "https"

    @property
    def csrf(self) -> str:
        return self.console.signer.csrf_token(self.session) if self.session else ""

    @property
    def project(self) -> str:
        assert self.session is not None
        return segment(self.session.project_id)

    async def call(self, method: str, path: str, body: Any = None) -> ApiReply:
        reply = await self.api.call(method, path, body=body)
        if reply.signed_out:
            raise SignedOut(reply)
        return reply

    def task_index(self) -> RememberedTasks:
        assert self.session is not None
        return RememberedTasks(self.console.signer, self.request.cookies.get(TASKS_COOKIE), self.session)

    def cookie(self, response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name, value, path=COOKIE_PATH, httponly=True, samesite="strict", secure=self.https
        )

    def drop_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=self.https)

    def go(self, url: str) -> Response:
        """Navigate: htmx follows ``HX-Redirect``, a plain form post a 303."""
        if self.htmx:
            return harden(Response(status_code=200, headers={"HX-Redirect": url}))
        return harden(RedirectResponse(url, status_code=303))

    def to_sign_in(self, reason: str) -> Response:
        response = self.go(f"{BASE}/sign-in?reason={reason}")
        self.drop_cookie(response, SESSION_COOKIE)
        return response

    def html(self, template: str, **context: Any) -> str:
        """A template as text (an event's data), with what every page is given."""
        return self.console.pages.html(template, session=self.session, csrf=self.csrf, **context)

    def page(self, template: str, code: int = 200, **context: Any) -> Response:
        return self.console.pages.render(template, code, session=self.session, csrf=self.csrf, **context)

    def problem(self, status: int, message: str) -> Response:
        titles = {403: "Not allowed", 404: "Not found", 400: "Not understood"}
        return self.page(
            "problem.html", status, status=status, title=titles.get(status, "Refused"), message=message
        )
