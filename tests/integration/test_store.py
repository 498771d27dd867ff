"""The store on SQLite and PostgreSQL: seed application, identity reads, job trees."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from meshup.errors import Conflict
from meshup.iam.secrets import MasterKey
from meshup.jobs.model import Phase, assemble
from meshup.seed.apply import apply_seed
from meshup.seed.schema import load_seed, parse_seed
from meshup.store import identity as identity_store
from meshup.store import jobs as job_store
from meshup.store import tables as t
from meshup.store.db import Database
from meshup.store.uow import UnitOfWorkFactory

SEED = Path(__file__).resolve().parents[1] / "e2e" / "seed.yaml"
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
KEY = MasterKey(b"x" * 32)


def counts(db: Database) -> dict[str, int]:
    with db.read() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
            for table in (
                t.accounts,
                t.projects,
                t.users,
                t.access_keys,
                t.policies,
                t.meshes,
                t.jobs,
                t.clusters,
            )
        }


def test_migrations_are_idempotent(db: Database) -> None:
    db.migrate()
    db.migrate()
    assert db.ping()


def test_concurrent_migrations_in_separate_processes(backend: str, tmp_path: Path) -> None:
    """Several processes starting at once on an empty database all end with one schema."""
    import os
    import subprocess
    import sys

    from tests.support.databases import database_url

    with database_url(backend, tmp_path) as url:
        env = {**os.environ, "MESHUP_DATABASE_URL": url}
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "meshup.cli", "migrate"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        outputs = [process.communicate(timeout=60)[0].decode() for process in processes]
        assert [process.returncode for process in processes] == [0, 0, 0], outputs
        database = Database(url)
        with database.read() as conn:
            assert conn.execute(select(func.count()).select_from(t.accounts)).scalar() == 0
        database.dispose()


def test_seed_applies_and_is_idempotent(db: Database) -> None:
    seed = load_seed(SEED)
    with db.write() as conn:
        apply_seed(conn, seed, KEY, NOW)
    first = counts(db)
    assert first["accounts"] == 2 and first["meshes"] == 4 and first["access_keys"] == 10
    with db.write() as conn:
        apply_seed(conn, seed, KEY, NOW)
    assert counts(db) == first


def test_seed_stores_secrets_sealed(db: Database) -> None:
    with db.write() as conn:
        apply_seed(conn, load_seed(SEED), KEY, NOW)
    with db.read() as conn:
        row = identity_store.get_access_key(conn, "AKALICEEXAMPLE000001")
        assert row is not None
        assert b"AliceSecretKey" not in row.sk_encrypted
        assert KEY.decrypt_sk(row.ak, row.sk_encrypted) == "AliceSecretKeyExample0000000000000000001"
        hashes = [r.password_hash for r in conn.execute(select(t.users.c.password_hash))]
        assert all(h is None or h.startswith("$argon2id$") for h in hashes)


def test_job_tree_round_trip_and_location(db: Database) -> None:
    with db.write() as conn:
        apply_seed(conn, load_seed(SEED), KEY, NOW)
    with UnitOfWorkFactory(db)(read_only=True) as uow:
        conn = uow.connection
        root_id = job_store.root_of(conn, "2d1c7a00-0000-4000-8000-000000000003")
        assert root_id == "2d1c7a00-0000-4000-8000-000000000001"
        mesh_id = conn.execute(select(t.jobs.c.mesh_id).where(t.jobs.c.id == root_id)).scalar()
        mesh = uow.meshes.get(str(mesh_id))
        assert mesh is not None
        assert mesh.project_id == "0123456789abcdef0123456789abcdef"
        assert mesh.tag_pairs == [("team", "payments")]
        nodes = assemble(uow.jobs.nodes(root_id))
        root = nodes[root_id]
        assert root.phase is Phase.FAILED
        assert [child.type for child in root.children] == [
            "InstallControlPlane",
            "WaitControlPlaneReady",
            "InstallGateways",
        ]
        assert root.started_at is not None and root.started_at.tzinfo is not None
        assert job_store.root_of(conn, "nope") is None


def test_epoch_bumps_on_every_seed(db: Database) -> None:
    with db.read() as conn:
        before = identity_store.read_epoch(conn, identity_store.IAM_EPOCH)
    with db.write() as conn:
        apply_seed(conn, parse_seed({"accounts": [{"name": "tiny"}]}), KEY, NOW)
    with db.read() as conn:
        assert identity_store.read_epoch(conn, identity_store.IAM_EPOCH) == before + 1


def test_failed_seed_leaves_nothing_behind(db: Database) -> None:
    with db.write() as conn:
        apply_seed(conn, load_seed(SEED), KEY, NOW)
    before = counts(db)
    stealing = parse_seed(
        {
            "accounts": [
                {
                    "name": "acme",
                    "projects": [{"name": "cn-north-4"}],
                    "users": [
                        {"name": "mallory", "accessKeys": [{"ak": "NEWKEY000000000000001", "sk": "abcdefgh"}]}
                    ],
                    "meshes": [
                        {
                            "name": "mesh-steal",
                            "project": "cn-north-4",
                            "version": "1.15.7-r1",
                            "clusters": ["c1"],
                        }
                    ],
                }
            ]
        }
    )
    with pytest.raises(Conflict), db.write() as conn:
        apply_seed(conn, stealing, KEY, NOW)
    assert counts(db) == before


def test_migrations_match_the_table_definitions(db: Database) -> None:
    """The Alembic revisions create exactly what tables.py describes (no drift either way)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.write_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_a_new_sqlite_database_is_private(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'private' / 'meshup.db'}")
    database.migrate()
    database.dispose()
    for name in ("meshup.db", "meshup.db-wal", "meshup.db-shm"):
        path = tmp_path / "private" / name
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, name
    assert (tmp_path / "private" / "meshup.db").exists()


def test_a_database_is_at_head_once_migrated(backend: str, tmp_path: Path) -> None:
    from tests.support.databases import database_url

    with database_url(backend, tmp_path) as url:
        database = Database(url)
        assert not database.at_head()  # no schema at all yet
        database.migrate()
        assert database.at_head()
        database.dispose()


def test_a_database_at_an_older_revision_is_migrated_on(backend: str, tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from tests.support.databases import database_url

    with database_url(backend, tmp_path) as url:
        database = Database(url)
        config = Config()
        config.set_main_option("script_location", "meshup.store:migrations")
        with database.write_engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0006_worker_stats")
            conn.commit()
        assert not database.at_head()
        database.migrate()
        assert database.at_head()
        with database.read() as conn:
            assert conn.execute(select(func.count()).select_from(t.traces)).scalar() == 0
        database.dispose()


def test_a_start_on_an_up_to_date_database_does_not_load_alembic(db: Database) -> None:
    """Alembic (with Mako and Pygments) is a tenth of a second of every start-up; on a database
    at the newest revision a start compares the stored revision and goes on."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from meshup.store.db import Database\n"
        f"Database({db.url!r}).migrate()\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('alembic', 'mako')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr
