"""The unit of work and its repositories on SQLite and PostgreSQL: domain objects in and out, and
the invariants the database itself enforces (whatever a service checked before writing)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select

from meshup.meshes.model import Mesh, MeshCluster, MeshPhase, Tag
from meshup.store import tables as t
from meshup.store.db import Database
from meshup.store.errors import Collision
from meshup.store.uow import UnitOfWorkFactory, retry_lost_race
from meshup.upgrades.model import Step, StepRun, TaskPhase, TaskState, UpgradeTask
from tests.support.databases import database_url

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
ACCOUNT, PROJECT = "a" * 32, "b" * 32


@pytest.fixture
def units(db: Database) -> UnitOfWorkFactory:
    with db.write() as conn:
        conn.execute(insert(t.accounts).values(id=ACCOUNT, name="acme", enabled=True, created_at=NOW))
        conn.execute(
            insert(t.projects).values(id=PROJECT, account_id=ACCOUNT, name="cn-north-4", enabled=True)
        )
    return UnitOfWorkFactory(db)


def mesh(name: str, *clusters: str, **changes: object) -> Mesh:
    value = Mesh(
        id=str(uuid.uuid4()),
        account_id=ACCOUNT,
        project_id=PROJECT,
        name=name,
        type="InCluster",
        version="1.15.7-r1",
        enterprise_project_id="0",
        tags=(Tag("team", "pay"), Tag("empty")),
        clusters=tuple(
            MeshCluster(
                c,
                {
                    "installation": {
                        "nodes": {"fieldSelector": {"key": "k", "operator": "In", "values": ["v"]}}
                    }
                },
            )
            for c in clusters
        ),
        phase=MeshPhase.RUNNING,
        reason="",
        created_at=NOW,
        updated_at=NOW,
        config={"proxyConfig": {"x": None}},
        annotations={"a": "b"},
    )
    return dataclasses.replace(value, **changes)  # type: ignore[arg-type]


def add(units: UnitOfWorkFactory, value: Mesh) -> None:
    with units() as uow:
        uow.meshes.add(value)
        uow.commit()


def test_a_mesh_round_trips_as_a_domain_object(units: UnitOfWorkFactory) -> None:
    original = mesh("mesh-one", "c1", "c2", job_id=str(uuid.uuid4()))
    add(units, original)
    with units(read_only=True) as uow:
        assert uow.meshes.get(original.id) == original
        assert uow.meshes.named(PROJECT, "mesh-one") == original
        assert uow.meshes.live(PROJECT) == [original]
        assert uow.meshes.holders(ACCOUNT, ["c1", "c2", "c3"]) == {"c1": original.id, "c2": original.id}


def test_nothing_is_written_without_commit(units: UnitOfWorkFactory) -> None:
    with units() as uow:
        uow.meshes.add(mesh("mesh-one", "c1"))
    with units(read_only=True) as uow:
        assert uow.meshes.live(PROJECT) == []


def test_one_live_mesh_per_cluster_and_per_name(units: UnitOfWorkFactory) -> None:
    first = mesh("mesh-one", "c1")
    add(units, first)
    with pytest.raises(Collision):
        add(units, mesh("mesh-two", "c2", "c1"))
    with pytest.raises(Collision):
        add(units, mesh("mesh-one", "c3"))
    with units(read_only=True) as uow:
        assert [m.id for m in uow.meshes.live(PROJECT)] == [first.id]
        assert uow.meshes.holders(ACCOUNT, ["c2", "c3"]) == {}
    # A deleted mesh frees its clusters and its name.
    with units() as uow:
        uow.meshes.save(dataclasses.replace(first, deleted_at=NOW, phase=MeshPhase.DELETING))
        uow.commit()
    again = mesh("mesh-one", "c1")
    add(units, again)
    with units(read_only=True) as uow:
        assert uow.meshes.holders(ACCOUNT, ["c1"]) == {"c1": again.id}


def test_concurrent_claims_of_one_cluster_leave_one_winner(units: UnitOfWorkFactory) -> None:
    """Eight transactions at once, no service check in front: the database decides."""
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def claim(index: int) -> None:
        start.wait()
        try:
            add(units, mesh(f"mesh-{index:02d}", "shared"))
            outcomes.append("won")
        except Collision:
            outcomes.append("lost")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    with units(read_only=True) as uow:
        assert len(uow.meshes.live(PROJECT)) == 1


def task(mesh_id: str, **changes: object) -> UpgradeTask:
    job = str(uuid.uuid4())
    value = UpgradeTask(
        id=str(uuid.uuid4()),
        account_id=ACCOUNT,
        project_id=PROJECT,
        mesh_id=mesh_id,
        name="to-1-18",
        strategy="Canary",
        target_type="InCluster",
        source_version="1.15.7-r1",
        target_version="1.18.7-r5",
        state=TaskState(TaskPhase.WAITING, ("shop",), (), (StepRun(Step.PRECHECK, job, "Success"),)),
        step=Step.PRECHECK,
        step_namespaces=(),
        job_id=job,
        message="",
        created_at=NOW,
        updated_at=NOW,
    )
    return dataclasses.replace(value, **changes)  # type: ignore[arg-type]


def test_one_active_task_per_mesh_and_one_step_start_per_state(units: UnitOfWorkFactory) -> None:
    owner = mesh("mesh-one", "c1")
    add(units, owner)
    first = task(owner.id)
    with units() as uow:
        uow.tasks.add(first)
        uow.commit()
    with units(read_only=True) as uow:
        assert uow.tasks.get(first.id) == first
        assert uow.tasks.active_for_mesh(owner.id) == first
    with pytest.raises(Collision), units() as uow:
        uow.tasks.add(task(owner.id))
    # Starting a step is a conditional write: only from the state the caller saw.
    seen = first.job_id
    assert seen is not None
    started = dataclasses.replace(
        first,
        job_id=str(uuid.uuid4()),
        step=Step.CONTROL_PLANE,
        state=dataclasses.replace(first.state, phase=TaskPhase.RUNNING),
        updated_at=NOW + timedelta(seconds=1),
    )
    with units() as uow:
        uow.tasks.save(started, started_after=seen)
        uow.commit()
    with pytest.raises(Collision), units() as uow:
        uow.tasks.save(dataclasses.replace(started, job_id=str(uuid.uuid4())), started_after=seen)
    with units(read_only=True) as uow:
        assert uow.tasks.get(first.id) == started
    # A finished task lets the mesh have a new one.
    done = dataclasses.replace(started, state=dataclasses.replace(started.state, phase=TaskPhase.COMPLETED))
    with units() as uow:
        uow.tasks.save(done)
        uow.commit()
    with units() as uow:
        uow.tasks.add(task(owner.id))
        uow.commit()


def test_a_lost_race_is_run_again(units: UnitOfWorkFactory) -> None:
    attempts: list[int] = []

    def work() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise Collision("lost")
        return "second"

    assert retry_lost_race(work) == "second" and len(attempts) == 2


def test_joining_an_open_transaction_leaves_the_commit_to_its_owner(
    db: Database, units: UnitOfWorkFactory
) -> None:
    value = mesh("mesh-one", "c1")
    with db.write() as conn:
        with units.joining(conn) as uow:
            uow.meshes.add(value)
            uow.commit()
        conn.rollback()  # the engine's transaction failed after the hook
    with units(read_only=True) as uow:
        assert uow.meshes.get(value.id) is None
    with db.write() as conn, units.joining(conn) as uow:
        uow.meshes.add(value)
        uow.commit()
    with units(read_only=True) as uow:
        assert uow.meshes.get(value.id) == value


def test_the_migration_backfills_who_holds_each_cluster(backend: str, tmp_path: Path) -> None:
    """Meshes written before the invariant existed (a race once let two live meshes share c1): the
    oldest live mesh keeps each cluster, deleted meshes hold nothing."""
    with database_url(backend, tmp_path) as url:
        db = Database(url)
        config = Config()
        config.set_main_option("script_location", "meshup.store:migrations")
        with db.write_engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
            conn.commit()
        with db.write() as conn:
            conn.execute(insert(t.accounts).values(id=ACCOUNT, name="acme", enabled=True, created_at=NOW))
            conn.execute(insert(t.projects).values(id=PROJECT, account_id=ACCOUNT, name="cn", enabled=True))
            for name, clusters, created, deleted in (
                ("old", ["c1", "c2"], NOW, None),
                ("young", ["c1", "c3"], NOW + timedelta(minutes=1), None),
                ("gone", ["c4"], NOW, NOW),
            ):
                conn.execute(
                    insert(t.meshes).values(
                        id=name.ljust(36, "0"),
                        account_id=ACCOUNT,
                        project_id=PROJECT,
                        name=name,
                        type="InCluster",
                        version="1.15.7-r1",
                        enterprise_project_id="0",
                        tags=[],
                        clusters=[{"clusterID": c} for c in clusters],
                        spec_extra={},
                        phase="Running",
                        reason="",
                        created_at=created,
                        updated_at=created,
                        deleted_at=deleted,
                    )
                )
        db.migrate()
        with db.read() as conn:
            rows = conn.execute(select(t.mesh_clusters.c.cluster_id, t.mesh_clusters.c.mesh_id)).all()
        db.dispose()
    holders = {cluster: mesh_id.rstrip("0") for cluster, mesh_id in rows}
    assert holders == {"c1": "old", "c2": "old", "c3": "young"}
