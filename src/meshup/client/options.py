"""Options shared by the client commands: where to connect, as whom, and the output format.

Imported when ``meshup`` starts, so only the standard library and typer are used here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from meshup.client.credentials import (
    ENV_AK,
    ENV_CREDENTIALS,
    ENV_DOMAIN,
    ENV_ENDPOINT,
    ENV_PASSWORD,
    ENV_PROJECT,
    ENV_PROJECT_ID,
    ENV_SK,
    ENV_USER,
    ConnectionFlags,
)

PANEL = "Connection"
F = TypeVar("F", bound=Callable[..., Any])


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table, json or yaml.", case_sensitive=False)
]


def _option(*decls: str, help: str) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=PANEL, show_default=False)


# Each connection option: (parameter name, annotation). Environment variables are read by
# meshup.client.credentials, which decides between whole sources rather than single values.
_CONNECTION: list[tuple[str, Any]] = [
    (
        "endpoint",
        Annotated[
            str | None,
            _option("--endpoint", help=f"meshup URL (env {ENV_ENDPOINT}; default http://127.0.0.1:8080)."),
        ],
    ),
    ("ak", Annotated[str | None, _option("--ak", help=f"Access key (env {ENV_AK}).")]),
    ("sk", Annotated[str | None, _option("--sk", help=f"Secret key (env {ENV_SK}).")]),
    (
        "project_id",
        Annotated[str | None, _option("--project-id", help=f"Project id (env {ENV_PROJECT_ID}).")],
    ),
    (
        "project",
        Annotated[
            str | None, _option("--project", help=f"Project name, when no id is given (env {ENV_PROJECT}).")
        ],
    ),
    (
        "user",
        Annotated[
            str | None, _option("--user", help=f"Log in as this user with a password (env {ENV_USER}).")
        ],
    ),
    (
        "password",
        Annotated[
            str | None,
            _option("--password", help=f"Password of --user (env {ENV_PASSWORD}; asked for on a terminal)."),
        ],
    ),
    (
        "domain",
        Annotated[str | None, _option("--domain", help=f"Account (domain) of --user (env {ENV_DOMAIN}).")],
    ),
    (
        "credentials",
        Annotated[
            Path | None,
            _option(
                "--credentials",
                help=f"Credentials file written by `meshup serve` (env {ENV_CREDENTIALS}; "
                "default ./meshup-credentials.json if present).",
            ),
        ],
    ),
]


def connection_options(func: F) -> F:
    """Give a command the connection options; it receives them as ``flags: ConnectionFlags``.

    Typer reads a command's options from its signature, so the wrapper's signature is the
    command's own (without ``flags``) followed by the shared options.
    """
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "flags"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in _CONNECTION
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = ConnectionFlags(**{name: kwargs.pop(name, None) for name, _ in _CONNECTION})
        return func(*args, flags=flags, **kwargs)

    parameters = [*own, *shared]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper  # type: ignore[return-value]
