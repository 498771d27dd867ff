"""Rendering: the Jinja2 templates of the package, and the headers every console response carries."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, Response

from meshup.console.live import live_body, live_region

BASE = "/console"
STATIC = f"{BASE}/static"

# Scripts and styles only from the console's own static files; no framing by other sites.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("meshup.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(base=BASE, static=STATIC, live_region=live_region, live_body=live_body)
    return env


def harden(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


class Pages:
    def __init__(self) -> None:
        self.env = environment()

    def html(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def render(self, template: str, code: int = 200, **context: Any) -> HTMLResponse:
        return harden(HTMLResponse(self.html(template, **context), status_code=code))  # type: ignore[return-value]
