"""The ``meshup`` command line: serve the API, apply seed files, migrate the database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meshup import __version__
from meshup.client.admin import admin_cli
from meshup.client.commands import audit_cli, job_cli, mesh_cli, upgrade_cli
from meshup.config import Settings, from_environment

if TYPE_CHECKING:
    from meshup.iam.secrets import MasterKey
    from meshup.seed.schema import SeedFile
    from meshup.store.db import Database

cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help="meshup: Huawei Cloud ASM mesh-upgrade service."
)
seed_cli = typer.Typer(
    no_args_is_help=True, help="Seed files: declare accounts, users, keys, clusters, meshes, jobs."
)
cli.add_typer(seed_cli, name="seed")
cli.add_typer(mesh_cli, name="mesh")
cli.add_typer(upgrade_cli, name="upgrade")
cli.add_typer(job_cli, name="job")
cli.add_typer(admin_cli, name="admin")
cli.add_typer(audit_cli, name="audit")

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL (default sqlite:///meshup.db; env MESHUP_DATABASE_URL)."
    ),
]


def _settings(**overrides: object) -> Settings:
    try:
        return from_environment().with_overrides(**overrides)
    except ValueError as exc:
        typer.echo(f"meshup: {exc}", err=True)
        raise typer.Exit(2) from exc


@cli.command()
def version() -> None:
    """Print the meshup version."""
    typer.echo(__version__)


@cli.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1; env MESHUP_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080; env MESHUP_PORT).")] = None,
    database_url: DatabaseOption = None,
    seed: Annotated[Path | None, typer.Option(help="Seed file (YAML or JSON) to apply at start-up.")] = None,
    master_key_file: Annotated[
        Path | None, typer.Option(help="Master key file (env MESHUP_MASTER_KEY_FILE).")
    ] = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="One log line per request.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Engine worker threads in this process (default 2; env MESHUP_WORKERS)."),
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only: run workers with `meshup worker`.")
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            help="Serving processes sharing the port, each with its own engine workers (default 1; env MESHUP_PROCESSES)."
        ),
    ] = None,
    sim_speed: Annotated[
        float | None,
        typer.Option(help="Simulated cluster time factor: 0 instant, 1 real time (env MESHUP_SIM_SPEED)."),
    ] = None,
    max_header_line_bytes: Annotated[
        int | None,
        typer.Option(
            help="Longest request line or header line, else 414/431 (default 8192; env MESHUP_MAX_HEADER_LINE_BYTES)."
        ),
    ] = None,
    max_header_bytes: Annotated[
        int | None,
        typer.Option(help="Largest request head, else 431 (default 32768; env MESHUP_MAX_HEADER_BYTES)."),
    ] = None,
    max_headers: Annotated[
        int | None, typer.Option(help="Most header lines, else 431 (default 100; env MESHUP_MAX_HEADERS).")
    ] = None,
    head_timeout_seconds: Annotated[
        float | None,
        typer.Option(
            help="Time for a request head to arrive, else the connection closes (default 15; env MESHUP_HEAD_TIMEOUT_SECONDS)."
        ),
    ] = None,
    ephemeral: Annotated[
        bool, typer.Option("--ephemeral", help="A temporary SQLite database and key, deleted at exit.")
    ] = False,
    clock: Annotated[
        str | None, typer.Option(help="Simulated clock at start: system or manual (env MESHUP_CLOCK).")
    ] = None,
    control_api: Annotated[
        str | None, typer.Option(help="/meshup-api/: on, off, auto = loopback only (env MESHUP_CONTROL_API).")
    ] = None,
    control_token: Annotated[
        str | None, typer.Option(help="Token the control API requires (env MESHUP_CONTROL_TOKEN).")
    ] = None,
) -> None:
    """Run the API server with embedded workers (SQLite and simulated clusters by default)."""
    from meshup.gc_pause import pause_gc

    pause_gc()  # until the server runs: the start-up is mostly imports and wiring
    from meshup.iam.secrets import MasterKeyError
    from meshup.keys import load_master_key
    from meshup.logs import configure_logging
    from meshup.serving import for_processes
    from meshup.serving import serve as serve_http
    from meshup.store.db import Database

    if ephemeral:
        from meshup.control.ephemeral import ephemeral_store

        database_url, master_key_file = ephemeral_store()
    settings = _settings(
        clock=clock,
        control_api=control_api,
        control_token=control_token,
        host=host,
        port=port,
        database_url=database_url,
        master_key_file=master_key_file,
        access_log=access_log,
        log_level=log_level,
        workers=0 if no_worker else workers,
        processes=processes,
        sim_speed=sim_speed,
        max_header_line_bytes=max_header_line_bytes,
        max_header_bytes=max_header_bytes,
        max_headers=max_headers,
        head_timeout_seconds=head_timeout_seconds,
    )
    try:
        settings = for_processes(settings)
    except ValueError as exc:
        typer.echo(f"meshup: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    parsed_seed = None
    if seed is not None:
        from meshup.seed.schema import SeedError, load_seed

        try:
            parsed_seed = load_seed(seed)
        except SeedError as exc:
            typer.echo(f"meshup: seed file {seed} is invalid:\n{exc}", err=True)
            raise typer.Exit(2) from exc
    # What happens once per start, before any process serves: the schema, the key, first data.
    db = Database(settings.database_url)
    try:
        db.migrate()
        master_key = load_master_key(settings, db)
    except MasterKeyError as exc:
        typer.echo(f"meshup: {exc}", err=True)
        raise typer.Exit(2) from exc
    if parsed_seed is not None:
        _apply_seed(db, master_key, seed, parsed_seed)
    else:
        _create_demo(settings, db, master_key)
    app, metrics = None, None
    if settings.processes == 1:
        from meshup.app import build_runtime, create_app

        rt = build_runtime(settings, db=db)
        app = create_app(settings, runtime=rt, access_log_stream=sys.stdout.buffer)
        metrics = rt.metrics
    else:
        db.dispose()  # each serving process opens its own
    if not _is_loopback(settings.host):
        typer.echo(
            f"meshup: listening on {settings.host}, beyond loopback: anyone who can reach this address may "
            "try credentials; put TLS in front of it",
            err=True,
        )
    several = f" ({settings.processes} processes)" if settings.processes > 1 else ""
    typer.echo(f"meshup {__version__} listening on {settings.advertised_url}{several}", err=True)
    serve_http(settings, app=app, metrics=metrics)


def _apply_seed(db: Database, master_key: MasterKey, path: Path | None, parsed: SeedFile) -> None:
    from meshup.clock import SystemClock
    from meshup.seed.apply import apply_seed

    with db.write() as conn:
        report = apply_seed(conn, parsed, master_key, SystemClock().now())
    typer.echo(
        f"meshup: applied {path}: accounts {', '.join(report.accounts)}; {report.users} users, "
        f"{report.access_keys} access keys, {report.clusters} clusters, {report.meshes} meshes, {report.jobs} jobs",
        err=True,
    )


def _create_demo(settings: Settings, db: Database, master_key: MasterKey) -> None:
    """On an empty database: the demo account, its credentials file and the first-start message."""
    from meshup.bootstrap import create_demo_if_empty, write_credentials_file
    from meshup.clock import SystemClock
    from meshup.keys import key_file_for
    from meshup.store.db import sqlite_path

    demo = create_demo_if_empty(db, master_key, SystemClock())
    if demo is None:
        return
    database = sqlite_path(settings.database_url)
    target = (database.parent if database else key_file_for(settings).parent) / "meshup-credentials.json"
    token = _control_token(settings, master_key)
    write_credentials_file(target, demo, settings.advertised_url, control_token=token)
    _print_first_start(settings, demo, target, token)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _control_token(settings: Settings, master_key: MasterKey) -> str | None:
    from meshup.control.access import control_api_enabled
    from meshup.control.setup import control_token

    return (
        control_token(settings, master_key)
        if control_api_enabled(settings.control_api, settings.host)
        else None
    )


def _print_first_start(settings: Settings, demo: object, path: Path, control_token: str | None) -> None:
    from meshup.bootstrap import DemoCredentials

    assert isinstance(demo, DemoCredentials)
    url = settings.advertised_url
    typer.echo(
        "\n".join(
            [
                "",
                "meshup: first start, created a demo account (shown once; also saved, mode 0600, to "
                f"{path.name} beside the database):",
                f"  account (domain)  {demo.account}",
                f"  project           {demo.project_name}  id {demo.project_id}",
                f"  root user         {demo.user}  password {demo.password}",
                f"  access key        {demo.access_key}",
                f"  secret key        {demo.secret_key}",
                *(
                    [f"  control token     {control_token}  (X-Meshup-Control-Token, /meshup-api/)"]
                    if control_token
                    else []
                ),
                "",
                "First call (token):",
                f"  curl -si {url}/v3/auth/tokens -H 'Content-Type: application/json' -d "
                f'\'{{"auth":{{"identity":{{"methods":["password"],"password":{{"user":{{"name":"{demo.user}",'
                f'"password":"{demo.password}","domain":{{"name":"{demo.account}"}}}}}}}},'
                f'"scope":{{"project":{{"id":"{demo.project_id}"}}}}}}}}\'',
                f"  curl -s {url}/v1/{demo.project_id}/meshes -H 'X-Auth-Token: <X-Subject-Token>'",
                "",
                f"A demo mesh {demo.mesh_id} (1.15.7-r1) runs on two simulated clusters; start a canary upgrade:",
                f"  curl -s {url}/v1/{demo.project_id}/mesh-upgrade -H 'X-Auth-Token: <X-Subject-Token>' "
                "-H 'Content-Type: application/json' -d "
                f'\'{{"kind":"MeshUpgrade","apiVersion":"v1","metadata":{{"name":"to-1-18"}},"spec":{{"meshId":"{demo.mesh_id}",'
                '"upgradeStrategy":"Canary","targetVersion":"1.18.7-r5","targetType":"InCluster","currentStep":{"step":"PreCheck"}}}\'',
                f"  then poll {url}/v1/{demo.project_id}/mesh-job/<status.jobId> and PUT the next currentStep.",
                "",
                f"Or with the command-line client (it reads {path.name} in this directory):",
                f"  meshup upgrade start {demo.mesh_id} --target 1.18.7-r5 --wait",
                "  meshup job watch <job-id>            # the job tree, live",
                "",
                f"Console: {url}/console  (account {demo.account}, user {demo.user}, the password above)",
                "",
            ]
        ),
        err=True,
    )


@seed_cli.command("apply")
def seed_apply(
    file: Annotated[Path, typer.Argument(help="Seed file (YAML or JSON).")],
    database_url: DatabaseOption = None,
    master_key_file: Annotated[
        Path | None, typer.Option(help="Master key file (env MESHUP_MASTER_KEY_FILE).")
    ] = None,
) -> None:
    """Apply a seed file to the configured database (servers may be running)."""
    from meshup.clock import SystemClock
    from meshup.errors import MeshupError
    from meshup.iam.secrets import MasterKeyError
    from meshup.keys import load_master_key
    from meshup.seed.apply import apply_seed
    from meshup.seed.schema import SeedError, load_seed
    from meshup.store.db import Database

    settings = _settings(database_url=database_url, master_key_file=master_key_file)
    try:
        parsed = load_seed(file)
    except SeedError as exc:
        typer.echo(f"meshup: seed file {file} is invalid:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    db = Database(settings.database_url)
    db.migrate()
    try:
        key = load_master_key(settings, db)
        with db.write() as conn:
            report = apply_seed(conn, parsed, key, SystemClock().now())
    except (MasterKeyError, MeshupError) as exc:
        typer.echo(f"meshup: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"applied {file}: accounts {', '.join(report.accounts)}; {report.users} users, {report.access_keys} access keys, "
        f"{report.clusters} clusters, {report.meshes} meshes, {report.jobs} jobs"
    )


@cli.command()
def worker(
    database_url: DatabaseOption = None,
    threads: Annotated[
        int | None, typer.Option(help="Worker threads (default 2; env MESHUP_WORKERS).")
    ] = None,
    sim_speed: Annotated[
        float | None, typer.Option(help="Simulated cluster time factor (env MESHUP_SIM_SPEED).")
    ] = None,
    master_key_file: Annotated[
        Path | None, typer.Option(help="Master key file (env MESHUP_MASTER_KEY_FILE).")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
) -> None:
    """Run engine workers only (no HTTP); any number may share one PostgreSQL database."""
    import signal
    import threading

    from meshup.app import build_runtime
    from meshup.engine.worker import WorkerPool
    from meshup.iam.secrets import MasterKeyError
    from meshup.logs import configure_logging

    settings = _settings(
        database_url=database_url,
        workers=threads,
        sim_speed=sim_speed,
        master_key_file=master_key_file,
        log_level=log_level,
    )
    configure_logging(settings.log_level)
    try:
        rt = build_runtime(settings)
    except MasterKeyError as exc:
        typer.echo(f"meshup: {exc}", err=True)
        raise typer.Exit(2) from exc
    pool = WorkerPool(rt.engine, max(1, settings.workers), chores=[rt.audit.purge])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pool.start()
    typer.echo(f"meshup worker {rt.engine.owner}: {pool.threads} threads", err=True)
    # Wake up now and then: a signal the kernel hands to another thread (it may pick any) only
    # runs its Python handler once the main thread executes again; an endless wait would miss it.
    while not stop.wait(0.25):
        pass
    typer.echo("meshup worker: draining", err=True)
    pool.stop()
    rt.db.dispose()


@cli.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Create or upgrade the database schema (the server also does this at start)."""
    from meshup.store.db import Database

    settings = _settings(database_url=database_url)
    Database(settings.database_url).migrate()
    typer.echo("schema is up to date")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
