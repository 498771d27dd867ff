"""``meshup admin``: the control API (/meshup-api/) from the command line, for test set-ups.

The endpoint and control token come from flags, then ``MESHUP_ENDPOINT`` / ``MESHUP_CONTROL_TOKEN``,
then the credentials file (``--credentials``, ``MESHUP_CREDENTIALS`` or ./meshup-credentials.json,
as the server writes it on first start). Results are printed as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from meshup.client.credentials import (
    CREDENTIALS_FILE,
    ENV_CREDENTIALS,
    ENV_ENDPOINT,
    load_credentials_file,
)
from meshup.client.errors import CredentialsError

ENV_CONTROL_TOKEN = "MESHUP_CONTROL_TOKEN"  # noqa: S105 - the variable's name, not a token
DEFAULT_ENDPOINT = "http://127.0.0.1:8080"

admin_cli = typer.Typer(
    no_args_is_help=True, help="Control a meshup server: reset, snapshots, clock, faults."
)
snapshot_cli = typer.Typer(no_args_is_help=True, help="Named snapshots of the whole state.")
fault_cli = typer.Typer(no_args_is_help=True, help="Faults of simulated clusters.")
admin_cli.add_typer(snapshot_cli, name="snapshot")
admin_cli.add_typer(fault_cli, name="fault")

_state: dict[str, Any] = {}


@admin_cli.callback()
def connection(
    endpoint: Annotated[str | None, typer.Option(help=f"meshup URL (env {ENV_ENDPOINT}).")] = None,
    control_token: Annotated[
        str | None, typer.Option(help=f"The server's control token (env {ENV_CONTROL_TOKEN}).")
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(help=f"Credentials file (env {ENV_CREDENTIALS}; default ./{CREDENTIALS_FILE})."),
    ] = None,
) -> None:
    _state.update(endpoint=endpoint, token=control_token, credentials=credentials)


def resolve(
    endpoint: str | None, token: str | None, credentials: Path | None, env: dict[str, str], cwd: Path
) -> tuple[str, str]:
    """(endpoint, token): each from its flag, its variable, then the credentials file."""
    endpoint = endpoint or env.get(ENV_ENDPOINT)
    token = token or env.get(ENV_CONTROL_TOKEN)
    if endpoint is None or token is None:
        path = credentials or (Path(env[ENV_CREDENTIALS]) if env.get(ENV_CREDENTIALS) else None)
        if path is None and (cwd / CREDENTIALS_FILE).is_file():
            path = cwd / CREDENTIALS_FILE
        if path is not None:
            saved = load_credentials_file(path)
            endpoint = endpoint or saved.get("endpoint")
            token = token or saved.get("controlToken")
    if not token:
        raise CredentialsError(
            f"no control token: pass --control-token, set {ENV_CONTROL_TOKEN}, or use the credentials file"
        )
    return endpoint or DEFAULT_ENDPOINT, token


def _run(action: Callable[[Any], Any]) -> None:
    import httpx

    from meshup.control.client import ControlClient, ControlError

    try:
        endpoint, token = resolve(
            _state.get("endpoint"),
            _state.get("token"),
            _state.get("credentials"),
            dict(os.environ),
            Path.cwd(),
        )
        with ControlClient(endpoint, token) as client:
            result = action(client)
    except CredentialsError as exc:
        typer.echo(f"meshup: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ControlError as exc:
        typer.echo(f"meshup: {exc}", err=True)
        for error in exc.body.get("errors", []) if isinstance(exc.body, dict) else []:
            typer.echo(f"  {error}", err=True)
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        typer.echo(f"meshup: cannot reach the server: {exc}", err=True)
        raise typer.Exit(1) from exc
    if result is not None:
        typer.echo(json.dumps(result, indent=2))


@admin_cli.command()
def reset(
    to: Annotated[str, typer.Option(help="start (the state at server start) or empty.")] = "start",
) -> None:
    """Put the server back into its start-up state (or empty it)."""
    _run(lambda c: c.reset(to))


@admin_cli.command()
def seed(file: Annotated[Path, typer.Argument(help="Seed file (YAML or JSON).")]) -> None:
    """Apply a seed file through the running server."""
    _run(lambda c: c.seed(file))


@admin_cli.command()
def clock(
    mode: Annotated[str | None, typer.Option(help="manual or system; without it, show the clock.")] = None,
    speed: Annotated[float | None, typer.Option(help="System mode: times real time.")] = None,
    now: Annotated[str | None, typer.Option(help="Set the instant (RFC 3339; never backwards).")] = None,
) -> None:
    """Show or set the simulated clock."""
    if mode is None:
        _run(lambda c: c.clock())
    else:
        _run(lambda c: c.set_clock(mode, speed=speed, now=now))


@admin_cli.command()
def advance(seconds: Annotated[float, typer.Argument(help="Seconds to move the manual clock.")]) -> None:
    """Move the manual clock, running what becomes due on the way."""
    _run(lambda c: c.advance(seconds))


@admin_cli.command("run-until-idle")
def run_until_idle() -> None:
    """Run every runnable job to its end, moving the manual clock as needed."""
    _run(lambda c: c.run_until_idle())


@snapshot_cli.command("save")
def snapshot_save(name: str) -> None:
    """Save the whole state under a name."""
    _run(lambda c: c.save_snapshot(name))


@snapshot_cli.command("restore")
def snapshot_restore(name: str) -> None:
    """Restore a saved state."""
    _run(lambda c: c.restore_snapshot(name))


@snapshot_cli.command("list")
def snapshot_list() -> None:
    """List saved states."""
    _run(lambda c: c.snapshots())


@snapshot_cli.command("delete")
def snapshot_delete(name: str) -> None:
    """Forget a saved state."""
    _run(lambda c: c.delete_snapshot(name))


@fault_cli.command("add")
def fault_add(
    cluster: str,
    job_type: Annotated[str, typer.Argument(help="The step that fails, e.g. InstallControlPlane.")],
    times: Annotated[int | None, typer.Option(help="Fire this many times (default always).")] = None,
    reason: Annotated[str | None, typer.Option(help="The failed job's reason.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Only leaves of this namespace.")] = None,
    workload: Annotated[
        str | None, typer.Option(help="RestartWorkloads: this workload never gets ready.")
    ] = None,
    never_ready: Annotated[
        bool, typer.Option("--never-ready", help="WaitControlPlaneReady: the next revision never gets ready.")
    ] = False,
    revision: Annotated[str | None, typer.Option(help="With --never-ready: only this revision.")] = None,
    account: Annotated[
        str | None, typer.Option(help="Account name, when the cluster id is in several.")
    ] = None,
) -> None:
    """Inject a fault into a simulated cluster."""
    _run(
        lambda c: c.add_fault(
            cluster,
            job_type,
            times=times,
            reason=reason,
            namespace=namespace,
            workload=workload,
            neverReady=never_ready or None,
            revision=revision,
            account=account,
        )
    )


@fault_cli.command("list")
def fault_list(cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None) -> None:
    """List faults (with how often each fired)."""
    _run(lambda c: c.faults(cluster))


@fault_cli.command("delete")
def fault_delete(fault_id: str) -> None:
    """Remove a fault."""
    _run(lambda c: c.delete_fault(fault_id))
