"""``meshup mesh|upgrade|job``: the client commands.

Each command parses its options, calls :class:`meshup.client.api.Api` and renders the answer.
HTTP, rich and YAML are imported inside the commands so that ``meshup --help`` stays fast.
Exit codes: 0 done (a waited-for job succeeded), 1 the job failed, 2 the wait timed out,
3 the request failed (the server's error, unreachable endpoint, missing credentials).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshup.client.credentials import ConnectionFlags, Password, Profile, resolve
from meshup.client.errors import ApiError, ClientError, WaitTimedOut
from meshup.client.options import Output, OutputOption, connection_options

if TYPE_CHECKING:
    from meshup.client.api import Api

EXIT_FAILED, EXIT_TIMEOUT, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 3, 130
_EPILOG = (
    "Exit codes: 0 done (a waited-for job succeeded), 1 the job failed, 2 the wait timed out, "
    "3 the request failed."
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

mesh_cli = typer.Typer(no_args_is_help=True, help="Meshes: list, show, create, delete.", epilog=_EPILOG)
upgrade_cli = typer.Typer(
    no_args_is_help=True,
    help="Canary upgrade tasks: PreCheck → ControlPlaneUpgrade → DataPlaneUpgrade → Complete, or Rollback.",
    epilog=_EPILOG,
)
audit_cli = typer.Typer(no_args_is_help=True, help="The audit trail: who changed what, and what was refused.")
job_cli = typer.Typer(
    no_args_is_help=True, help="Mesh jobs: show, watch live, wait for the end.", epilog=_EPILOG
)


class Step(StrEnum):
    PreCheck = "PreCheck"
    ControlPlaneUpgrade = "ControlPlaneUpgrade"
    DataPlaneUpgrade = "DataPlaneUpgrade"
    Complete = "Complete"
    Rollback = "Rollback"


WaitOption = Annotated[
    bool, typer.Option("--wait", help="Follow the job this starts (on stderr) and exit with its outcome.")
]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", help="Seconds to wait at most (exit 2 after that).", min=0)
]
IntervalOption = Annotated[
    float,
    typer.Option(help="Seconds between polls when the server does not stream job events.", min=0.05),
]


def _fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"meshup: {message}", err=True)
    return typer.Exit(code)


def _with_password(profile: Profile) -> Profile:
    auth = profile.auth
    if isinstance(auth, Password) and auth.password is None and sys.stdin.isatty():
        password = typer.prompt(f"Password for {auth.domain}/{auth.user}", hide_input=True)
        return dataclasses.replace(profile, auth=dataclasses.replace(auth, password=password))
    return profile


@contextmanager
def _api(flags: ConnectionFlags) -> Iterator[Api]:
    """An API client for the command; client errors end the command with one line on stderr."""
    from meshup.client.api import Api

    try:
        profile = _with_password(resolve(flags, os.environ, Path.cwd()))
        with Api(profile) as api:
            yield api
    except WaitTimedOut as exc:
        raise _fail(str(exc), EXIT_TIMEOUT) from None
    except ApiError as exc:  # the server's own words: error_code: error_msg (request id …)
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_ERROR) from None
    except ClientError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _mesh_id(api: Api, ref: str) -> str:
    """A mesh uid as given, or the uid of the mesh with that name."""
    if _UUID.fullmatch(ref):
        return ref.lower()
    matches = [
        m for m in api.list_meshes().get("items") or [] if (m.get("metadata") or {}).get("name") == ref
    ]
    if not matches:
        raise ClientError(f"no mesh named {ref} in project {api.project_id}")
    return str(matches[0]["metadata"]["uid"])


def _follow_to_stderr(api: Api, job_id: str | None, timeout: float | None, interval: float) -> None:
    """``--wait``: show the job on stderr, then exit 0 on Success and 1 on Failed."""
    from meshup.client.render import console
    from meshup.client.watch import exit_code, watch

    if not job_id:
        raise ClientError("the answer names no job to wait for")
    final = watch(api, job_id, console(stderr=True), timeout=timeout, interval=interval)
    code = exit_code(final)
    if code:
        raise typer.Exit(code)


# --- meshes ----------------------------------------------------------------------------------------


@mesh_cli.command("list")
@connection_options
def mesh_list(output: OutputOption = Output.table, *, flags: ConnectionFlags) -> None:
    """List the meshes of the project."""
    from meshup.client.render import emit, mesh_list_table

    with _api(flags) as api:
        emit(api.list_meshes(), output.value, mesh_list_table)


@mesh_cli.command("show")
@connection_options
def mesh_show(
    mesh: Annotated[str, typer.Argument(help="Mesh id or name.")],
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Show one mesh."""
    from meshup.client.render import emit, mesh_table

    with _api(flags) as api:
        emit(api.get_mesh(_mesh_id(api, mesh)), output.value, mesh_table)


def _tag(text: str) -> dict[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise typer.BadParameter(f"{text!r} is not KEY=VALUE")
    return {"key": key, "value": value}


@mesh_cli.command("create")
@connection_options
def mesh_create(
    name: Annotated[str, typer.Argument(help="Mesh name (4-64 of a-z, 0-9 and '-').")],
    cluster: Annotated[list[str], typer.Option("--cluster", "-c", help="Cluster id (repeat for several).")],
    version: Annotated[str, typer.Option(help="Mesh version, e.g. 1.18.7-r5.")],
    tag: Annotated[list[str] | None, typer.Option(help="Tag KEY=VALUE (repeat for several).")] = None,
    enterprise_project: Annotated[
        str | None, typer.Option(help='Enterprise project id (default "0").')
    ] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Create a mesh on simulated or real clusters; --wait follows its installation."""
    from meshup.client.render import emit, mesh_table

    extend: dict[str, Any] = {"clusters": [{"clusterID": c} for c in cluster]}
    if enterprise_project is not None:
        extend["enterpriseProjectId"] = enterprise_project
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Mesh",
        "metadata": {"name": name},
        "spec": {"type": "InCluster", "version": version, "extendParams": extend},
    }
    if tag:
        body["spec"]["tags"] = [_tag(t) for t in tag]
    with _api(flags) as api:
        mesh = api.create_mesh(body)
        emit(mesh, output.value, mesh_table)
        if wait:
            _follow_to_stderr(api, (mesh.get("status") or {}).get("jobId"), timeout, interval)


@mesh_cli.command("delete")
@connection_options
def mesh_delete(
    mesh: Annotated[str, typer.Argument(help="Mesh id or name.")],
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Delete a mesh (its control plane is uninstalled); --wait follows the uninstallation."""
    from meshup.client.render import emit, mesh_table

    with _api(flags) as api:
        deleted = api.delete_mesh(_mesh_id(api, mesh))
        emit(deleted, output.value, mesh_table)
        if wait:
            _follow_to_stderr(api, (deleted.get("status") or {}).get("jobId"), timeout, interval)


# --- upgrade tasks ---------------------------------------------------------------------------------


def _task_name(target: str) -> str:
    return "to-" + re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-")


@upgrade_cli.command("start")
@connection_options
def upgrade_start(
    mesh: Annotated[str, typer.Argument(help="Mesh id or name.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Target version, e.g. 1.18.7-r5.")],
    name: Annotated[str | None, typer.Option(help="Task name (default to-<target>).")] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Create a canary upgrade task; its pre-check starts at once."""
    from meshup.client.render import emit, upgrade_table

    with _api(flags) as api:
        body = {
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": name or _task_name(target)},
            "spec": {
                "meshId": _mesh_id(api, mesh),
                "upgradeStrategy": "Canary",
                "targetVersion": target,
                "targetType": "InCluster",
                "currentStep": {"step": Step.PreCheck.value},
            },
        }
        task = api.create_upgrade(body)
        emit(task, output.value, upgrade_table)
        if wait:
            _follow_to_stderr(api, (task.get("status") or {}).get("jobId"), timeout, interval)


def _advance(
    flags: ConnectionFlags,
    task_id: str,
    step: Step,
    namespaces: list[str] | None,
    *,
    wait: bool,
    timeout: float | None,
    interval: float,
    output: Output,
) -> None:
    from meshup.client.render import emit, upgrade_table

    current: dict[str, Any] = {"step": step.value}
    if namespaces:
        current["namespaces"] = namespaces
    body = {"kind": "MeshUpgrade", "apiVersion": "v1", "spec": {"currentStep": current}}
    with _api(flags) as api:
        task = api.put_upgrade(task_id, body)
        emit(task, output.value, upgrade_table)
        if wait:
            _follow_to_stderr(api, (task.get("status") or {}).get("jobId"), timeout, interval)


@upgrade_cli.command("step")
@connection_options
def upgrade_step(
    task: Annotated[str, typer.Argument(help="Upgrade task id.")],
    step: Annotated[Step, typer.Argument(help="The step to start.")],
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="DataPlaneUpgrade: namespace to migrate (default: all left)."),
    ] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Start the next step of a task (or retry a failed one with the same step)."""
    if namespace and step is not Step.DataPlaneUpgrade:
        raise typer.BadParameter("namespaces belong to the DataPlaneUpgrade step", param_hint="--namespace")
    _advance(flags, task, step, namespace, wait=wait, timeout=timeout, interval=interval, output=output)


@upgrade_cli.command("rollback")
@connection_options
def upgrade_rollback(
    task: Annotated[str, typer.Argument(help="Upgrade task id.")],
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Roll the task back to the old control plane (before Complete)."""
    _advance(flags, task, Step.Rollback, None, wait=wait, timeout=timeout, interval=interval, output=output)


@upgrade_cli.command("list")
@connection_options
def upgrade_list(
    mesh: Annotated[
        str | None, typer.Option("--mesh", help="Only the tasks of this mesh (name or id).")
    ] = None,
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """List upgrade tasks, newest first."""
    from meshup.client.render import emit, upgrade_list_table

    with _api(flags) as api:
        mesh_id = _mesh_id(api, mesh) if mesh is not None else None
        emit(api.list_upgrades(mesh_id), output.value, upgrade_list_table)


@upgrade_cli.command("show")
@connection_options
def upgrade_show(
    task: Annotated[str, typer.Argument(help="Upgrade task id.")],
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Show an upgrade task: its step, phase, job and namespaces."""
    from meshup.client.render import emit, upgrade_table

    with _api(flags) as api:
        emit(api.get_upgrade(task), output.value, upgrade_table)


@upgrade_cli.command("delete")
@connection_options
def upgrade_delete(
    task: Annotated[str, typer.Argument(help="Upgrade task id.")],
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Delete a completed, rolled-back or only pre-checked task (its jobs stay readable)."""
    from meshup.client.render import emit, upgrade_table

    with _api(flags) as api:
        emit(api.delete_upgrade(task), output.value, upgrade_table)


# --- jobs ------------------------------------------------------------------------------------------


@job_cli.command("show")
@connection_options
def job_show(
    job: Annotated[str, typer.Argument(help="Job id (any node of a job tree).")],
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Show a job tree once."""
    from meshup.client.render import emit, job_table

    with _api(flags) as api:
        emit(api.get_job(job), output.value, job_table)


@job_cli.command("watch")
@connection_options
def job_watch(
    job: Annotated[str, typer.Argument(help="Job id.")],
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    *,
    flags: ConnectionFlags,
) -> None:
    """Follow a job until it ends: a live tree on a terminal, one line per change otherwise."""
    from meshup.client.render import console
    from meshup.client.watch import exit_code, watch

    with _api(flags) as api:
        code = exit_code(watch(api, job, console(), timeout=timeout, interval=interval))
    if code:
        raise typer.Exit(code)


@job_cli.command("wait")
@connection_options
def job_wait(
    job: Annotated[str, typer.Argument(help="Job id.")],
    timeout: TimeoutOption = None,
    interval: IntervalOption = 1.0,
    output: OutputOption = Output.table,
    *,
    flags: ConnectionFlags,
) -> None:
    """Wait for a job to end: exit 0 on Success, 1 on Failed, 2 on timeout."""
    from meshup.client.render import emit
    from meshup.client.watch import exit_code, summary, wait

    with _api(flags) as api:
        final = wait(api, job, timeout=timeout, interval=interval)
    if output is Output.table:
        typer.echo(summary(final))
    else:
        emit(final, output.value, summary)
    code = exit_code(final)
    if code:
        raise typer.Exit(code)


# --- audit trail -----------------------------------------------------------------------------------

_SPAN = re.compile(r"(\d+)([smhd])")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since_ms(text: str) -> int:
    """``--since``: a span back from now (``90s``, ``30m``, ``2h``, ``7d``) or an RFC 3339 instant."""
    from datetime import UTC, datetime

    from meshup.timefmt import parse_rfc3339

    span = _SPAN.fullmatch(text.strip())
    if span is not None:
        seconds = int(span.group(1)) * _SPAN_SECONDS[span.group(2)]
        return int(datetime.now(UTC).timestamp() * 1000) - seconds * 1000
    try:
        return int(parse_rfc3339(text).timestamp() * 1000)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a span like 30m, 2h, 7d nor an RFC 3339 time"
        ) from None


@audit_cli.command("list")
@connection_options
def audit_list(
    output: OutputOption = Output.table,
    since: Annotated[
        str | None, typer.Option(help="Traces after: a span back from now (30m, 2h, 7d) or an RFC 3339 time.")
    ] = None,
    user_name: Annotated[
        str | None, typer.Option("--user-name", help="Only traces of this user name.")
    ] = None,
    resource_id: Annotated[str | None, typer.Option(help="Only traces of this resource id.")] = None,
    limit: Annotated[int, typer.Option(help="Traces to show at most (newest first).", min=1, max=200)] = 50,
    *,
    flags: ConnectionFlags,
) -> None:
    """List the project's recent traces (the last hour unless --since says otherwise)."""
    from meshup.client.render import emit, trace_list_table

    filters = {"trace_type": "system", "limit": str(limit)}
    if since is not None:
        filters["from"] = str(_since_ms(since))
    if user_name is not None:
        filters["user"] = user_name
    if resource_id is not None:
        filters["resource_id"] = resource_id
    with _api(flags) as api:
        emit(api.list_traces(filters), output.value, trace_list_table)
