"""Engine throughput: whole canary upgrades on real ``meshup worker`` processes against a bare loop.

N meshes of two simulated clusters each (zero simulated time) are seeded on a fresh database; N
upgrade tasks start at once and each is driven PreCheck → ControlPlaneUpgrade → DataPlaneUpgrade
(every injected namespace) → Complete through the upgrade service, the next step started as soon as
the task shows the previous one finished. The clock runs from the first task created to the last
task Completed; leaves finished per second is the number of leaf jobs that reached Success over
that time.

In the same run and on the same database kind, a bare loop inserts as many runnable leaf rows and
claims and completes them with the engine's own SQL (``store.engine.claim``, then
``store.engine.finish_leaf``, one commit each), in as many processes with as many threads each:
the most the database lets any engine do. The table shows engine against bare, 2 worker
processes against 1, and how long the upgrade service took to start steps (in all, and the
slowest call: what an API client waits while the engine is busy).

    python bench/engine.py                                   # SQLite, 100 upgrades, 1 and 2 workers
    python bench/engine.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/engine.py --upgrades 3 --workers 1 --json engine.json

With ``--database-url`` the runs are on PostgreSQL instead: each run creates a database
``meshup_bench_engine`` (``--database-name``) on that server and drops it afterwards; the database
the URL names is only used to create and drop it. ``bench/run_all.py`` runs both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROJECT = "be0c4be0c4be0c4be0c4be0c4be0c4b0"
MASTER_KEY = "bench-engine-master-key-00000000000000000"
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
BENCH_DATABASE = "meshup_bench_engine"
STEPS = ("PreCheck", "ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete")
DRIVE_POLL = 0.02  # seconds between looks at the tasks while steps run
DEADLINE = 1800.0  # seconds one measured run may take before the bench gives up


# -- seed ------------------------------------------------------------------------------------------


def mesh_id(index: int) -> str:
    return f"be0c4000-0000-4000-8000-{index:012d}"


def seed_document(upgrades: int) -> dict[str, Any]:
    """One account; per upgrade a mesh on two clusters: a big one (two injected namespaces of 4 and
    1 workloads, one not injected) and a small one (one injected namespace)."""
    clusters: list[dict[str, Any]] = []
    meshes: list[dict[str, Any]] = []
    nodes = {"count": 6, "cpu": "8", "memory": "32Gi", "masterLabelled": 3}
    for index in range(upgrades):
        big, small = f"m{index:04d}-a", f"m{index:04d}-b"
        clusters.append(
            {
                "id": big,
                "kubernetesVersion": "1.28",
                "nodes": nodes,
                "namespaces": [
                    {
                        "name": "shop",
                        "labels": {"istio-injection": "enabled"},
                        "workloads": [{"name": n} for n in ("cart", "web", "api", "search")],
                    },
                    {
                        "name": "payments",
                        "labels": {"istio-injection": "enabled"},
                        "workloads": [{"name": "ledger"}],
                    },
                    {"name": "tools", "labels": {}, "workloads": [{"name": "debug"}]},
                ],
            }
        )
        clusters.append(
            {
                "id": small,
                "kubernetesVersion": "1.27",
                "nodes": nodes,
                "namespaces": [
                    {
                        "name": "shop",
                        "labels": {"istio-injection": "enabled"},
                        "workloads": [{"name": "cart"}],
                    }
                ],
            }
        )
        meshes.append(
            {
                "name": f"mesh-{index:04d}",
                "id": mesh_id(index),
                "project": "cn-north-4",
                "version": SOURCE,
                "clusters": [big, small],
            }
        )
    return {
        "accounts": [
            {
                "name": "bench-engine",
                "projects": [{"name": "cn-north-4", "id": PROJECT}],
                "users": [{"name": "root", "root": True}],
                "clusters": clusters,
                "meshes": meshes,
            }
        ]
    }


# -- databases -------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(base_url: str | None, work: Path, label: str, name: str) -> Iterator[str]:
    """An empty database for one measured run: a new SQLite file, or database ``name`` (re)created
    on the server of ``base_url``."""
    if base_url is None:
        yield f"sqlite:///{work / f'{label}.db'}"
        return
    import psycopg

    admin = make_url(base_url)
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(url: str, threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "MESHUP_DATABASE_URL": url,
        "MESHUP_MASTER_KEY": MASTER_KEY,
        "MESHUP_SIM_SPEED": "0",
        "MESHUP_WORKERS": str(threads),
        "MESHUP_LOG_LEVEL": "warning",
    }


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# -- the engine ------------------------------------------------------------------------------------


@dataclass
class Measured:
    leaves: int
    seconds: float
    api_seconds: float = 0.0  # of which the upgrade service spent starting steps (engine runs)
    api_slowest: float = 0.0  # the slowest of those calls

    @property
    def per_second(self) -> float:
        return self.leaves / self.seconds if self.seconds > 0 else 0.0


def start_workers(url: str, processes: int, threads: int, work: Path) -> list[subprocess.Popen[bytes]]:
    """``meshup worker`` processes, returned once every one has started its threads."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    for index in range(processes):
        log = work / f"worker-{index}.log"
        logs.append(log)
        with log.open("wb") as out:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "meshup.cli", "worker"],
                    env=environment(url, threads),
                    cwd=work,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + 60
    for process, log in zip(started, logs, strict=True):
        while "threads" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                stop(started)
                raise RuntimeError(f"a worker did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
    return started


def run_engine(url: str, upgrades: int, processes: int, threads: int, work: Path) -> Measured:
    from sqlalchemy import func, select

    from meshup.app import build_runtime
    from meshup.config import Settings
    from meshup.iam.service import Caller
    from meshup.seed.apply import apply_seed
    from meshup.seed.schema import parse_seed
    from meshup.store import identity as identity_store
    from meshup.store import tables as t
    from meshup.upgrades.model import CurrentStep, Step, Strategy, TargetType, UpgradeChange, UpgradeCreate

    settings = Settings(database_url=url, master_key=MASTER_KEY, workers=0, sim_speed=0, log_level="warning")
    rt = build_runtime(settings)
    now = rt.clock.now()
    with rt.db.write() as conn:
        apply_seed(conn, parse_seed(seed_document(upgrades)), rt.identity.master_key, now)
    with rt.db.read() as conn:
        account = identity_store.find_account(conn, name="bench-engine")
        assert account is not None
        user = identity_store.find_user(conn, account.id, "root")
        assert user is not None
        principal = rt.identity.principal(conn, user.user.id, "aksk")
    assert principal is not None
    caller = Caller(principal, None)
    workers = start_workers(url, processes, threads, work)
    try:
        began = time.monotonic()
        api_seconds = api_slowest = 0.0
        step_of: dict[str, int] = {}  # task id -> index in STEPS of the step it runs
        for index in range(upgrades):
            create = UpgradeCreate(
                name=f"bench-{index}",
                mesh_id=mesh_id(index),
                strategy=Strategy.CANARY,
                target_version=TARGET,
                target_type=TargetType.IN_CLUSTER,
                current_step=CurrentStep(Step.PRECHECK),
            )
            calling = time.monotonic()
            step_of[rt.upgrades.create(caller, PROJECT, create, "127.0.0.1").id] = 0
            took = time.monotonic() - calling
            api_seconds, api_slowest = api_seconds + took, max(api_slowest, took)
        tasks = t.upgrade_tasks
        while step_of:
            if time.monotonic() - began > DEADLINE:
                raise RuntimeError(f"{len(step_of)} upgrades were not Complete after {DEADLINE:g} s")
            moved = False
            with rt.db.read() as conn:
                rows = conn.execute(select(tasks.c.id, tasks.c.phase, tasks.c.message)).all()
            for row in rows:
                if row.id not in step_of or row.phase == "Running":
                    continue
                if row.phase not in ("Waiting", "Completed"):
                    raise RuntimeError(f"upgrade task {row.id} is {row.phase}: {row.message}")
                index = step_of.pop(row.id) + 1
                if index == len(STEPS):
                    continue
                change = UpgradeChange(current_step=CurrentStep(Step(STEPS[index])))
                calling = time.monotonic()
                rt.upgrades.update(caller, PROJECT, row.id, change, "127.0.0.1")
                took = time.monotonic() - calling
                api_seconds, api_slowest = api_seconds + took, max(api_slowest, took)
                step_of[row.id] = index
                moved = True
            if not moved:
                time.sleep(DRIVE_POLL)
        seconds = time.monotonic() - began
    finally:
        stop(workers)
    jobs, parents = t.jobs, t.jobs.alias("parents")
    has_children = select(parents.c.id).where(parents.c.parent_id == jobs.c.id).exists()
    with rt.db.read() as conn:
        leaves = conn.execute(
            select(func.count()).where(
                jobs.c.phase == "Success", jobs.c.parent_id.is_not(None), ~has_children
            )
        ).scalar_one()
        versions = conn.execute(select(t.meshes.c.version, func.count()).group_by(t.meshes.c.version)).all()
    rt.db.dispose()
    if dict(versions) != {TARGET: upgrades}:
        raise RuntimeError(f"meshes by version after the run: {dict(versions)}")
    return Measured(int(leaves), seconds, api_seconds, api_slowest)


# -- the bare loop ---------------------------------------------------------------------------------


def fill_leaves(url: str, upgrades: int, leaves: int) -> None:
    """``leaves`` runnable leaf rows under one root per mesh, due now (the payload a step gets)."""
    from sqlalchemy import insert

    from meshup.iam.secrets import MasterKey
    from meshup.seed.apply import apply_seed
    from meshup.seed.schema import parse_seed
    from meshup.store import tables as t
    from meshup.store.db import Database

    db = Database(url)
    db.migrate()
    now = datetime.now(UTC)
    with db.write() as conn:
        apply_seed(conn, parse_seed(seed_document(upgrades)), MasterKey.from_text(MASTER_KEY), now)
    rows: list[dict[str, Any]] = []
    roots = [str(uuid.uuid4()) for _ in range(upgrades)]
    for index, root in enumerate(roots):
        rows.append(job_row(root, root, None, 0, index, "ControlPlaneUpgrade", now, runnable=False))
    for number in range(leaves):
        index = number % upgrades
        row = job_row(str(uuid.uuid4()), roots[index], roots[index], number, index, "InstallGateways", now)
        rows.append(row)
    with db.write() as conn:
        conn.execute(insert(t.jobs), rows)
    db.dispose()


def job_row(
    job_id: str,
    root_id: str,
    parent_id: str | None,
    position: int,
    index: int,
    job_type: str,
    now: datetime,
    *,
    runnable: bool = True,
) -> dict[str, Any]:
    return {
        "id": job_id,
        "root_id": root_id,
        "parent_id": parent_id,
        "position": position,
        "type": job_type,
        "target": f"cluster m{index:04d}-a",
        "phase": "Initializing",
        "reason": "",
        "created_at": now,
        "updated_at": now,
        "mesh_id": mesh_id(index),
        "project_id": PROJECT,
        "attempt": 0,
        "payload": {
            "cluster": f"m{index:04d}-a",
            "meshId": mesh_id(index),
            "sourceVersion": SOURCE,
            "targetVersion": TARGET,
            "sourceRevision": "1-15-7-r1",
            "targetRevision": "1-18-7-r5",
        },
        "runnable": runnable,
        "run_after": now if runnable else None,
    }


def bare_worker(url: str, threads: int) -> None:
    """Helper process: claim and finish leaves until none is left; prints how many it finished."""
    import threading

    from meshup.engine.worker import new_owner_id
    from meshup.jobs.model import JobNode, Phase
    from meshup.store import engine as engine_store
    from meshup.store.db import Database

    db = Database(url)
    owner = new_owner_id()
    lease = timedelta(seconds=30)
    finished = [0] * threads

    def loop(slot: int) -> None:
        while True:
            now = datetime.now(UTC)
            with db.write() as conn:
                leaf = engine_store.claim(conn, owner, now, lease)
            if leaf is None:
                return
            done_at = datetime.now(UTC)
            node = JobNode(
                leaf.id,
                leaf.root_id,
                0,
                leaf.type,
                leaf.target,
                Phase.SUCCESS,
                "",
                now,
                done_at,
                now,
                done_at,
            )
            with db.write() as conn:
                engine_store.finish_leaf(conn, node, {"revision": "1-18-7-r5"})
            finished[slot] += 1

    with db.read() as conn:  # connect before the start signal, as a started worker has
        conn.exec_driver_sql("SELECT 1")
    print("ready", flush=True)
    sys.stdin.readline()
    pool = [threading.Thread(target=loop, args=(slot,)) for slot in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    db.dispose()
    print(sum(finished), flush=True)


def run_bare(url: str, upgrades: int, leaves: int, processes: int, threads: int) -> Measured:
    fill_leaves(url, upgrades, leaves)
    helpers = [
        subprocess.Popen(
            [sys.executable, __file__, "--bare-worker", url, "--threads", str(threads)],
            env=environment(url, threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    try:
        for helper in helpers:
            assert helper.stdout is not None
            if helper.stdout.readline().strip() != b"ready":
                raise RuntimeError("a bare-loop process did not start")
        began = time.monotonic()
        for helper in helpers:
            assert helper.stdin is not None
            helper.stdin.write(b"go\n")
            helper.stdin.close()
        counts = []
        for helper in helpers:
            assert helper.stdout is not None
            counts.append(int(helper.stdout.readline()))
            helper.wait(DEADLINE)
        seconds = time.monotonic() - began
    finally:
        stop(helpers)
    if sum(counts) != leaves:
        raise RuntimeError(f"the bare loop finished {sum(counts)} of {leaves} leaves")
    return Measured(sum(counts), seconds)


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Row:
    workers: int
    engine: Measured
    bare: Measured
    ratio: float  # the median of each round's engine/bare: a round's two runs share the machine's mood


def measure(args: argparse.Namespace, kind: str, work: Path) -> list[Row]:
    rows: list[Row] = []
    for workers in args.workers:
        engines: list[Measured] = []
        bares: list[Measured] = []
        for round_ in range(args.rounds):  # engine and bare alternate: a slow minute hits both
            label = f"{workers}-{round_}"
            with fresh_database(args.database_url, work, f"engine-{label}", args.database_name) as url:
                run_dir = work / f"engine-{label}"
                run_dir.mkdir()
                engines.append(run_engine(url, args.upgrades, workers, args.threads, run_dir))
            with fresh_database(args.database_url, work, f"bare-{label}", args.database_name) as url:
                bares.append(run_bare(url, args.upgrades, engines[-1].leaves, workers, args.threads))
            print(
                f"  {kind}, {workers} worker(s), round {round_ + 1}: engine {engines[-1].per_second:.0f}/s, "
                f"bare {bares[-1].per_second:.0f}/s",
                file=sys.stderr,
            )
        ratios = sorted(e.per_second / b.per_second for e, b in zip(engines, bares, strict=True))
        rows.append(Row(workers, median(engines), median(bares), ratios[len(ratios) // 2]))
    return rows


def median(values: list[Measured]) -> Measured:
    return sorted(values, key=lambda m: m.per_second)[len(values) // 2]


def report(args: argparse.Namespace, kind: str, rows: list[Row]) -> dict[str, Any]:
    print(
        f"\n{kind}: {args.upgrades} two-cluster upgrades to Complete, {args.threads} threads per "
        f"process, zero simulated time; leaves finished per second, medians of {args.rounds} "
        "round(s) (engine/bare: of each round's ratio)\n"
    )
    print(
        f"{'workers':>7} {'leaves':>7} {'engine/s':>9} {'bare/s':>9} {'engine/bare':>12}"
        f"   {'run s':>6} {'in step starts':>15} {'slowest start':>14}"
    )
    for row in rows:
        print(
            f"{row.workers:>7} {row.engine.leaves:>7} {row.engine.per_second:>9.1f} "
            f"{row.bare.per_second:>9.1f} {row.ratio:>11.0%}   {row.engine.seconds:>6.1f} "
            f"{row.engine.api_seconds:>13.1f} s {row.engine.api_slowest:>12.2f} s"
        )
    by_workers = {row.workers: row for row in rows}
    scaling = None
    if 1 in by_workers and 2 in by_workers:
        scaling = {
            "engine": by_workers[2].engine.per_second / by_workers[1].engine.per_second,
            "bare": by_workers[2].bare.per_second / by_workers[1].bare.per_second,
        }
        print(f"2 workers / 1 worker: engine {scaling['engine']:.2f}x, bare {scaling['bare']:.2f}x")
    return {
        "database": kind,
        "upgrades": args.upgrades,
        "threads": args.threads,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load": os.getloadavg()[0],
        "results": [
            {
                "workers": row.workers,
                "leaves": row.engine.leaves,
                "engine_seconds": row.engine.seconds,
                "engine_step_start_seconds": row.engine.api_seconds,
                "engine_slowest_step_start_seconds": row.engine.api_slowest,
                "engine_leaves_per_s": row.engine.per_second,
                "bare_seconds": row.bare.seconds,
                "bare_leaves_per_s": row.bare.per_second,
                "ratio": row.ratio,
            }
            for row in rows
        ],
        "two_workers_over_one": scaling,
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--bare-worker":  # helper mode (run_bare)
        bare_worker(sys.argv[2], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upgrades", type=int, default=100, help="upgrades at once (default 100)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker processes (default 1 2)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads per process (default 2, as meshup worker)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each; the median is shown")
    parser.add_argument(
        "--database-url", help="a PostgreSQL server to run on instead of SQLite (see --database-name)"
    )
    parser.add_argument(
        "--database-name",
        default=BENCH_DATABASE,
        help=f"PostgreSQL: the database each run creates and drops (default {BENCH_DATABASE})",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.upgrades < 1 or args.threads < 1 or args.rounds < 1 or min(args.workers) < 1:
        parser.error("--upgrades, --threads, --rounds and --workers must be positive")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.database_name):
        parser.error("--database-name: lower-case letters, digits and _ only")
    if args.database_url and make_url(args.database_url).database == args.database_name:
        parser.error("--database-name: each run drops its database; name another than --database-url's")
    kind = "postgresql" if args.database_url else "sqlite"
    work = Path(tempfile.mkdtemp(prefix="meshup-bench-engine-"))
    try:
        result = report(args, kind, measure(args, kind, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
