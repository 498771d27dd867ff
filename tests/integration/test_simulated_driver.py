"""The simulated driver on SQLite and PostgreSQL: persistence, transactions, faults, row locks."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import select

from meshup.drivers.simulated import SimulatedDriver
from meshup.engine.outcome import SimTiming
from meshup.iam.secrets import MasterKey
from meshup.seed.apply import apply_seed
from meshup.seed.schema import parse_seed
from meshup.store import accounts as account_store
from meshup.store import tables as t
from meshup.store.db import Database

ACCOUNT = "b" * 32
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
TIMING = SimTiming(speed=0)


def with_account(db: Database) -> None:
    with db.write() as conn:
        account_store.upsert_account(conn, name="acme", account_id=ACCOUNT, enabled=True, now=NOW)


def test_unknown_clusters_are_created_and_persist_only_with_the_transaction(db: Database) -> None:
    with_account(db)
    with db.write_engine.connect() as conn:
        transaction = conn.begin()
        SimulatedDriver(conn, ACCOUNT, NOW, TIMING).ensure_namespace_revision("c9", "default", "1-18-7-r5")
        transaction.rollback()  # the engine's transaction failed: nothing of the step remains
    with db.read() as conn:
        assert conn.execute(select(t.clusters.c.id)).first() is None

    with db.write() as conn:
        driver = SimulatedDriver(conn, ACCOUNT, NOW, TIMING)
        driver.ensure_namespace_revision("c9", "default", "1-18-7-r5")
    with db.read() as conn:
        doc = SimulatedDriver(conn, ACCOUNT, NOW, TIMING).document("c9")
    assert doc["namespaces"][0]["labels"] == {"istio.io/rev": "1-18-7-r5"}
    assert doc["kubernetesVersion"] == "1.28"


def test_seeded_clusters_adopted_by_their_mesh(db: Database) -> None:
    seed = parse_seed(
        {
            "accounts": [
                {
                    "name": "acme",
                    "id": ACCOUNT,
                    "projects": [{"name": "cn-north-4"}],
                    "clusters": [
                        {
                            "id": "c1",
                            "kubernetesVersion": "1.28",
                            "namespaces": [
                                {
                                    "name": "shop",
                                    "labels": {"istio-injection": "enabled"},
                                    "workloads": [{"name": "cart", "replicas": 3}],
                                }
                            ],
                            "faults": [{"jobType": "RelabelNamespace", "times": 1, "reason": "denied"}],
                        }
                    ],
                    "meshes": [
                        {
                            "name": "mesh-prod",
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
        SimulatedDriver(conn, ACCOUNT, NOW, TIMING).adopt("c1", "1.15.7-r1")
    with db.write() as conn:
        driver = SimulatedDriver(conn, ACCOUNT, NOW, TIMING)
        adopted = driver.document("c1")
        driver.adopt("c1", "1.15.7-r1")
        assert driver.document("c1") == adopted
        assert adopted["controlPlane"]["defaultRevision"] == "1-15-7-r1"
        assert adopted["namespaces"][0]["workloads"][0]["sidecarVersion"] == "1.15.7-r1"
        assert driver.consume_fault("c1", "RelabelNamespace", "shop") == "denied"
    with db.write() as conn:
        driver = SimulatedDriver(conn, ACCOUNT, NOW, TIMING)
        assert driver.faults("c1")[0]["fired"] == 1  # committed with the step
        assert driver.consume_fault("c1", "RelabelNamespace", "shop") is None


def test_concurrent_steps_on_one_cluster_do_not_lose_changes(db: Database) -> None:
    """Two transactions change different namespaces of one cluster at once: the row lock (or
    SQLite's write lock) serialises them, so both changes survive."""
    with_account(db)
    with db.write() as conn:
        driver = SimulatedDriver(conn, ACCOUNT, NOW, TIMING)
        doc = driver.document("c1")
        doc["namespaces"].append({"name": "shop", "labels": {"istio-injection": "enabled"}, "workloads": []})
        conn.execute(t.clusters.update().values(state=doc))

    first_holds_lock = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with db.write() as conn:
                SimulatedDriver(conn, ACCOUNT, NOW, TIMING).ensure_namespace_revision("c1", "default", "r2")
                first_holds_lock.set()
                time.sleep(0.3)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
            first_holds_lock.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_holds_lock.wait(10)
    with db.write() as conn:
        SimulatedDriver(conn, ACCOUNT, NOW, TIMING).ensure_namespace_revision("c1", "shop", "r2")
    thread.join(10)
    assert errors == []
    with db.read() as conn:
        doc = SimulatedDriver(conn, ACCOUNT, NOW, TIMING).document("c1")
    assert {ns["name"]: ns["labels"] for ns in doc["namespaces"]} == {
        "default": {"istio.io/rev": "r2"},
        "shop": {"istio.io/rev": "r2"},
    }


def test_first_references_racing_create_one_cluster(db: Database) -> None:
    with_account(db)
    created = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with db.write() as conn:
                SimulatedDriver(conn, ACCOUNT, NOW, TIMING).consume_fault("new", "RelabelNamespace")
                created.set()
                time.sleep(0.3)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
            created.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert created.wait(10)
    with db.write() as conn:
        facts = SimulatedDriver(conn, ACCOUNT, NOW, TIMING).facts("new")
    thread.join(10)
    assert errors == []
    assert facts.available
    with db.read() as conn:
        assert len(conn.execute(select(t.clusters.c.id)).all()) == 1
