"""The job engine on SQLite and PostgreSQL: racing workers, leases, parent derivation, and steps
that run with no database transaction open."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, select, text

from meshup.clock import FixedClock, SystemClock
from meshup.drivers.base import ClusterDriver
from meshup.engine.outcome import Done, Fail, Outcome, StepContext, Wait
from meshup.engine.worker import Engine, EngineConfig, schedule
from meshup.errors import Unavailable
from meshup.iam.secrets import MasterKey
from meshup.jobs.model import JobNode, Phase, assemble, derive
from meshup.jobs.scheduling import rederive_ancestors
from meshup.seed.apply import apply_seed
from meshup.seed.schema import parse_seed
from meshup.store import engine as engine_store
from meshup.store import identity as identity_store
from meshup.store import jobs as job_store
from meshup.store import tables as t
from meshup.store.db import Database, sqlite_path
from meshup.upgrades.steps import STEPS
from tests.support.databases import database_url
from tests.support.fake_driver import FakeDriver, FakeDrivers

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
MESH_ID = "9b2f4c1e-0000-4000-8000-0000000000aa"
PROJECT_ID = "0123456789abcdef0123456789abcdef"


def seed_mesh(db: Database) -> None:
    seed = parse_seed(
        {
            "accounts": [
                {
                    "name": "engine",
                    "projects": [{"name": "cn-north-4", "id": PROJECT_ID}],
                    "meshes": [
                        {
                            "name": "mesh-engine",
                            "id": MESH_ID,
                            "project": "cn-north-4",
                            "version": "1.15.7-r1",
                            "clusters": ["c1"],
                        }
                    ],
                }
            ]
        }
    )
    with db.write() as conn:
        apply_seed(conn, seed, MasterKey(b"k" * 32), NOW)


def write_tree(
    db: Database, leaves: int, *, parallel: bool, now: datetime = NOW, leaf_type: str = "Work"
) -> tuple[str, list[str]]:
    root_id = str(uuid.uuid4())
    jobs = [
        job_store.NewJob(
            JobNode(root_id, None, 0, "Root", "", Phase.INITIALIZING, "", now, now, None, None),
            root_id,
            {"parallel": parallel, "owner": "test"},
        )
    ]
    leaf_ids = []
    for index in range(leaves):
        leaf_id = str(uuid.uuid4())
        leaf_ids.append(leaf_id)
        node = JobNode(
            leaf_id, root_id, index, leaf_type, f"leaf {index}", Phase.INITIALIZING, "", now, now, None, None
        )
        jobs.append(job_store.NewJob(node, root_id, {"index": index}))
    with db.write() as conn:
        job_store.insert_nodes(conn, jobs, mesh_id=MESH_ID, project_id=PROJECT_ID)
        schedule(conn, root_id, now)
    return root_id, leaf_ids


def tree(db: Database, root_id: str) -> dict[str, JobNode]:
    with db.read() as conn:
        return assemble(job_store.load_tree(conn, root_id))


class Recorder:
    """Step functions that notice any concurrent run of one leaf and count every run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight: set[str] = set()
        self.overlaps: list[str] = []
        self.runs: Counter[str] = Counter()
        self.finished: list[tuple[str, Phase]] = []

    def step(self, context: StepContext, _driver: Any) -> Outcome:
        with self.lock:
            if context.job_id in self.in_flight:
                self.overlaps.append(context.job_id)
            self.in_flight.add(context.job_id)
            self.runs[context.job_id] += 1
        try:
            return Done({"index": context.payload["index"]})
        finally:
            with self.lock:
                self.in_flight.discard(context.job_id)

    def on_root_finished(
        self, _conn: Connection, root: JobNode, _payloads: Mapping[str, Any], _now: datetime
    ) -> None:
        self.finished.append((root.id, root.phase))


def engine_for(
    db: Database,
    recorder: Recorder,
    clock: Any,
    steps: Mapping[str, Any] | None = None,
    drivers: FakeDrivers | None = None,
    **config: Any,
) -> Engine:
    return Engine(
        db,
        clock,
        EngineConfig(**config),
        steps=steps or {"Work": recorder.step},
        drivers=drivers or FakeDrivers(),
        on_root_finished=recorder.on_root_finished,
    )


@pytest.mark.parametrize("chained", [False, True], ids=["one-by-one", "chained"])
def test_racing_workers_run_every_leaf_once(db: Database, chained: bool) -> None:
    seed_mesh(db)
    roots = [write_tree(db, 75, parallel=True)[0] for _ in range(4)]
    recorder = Recorder()
    engines = [engine_for(db, recorder, SystemClock()) for _ in range(4)]

    def work(engine: Engine) -> None:
        idle = 0
        while idle < 3:
            ran = engine.run_chain(lambda: True) if chained else int(engine.run_once())
            idle = 0 if ran else idle + 1

    threads = [threading.Thread(target=work, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert recorder.overlaps == []
    assert len(recorder.runs) == 300 and set(recorder.runs.values()) == {1}
    assert sorted(recorder.finished) == sorted((root, Phase.SUCCESS) for root in roots)
    for root in roots:
        nodes = tree(db, root)
        assert nodes[root].phase is Phase.SUCCESS
        assert all(child.phase is Phase.SUCCESS for child in nodes[root].children)
    with db.read() as conn:
        leases = conn.execute(select(t.jobs.c.id).where(t.jobs.c.lease_owner.is_not(None))).all()
        owners = {row.lease_owner for row in conn.execute(select(t.jobs.c.lease_owner))}
    assert leases == [] and owners == {None}


def test_sequential_parent_runs_children_in_order(db: Database) -> None:
    seed_mesh(db)
    root, leaves = write_tree(db, 4, parallel=False)
    order: list[int] = []

    def step(context: StepContext, _driver: Any) -> Outcome:
        order.append(int(context.payload["index"]))
        nodes = tree(db, root)
        # Every earlier sibling has finished, no later one has started.
        assert all(nodes[leaf].phase is Phase.SUCCESS for leaf in leaves[: context.payload["index"]])
        assert all(nodes[leaf].phase is Phase.INITIALIZING for leaf in leaves[context.payload["index"] + 1 :])
        assert nodes[root].phase is Phase.RUNNING
        return Done()

    recorder = Recorder()
    engine = engine_for(db, recorder, FixedClock(NOW), steps={"Work": step})
    assert engine.run_until_idle() == 4
    assert order == [0, 1, 2, 3]
    assert tree(db, root)[root].phase is Phase.SUCCESS


def test_failed_leaf_fails_the_tree_and_stops_it(db: Database) -> None:
    seed_mesh(db)
    root, leaves = write_tree(db, 3, parallel=False)

    def step(context: StepContext, _driver: Any) -> Outcome:
        return Fail("cluster c1: boom") if context.payload["index"] == 1 else Done()

    recorder = Recorder()
    engine = engine_for(db, recorder, FixedClock(NOW), steps={"Work": step})
    assert engine.run_until_idle() == 2
    nodes = tree(db, root)
    assert [nodes[leaf].phase for leaf in leaves] == [Phase.SUCCESS, Phase.FAILED, Phase.INITIALIZING]
    assert nodes[root].phase is Phase.FAILED
    assert nodes[root].reason == "Work leaf 1: cluster c1: boom"
    assert recorder.finished == [(root, Phase.FAILED)]


def test_waiting_leaf_is_resumed_when_due(db: Database) -> None:
    seed_mesh(db)
    root, (leaf,) = write_tree(db, 1, parallel=False)
    clock = FixedClock(NOW)

    def step(context: StepContext, _driver: Any) -> Outcome:
        if not context.payload.get("started"):
            return Wait(30, state={"started": True})
        return Done({"at": context.now.isoformat()})

    engine = engine_for(db, Recorder(), clock, steps={"Work": step})
    assert engine.run_once()
    assert tree(db, root)[leaf].phase is Phase.RUNNING
    assert not engine.run_once()  # not due yet
    assert engine.run_until_idle() == 1
    assert clock.now() == NOW + timedelta(seconds=30)
    assert tree(db, root)[leaf].phase is Phase.SUCCESS


def test_expired_lease_is_taken_over_and_the_old_owner_cannot_finish(db: Database) -> None:
    seed_mesh(db)
    root, (leaf,) = write_tree(db, 1, parallel=False)
    clock = FixedClock(NOW)
    first = engine_for(db, Recorder(), clock, lease=timedelta(seconds=10))
    with db.write() as conn:
        claimed = engine_store.claim(conn, first.owner, clock.now(), timedelta(seconds=10))
    assert claimed is not None and claimed.id == leaf
    second_recorder = Recorder()
    second = engine_for(db, second_recorder, clock, lease=timedelta(seconds=10))
    assert not second.run_once()  # the lease is still valid
    clock.advance(11)
    assert second.reap() == 1
    assert second.run_once()
    assert second_recorder.runs[leaf] == 1
    first._finish(claimed, Fail("late"))  # the first worker's step ends late: nothing is recorded
    nodes = tree(db, root)
    assert nodes[leaf].phase is Phase.SUCCESS and nodes[leaf].reason == ""
    with db.read() as conn:
        attempt = conn.execute(select(t.jobs.c.attempt).where(t.jobs.c.id == leaf)).scalar()
    assert attempt == 2


def test_step_that_raises_is_retried_then_failed(db: Database) -> None:
    seed_mesh(db)
    root, (leaf,) = write_tree(db, 1, parallel=False)
    calls: list[int] = []

    def step(context: StepContext, _driver: Any) -> Outcome:
        with db.read() as conn:  # the attempt the claim counted (committed before the step runs)
            calls.append(int(conn.execute(select(t.jobs.c.attempt).where(t.jobs.c.id == leaf)).scalar_one()))
        raise RuntimeError("driver exploded")

    engine = engine_for(db, Recorder(), FixedClock(NOW), steps={"Work": step}, max_attempts=3)
    engine.run_until_idle()
    assert calls == [1, 2, 3]
    node = tree(db, root)[leaf]
    assert node.phase is Phase.FAILED
    assert "RuntimeError" in node.reason and "3 attempts" in node.reason


def mesh_account(db: Database) -> str:
    with db.read() as conn:
        account = identity_store.find_account(conn, name="engine")
    assert account is not None
    return str(account.id)


def test_steps_run_with_no_transaction_open(db: Database) -> None:
    """While a step talks to its driver, the engine holds no connection: on SQLite another
    connection takes the write lock at once, and no pooled connection is checked out."""
    seed_mesh(db)
    root, leaves = write_tree(db, 3, parallel=False, leaf_type="InstallControlPlane")
    with db.write() as conn:  # what the plans put in an InstallControlPlane payload
        for leaf in leaves:
            payload = {"cluster": "c1", "targetVersion": "1.18.7-r5", "targetRevision": "1-18-7-r5"}
            conn.execute(t.jobs.update().where(t.jobs.c.id == leaf).values(payload=payload))
    seen: list[tuple[int, bool | None]] = []

    def look(_operation: str) -> None:
        pools = {db.write_engine.pool, db.read_engine.pool}
        checked_out = sum(pool.checkedout() for pool in pools)  # type: ignore[attr-defined]
        seen.append((checked_out, _write_lock_free(db)))

    drivers = FakeDrivers(lambda: _watched(FakeDriver(checks_until_done=1), look))
    engine = engine_for(db, Recorder(), FixedClock(NOW), steps=STEPS, drivers=drivers)
    assert engine.run_until_idle() == 6  # each leaf waits once, then is done
    assert tree(db, root)[root].phase is Phase.SUCCESS
    expected_lock = True if db.is_sqlite else None
    assert seen == [(0, expected_lock)] * 6
    # The account comes with the claim: the driver of the mesh's account was asked.
    assert set(drivers.accounts) == {mesh_account(db)}
    calls = drivers.accounts[mesh_account(db)].operations("ensure_control_plane")
    assert [asker.job_id for _, _, asker in calls] == [
        leaves[0],
        leaves[0],
        leaves[1],
        leaves[1],
        leaves[2],
        leaves[2],
    ]


def _watched(driver: FakeDriver, hook: Any) -> FakeDriver:
    driver.before_operation = hook
    return driver


def _write_lock_free(db: Database) -> bool | None:
    """SQLite: can a new connection take the write lock without waiting? (None elsewhere)"""
    path = sqlite_path(db.url)
    if not db.is_sqlite or path is None:
        return None
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_a_step_that_loses_the_database_leaves_its_lease_to_expire(db: Database) -> None:
    seed_mesh(db)
    root, (leaf,) = write_tree(db, 1, parallel=False)
    clock = FixedClock(NOW)
    runs: list[str] = []

    def step(context: StepContext, _driver: ClusterDriver) -> Outcome:
        runs.append(context.job_id)
        if len(runs) == 1:
            raise Unavailable("the database is unreachable right now; retry shortly")
        return Done()

    engine = engine_for(db, Recorder(), clock, steps={"Work": step}, lease=timedelta(seconds=10))
    assert engine.run_once()
    with db.read() as conn:
        row = conn.execute(select(t.jobs.c.lease_owner, t.jobs.c.phase).where(t.jobs.c.id == leaf)).one()
    assert (row.lease_owner, row.phase) == (engine.owner, "Running")  # nothing recorded
    assert engine.run_until_idle() == 1  # the lease runs out, the step runs again
    assert runs == [leaf, leaf]
    assert tree(db, root)[leaf].phase is Phase.SUCCESS


def test_a_busy_worker_commits_once_per_leaf_and_runs_a_sequence_back_to_back(db: Database) -> None:
    seed_mesh(db)
    root, leaves = write_tree(db, 4, parallel=False)
    recorder = Recorder()
    engine = engine_for(db, recorder, FixedClock(NOW))
    commits: list[int] = []
    event.listen(db.write_engine, "commit", lambda _conn: commits.append(1))
    assert engine.run_chain(lambda: True) == 4  # each finish claimed and started the next leaf
    assert len(commits) == 1 + len(leaves)  # the first claim, then one finish per leaf
    nodes = tree(db, root)
    assert [nodes[leaf].phase for leaf in leaves] == [Phase.SUCCESS] * 4
    assert recorder.finished == [(root, Phase.SUCCESS)]


def test_a_chain_ends_when_told_and_leaves_the_rest_unclaimed(db: Database) -> None:
    seed_mesh(db)
    root, leaves = write_tree(db, 3, parallel=True)
    engine = engine_for(db, Recorder(), FixedClock(NOW))
    asked: list[int] = []

    def more() -> bool:
        asked.append(1)
        return len(asked) < 2

    assert engine.run_chain(more) == 2
    with db.read() as conn:
        rows = conn.execute(select(t.jobs.c.phase, t.jobs.c.lease_owner).where(t.jobs.c.id.in_(leaves))).all()
    assert sorted((row.phase, row.lease_owner) for row in rows) == [
        ("Initializing", None),
        ("Success", None),
        ("Success", None),
    ]
    assert tree(db, root)[root].phase is Phase.RUNNING


@pytest.fixture
def postgres_db(tmp_path: Path) -> Iterator[Database]:
    with database_url("postgres", tmp_path) as url:
        database = Database(url)
        database.migrate()
        try:
            yield database
        finally:
            database.dispose()


@pytest.mark.postgres
def test_a_claim_on_a_busy_tree_commits_alone_and_starts_once_the_tree_is_free(postgres_db: Database) -> None:
    """PostgreSQL only (SQLite has one writer at a time, so a tree is never busy during a claim):
    the claim holds the leaf's row, so it never waits for the tree lock."""
    db = postgres_db
    seed_mesh(db)
    root, (leaf,) = write_tree(db, 1, parallel=False)
    engine = engine_for(db, Recorder(), SystemClock())
    ran: list[bool] = []
    with db.write() as holder:
        engine_store.lock_tree(holder, root)  # a finishing sibling, say
        worker = threading.Thread(target=lambda: ran.append(engine.run_once()))
        worker.start()
        deadline = time.monotonic() + 30
        while True:  # the claim commits although the tree is held
            with db.read() as conn:
                row = conn.execute(
                    select(t.jobs.c.lease_owner, t.jobs.c.phase).where(t.jobs.c.id == leaf)
                ).one()
            if row.lease_owner is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert (row.lease_owner, row.phase) == (engine.owner, "Initializing")
    worker.join(30)
    assert ran == [True]
    nodes = tree(db, root)
    assert nodes[leaf].phase is Phase.SUCCESS and nodes[root].phase is Phase.SUCCESS


def test_the_claim_reads_through_the_runnable_index(db: Database) -> None:
    """However many jobs are stored, a claim looks at the runnable ones only."""
    queries = engine_store.claim_candidates()
    for query in queries[:1] if db.is_sqlite else queries[1:]:
        compiled = query.compile(db.read_engine)
        params = {**compiled.params, "b_now": NOW}
        with db.read() as conn:
            if db.is_sqlite:
                values = tuple(params[name] for name in compiled.positiontup or ())
                plan = [
                    str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values)
                ]
            else:
                conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table is scanned anyway
                plan = [str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", params)]
        assert any("ix_jobs_runnable" in line for line in plan), plan


# -- a leaf's start re-derives its ancestors without reading the tree ----------------------------------

Leaf = tuple[Phase, int | None, int, int | None]  # phase, started, updated, completed (minutes after NOW)
Shape = list["Leaf | tuple[str, Shape]"]


def _at(minutes: int | None) -> datetime | None:
    return None if minutes is None else NOW + timedelta(minutes=minutes)


def _tree_from(shape: Shape) -> tuple[list[job_store.NewJob], list[str]]:
    """A tree whose parents hold what ``derive`` gives them; also its leaf ids in order."""
    root_id = str(uuid.uuid4())
    nodes: list[JobNode] = []
    leaves: list[str] = []

    def build(node_id: str, parent: str | None, position: int, kind: str, children: Shape) -> JobNode:
        built = []
        for index, child in enumerate(children):
            if not isinstance(child[0], Phase):  # (kind, children): a parent
                name, grandchildren = child  # type: ignore[misc]
                built.append(build(str(uuid.uuid4()), node_id, index, name, grandchildren))
            else:
                phase, started, updated, completed = child  # type: ignore[misc]
                leaf_id = str(uuid.uuid4())
                leaves.append(leaf_id)
                leaf = JobNode(
                    leaf_id,
                    node_id,
                    index,
                    "Work",
                    "",
                    phase,
                    "",
                    NOW,
                    _at(updated),
                    _at(started),
                    _at(completed),
                )
                leaf.reason = "boom" if phase is Phase.FAILED else ""
                nodes.append(leaf)
                built.append(leaf)
        derived = derive(built, NOW)
        node = JobNode(
            node_id,
            parent,
            position,
            kind,
            "",
            derived.phase,
            derived.reason,
            NOW,
            derived.updated_at,
            derived.started_at,
            derived.completed_at,
        )
        nodes.append(node)
        return node

    build(root_id, None, 0, "Root", shape)
    return [job_store.NewJob(node, root_id, {}) for node in nodes], leaves


S, R, N, F = Phase.SUCCESS, Phase.RUNNING, Phase.INITIALIZING, Phase.FAILED  # N: not started


@pytest.mark.parametrize(
    ("shape", "starting"),
    [
        ([(N, None, 0, None), (N, None, 0, None)], 0),  # the first leaf of a tree
        ([(S, 1, 2, 2), (R, 2, 3, None), (N, None, 0, None)], 2),  # parallel, others busy or done
        ([(S, 1, 4, 4), (R, 2, 3, None)], 1),  # a waiting leaf runs again (started before)
        ([(F, 1, 2, 2), (R, 1, 5, None)], 1),  # a failed sibling, and a leaf that waited
        (
            [
                ("Migrate", [(S, 1, 2, 2), (S, 2, 3, 3)]),
                ("Migrate", [(N, None, 0, None), (N, None, 0, None)]),
            ],
            2,
        ),
        ([("Migrate", [(S, 1, 2, 2), (R, 2, 6, None)]), ("Migrate", [(N, None, 0, None)])], 1),
    ],
    ids=["first", "parallel", "resumed", "failed-sibling", "nested-first", "nested-resumed"],
)
def test_a_start_derives_leaf_and_ancestors_as_a_full_derivation_does(
    db: Database, shape: Shape, starting: int
) -> None:
    seed_mesh(db)
    now = NOW + timedelta(minutes=10)
    trees = [_tree_from(shape) for _ in range(2)]
    with db.write() as conn:
        for jobs, _ in trees:
            job_store.insert_nodes(conn, jobs, mesh_id=MESH_ID, project_id=PROJECT_ID)
    (full_jobs, full_leaves), (quick_jobs, quick_leaves) = trees
    full_root, quick_root = full_jobs[0].root_id, quick_jobs[0].root_id
    with db.write() as conn:  # as before: the whole tree read and derived
        engine_store.start_leaf(conn, full_leaves[starting], now)
        nodes = assemble(job_store.load_tree(conn, full_root))
        for changed in rederive_ancestors(nodes, full_leaves[starting]):
            engine_store.write_node_state(conn, changed)
    leaf = next(job.node for job in quick_jobs if job.node.id == quick_leaves[starting])
    by_id = {job.node.id: job.node for job in quick_jobs}
    ancestors = []
    parent = leaf.parent_id
    while parent is not None:
        ancestors.append(parent)
        parent = by_id[parent].parent_id
    with db.write() as conn:
        engine_store.start_with_ancestors(conn, leaf.id, ancestors, leaf.started_at or now, now)

    def states(root_id: str) -> list[tuple[Any, ...]]:
        nodes = tree(db, root_id)
        ordered = sorted(nodes.values(), key=lambda n: (len(_path(nodes, n)), _path(nodes, n)))
        return [(n.type, n.phase, n.reason, n.started_at, n.completed_at, n.updated_at) for n in ordered]

    assert states(quick_root) == states(full_root)


def _path(nodes: Mapping[str, JobNode], node: JobNode) -> list[int]:
    path = [node.position]
    while node.parent_id is not None:
        node = nodes[node.parent_id]
        path.insert(0, node.position)
    return path


def test_a_claim_names_the_ancestors_of_shallow_trees_and_deeper_trees_are_derived_in_full(
    db: Database,
) -> None:
    seed_mesh(db)
    shapes: list[Shape] = [
        [(N, None, 0, None)],
        [("Migrate", [(N, None, 0, None)])],
        [("Migrate", [("Batch", [(N, None, 0, None)])])],
    ]
    trees = [_tree_from(shape) for shape in shapes]
    with db.write() as conn:
        for jobs, _ in trees:
            job_store.insert_nodes(conn, jobs, mesh_id=MESH_ID, project_id=PROJECT_ID)
            schedule(conn, jobs[0].root_id, NOW)
    expected = {}
    for jobs, (leaf,) in trees:
        by_id = {job.node.id: job.node for job in jobs}
        parent = by_id[leaf].parent_id
        chain = []
        while parent is not None:
            chain.append(parent)
            parent = by_id[parent].parent_id
        expected[leaf] = tuple(chain) if len(chain) <= 2 else None
    with db.write() as conn:
        claimed = [engine_store.claim(conn, "probe", NOW, timedelta(seconds=30)) for _ in trees]
    assert {leaf.id: leaf.ancestors for leaf in claimed if leaf is not None} == expected
    with db.write() as conn:  # let them go again
        conn.execute(t.jobs.update().values(lease_owner=None, lease_expires_at=None, attempt=0))
    recorder = Recorder()
    engine = engine_for(db, recorder, FixedClock(NOW), steps={"Work": lambda _c, _d: Done()})
    assert engine.run_until_idle() == 3
    for jobs, _ in trees:
        nodes = tree(db, jobs[0].root_id)
        assert all(node.phase is Phase.SUCCESS for node in nodes.values())
        for node in nodes.values():  # every parent as derive gives it
            if node.children:
                derived = derive(node.children, node.created_at)
                assert (node.started_at, node.completed_at, node.updated_at) == (
                    derived.started_at,
                    derived.completed_at,
                    derived.updated_at,
                )
