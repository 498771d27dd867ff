"""The mesh-job GET as a served application answers it (in process, SQLite and PostgreSQL).

Authentication runs once per request, before the job tree is read; a request that is not
authenticated (or that no policy could allow) never reads the tree; the epoch makes every
process see IAM changes at its next request; the bytes are the pydantic model's rendering.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshup.app import build_runtime
from meshup.config import Settings
from meshup.iam.signing import sign
from meshup.jobs.model import JobNode, assemble
from meshup.jobs.schemas import JobMetadata, JobSpec, JobStatus, MeshJob
from meshup.seed.apply import apply_seed
from meshup.seed.schema import parse_seed
from meshup.store import identity as identity_store
from meshup.store import jobs as job_store
from meshup.store.db import Database
from meshup.store.hot import HotReader
from meshup.timefmt import rfc3339
from tests.support.asgi import BASE_URL, run_served
from tests.support.databases import database_url
from tests.support.flow import NOW, PROJECT, Flow, new_task, two_cluster_seed

ALICE = ("AKALICE0000000000001", "AliceSecretKey00000000000000000000000001")
NOBODY = ("AKNOBODY000000000001", "NobodySecretKey0000000000000000000000001")
CAROL = ("AKCAROL0000000000001", "CarolSecretKey00000000000000000000000001")
UNKNOWN = ("AKUNKNOWN00000000001", "UnknownSecretKey000000000000000000000001")
ROOT_PASSWORD = "Root-Passw0rd!"
SDK_DATE = NOW.strftime("%Y%m%dT%H%M%SZ")


def allow(condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": ["asm:mesh:getUpgradeJob"]}
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "5.0", "Statement": [statement]}


def seed(*, alice_enabled: bool = True, root_password: str = ROOT_PASSWORD) -> dict[str, Any]:
    document = deepcopy(two_cluster_seed())
    account = document["accounts"][0]
    account["users"] = [
        {"name": "root", "root": True, "password": root_password},
        {
            "name": "alice",
            "accessKeys": [{"ak": ALICE[0], "sk": ALICE[1], "enabled": alice_enabled}],
            "identityPolicies": [allow()],
        },
        {"name": "nobody", "accessKeys": [{"ak": NOBODY[0], "sk": NOBODY[1]}]},
        {
            "name": "carol",
            "accessKeys": [{"ak": CAROL[0], "sk": CAROL[1]}],
            "identityPolicies": [allow({"StringEquals": {"g:ResourceTag/team": ["payments"]}})],
        },
    ]
    return document


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database_url(backend, tmp_path) as value:
        yield value


@pytest.fixture
def flow(url: str) -> Flow:
    return Flow.start(url, seed())


def job_path(job_id: str, project: str = PROJECT) -> str:
    return f"/v1/{project}/mesh-job/{job_id}"


def signed(path: str, key: tuple[str, str], *, secret: str | None = None) -> dict[str, str]:
    headers = {"Host": BASE_URL.removeprefix("http://"), "X-Project-Id": PROJECT, "X-Sdk-Date": SDK_DATE}
    headers["Authorization"] = sign("GET", path, headers, b"", key[0], secret or key[1], sdk_date=SDK_DATE)
    return headers


def get_all(app: Any, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get(path, headers=headers) for path, headers in requests]

    return run_served(app, work)


class Counted:
    """Counts the calls of a method of one object (the wrapped method still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
        self.calls = 0
        original: Callable[..., Any] = getattr(target, name)

        @functools.wraps(original)
        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(target, name, counting)

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


def test_requests_that_are_not_authenticated_or_never_allowed_do_not_read_the_tree(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = flow.create(new_task())["status"]["jobId"]
    path = job_path(job_id)
    tree_reads = Counted(monkeypatch, flow.rt.jobs.reader, "bundle")
    refused = get_all(
        flow.app,
        [
            (path, {}),
            (path, {"Authorization": "nonsense"}),
            (path, {"X-Auth-Token": "MU1.forged.token"}),
            (path, {"X-Auth-Token": b"\xff\xfe"}),
            (path, signed(path, ALICE, secret=UNKNOWN[1])),  # wrong secret
            (path, signed(path, UNKNOWN)),  # unknown key
            (job_path(job_id, "f" * 32), {"X-Auth-Token": flow.token}),  # token of another project
        ],
    )
    assert [r.status_code for r in refused] == [401] * 7
    assert tree_reads.take() == 0

    # Authenticated, but no policy could allow the action anywhere: 403 before any lookup.
    (forbidden,) = get_all(flow.app, [(path, signed(path, NOBODY))])
    assert forbidden.status_code == 403 and tree_reads.take() == 0

    # Allowed somewhere: the tree is read once, then the mesh's tags decide.
    carol, alice = get_all(flow.app, [(path, signed(path, CAROL)), (path, signed(path, ALICE))])
    assert (carol.status_code, alice.status_code) == (403, 200)
    assert tree_reads.take() == 2


def test_authentication_runs_once_per_request(flow: Flow, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = flow.create(new_task())["status"]["jobId"]
    path = job_path(job_id)
    identity, reader = flow.rt.identity, flow.rt.jobs.reader
    presented = Counted(monkeypatch, identity, "presented")
    authenticated = Counted(monkeypatch, identity, "authenticate_at")
    blocking = Counted(monkeypatch, identity, "authenticate")
    loads = Counted(monkeypatch, reader, "off_loop")
    snapshots = Counted(monkeypatch, reader, "snapshot")
    trees = Counted(monkeypatch, reader, "bundle")

    tree_reads = []
    for headers in (signed(path, ALICE), {"X-Auth-Token": flow.token}):
        # First request of a credential: read once, off the event loop; then from the caches.
        for expected_loads in (1, 0, 0):
            (response,) = get_all(flow.app, [(path, headers)])
            assert response.status_code == 200, response.text
            counts = [c.take() for c in (presented, authenticated, loads, snapshots, blocking)]
            assert counts == [1, 1, expected_loads, 1, 0]
            tree_reads.append(trees.take())
    # Both databases tell whether anything was committed since (SQLite's PRAGMA data_version,
    # PostgreSQL's current snapshot): with nothing written, the tree is read once and then
    # served as read.
    assert tree_reads == [1, 0, 0, 0, 0, 0]


def test_a_commit_anywhere_is_seen_by_the_next_get(flow: Flow, url: str) -> None:
    """The tree served as read while nothing changes is read again after any commit, even one
    made by another process's connection."""
    job_id = flow.create(new_task())["status"]["jobId"]
    path = job_path(job_id)
    by_key = (path, signed(path, ALICE))
    first, again = get_all(flow.app, [by_key, by_key])
    assert first.json() == again.json()
    other = Database(url)
    try:
        with other.write() as conn:
            conn.exec_driver_sql(
                "UPDATE jobs SET phase = 'Failed', reason = 'changed elsewhere' WHERE id = "
                + ("?" if other.is_sqlite else "%s"),
                (job_id,),
            )
        (changed,) = get_all(flow.app, [by_key])
        assert changed.json()["status"]["phase"] == "Failed"
        assert changed.json()["status"]["reason"] == "changed elsewhere"
    finally:
        other.dispose()


def test_iam_changes_reach_every_process_at_the_next_request(flow: Flow, url: str) -> None:
    """Two servers on one database: what one changes, the other enforces at once."""
    job_id = flow.create(new_task())["status"]["jobId"]
    path = job_path(job_id)
    by_key, by_token = (path, signed(path, ALICE)), (path, {"X-Auth-Token": flow.token})
    assert [r.status_code for r in get_all(flow.app, [by_key, by_token])] == [200, 200]  # cached now

    other = build_runtime(
        Settings(database_url=url, master_key="k" * 40, workers=0, sim_speed=0), clock=flow.clock
    )
    try:
        with other.db.write() as conn:  # disable alice's key, change root's password
            apply_seed(
                conn,
                parse_seed(seed(alice_enabled=False, root_password="Other-Passw0rd!")),
                other.identity.master_key,
                NOW,
            )
        key_refused, token_refused = get_all(flow.app, [by_key, by_token])
        assert key_refused.status_code == 401 and "disabled" in key_refused.json()["error_msg"]
        assert token_refused.status_code == 401 and "password" in token_refused.json()["error_msg"]

        with other.db.write() as conn:  # and back: a refusal is not remembered past the epoch
            apply_seed(conn, parse_seed(seed()), other.identity.master_key, NOW)
        assert get_all(flow.app, [by_key])[0].status_code == 200
    finally:
        other.db.dispose()


def reference(nodes: dict[str, JobNode], job_id: str) -> bytes:
    """The pydantic model's rendering of a stored node, from the store's own reading of the tree."""

    def model(node: JobNode) -> MeshJob:
        return MeshJob(
            kind="Job",
            apiVersion="v3",
            metadata=JobMetadata(
                uid=node.id,
                creationTimestamp=rfc3339(node.created_at),
                updateTimestamp=rfc3339(node.updated_at),
            ),
            spec=JobSpec(
                type=node.type, target=node.target or None, subjobs=[model(c) for c in node.children]
            ),
            status=JobStatus(
                phase=node.phase.value,
                reason=node.reason,
                startTime=rfc3339(node.started_at),
                completionTime=rfc3339(node.completed_at),
            ),
        )

    return model(nodes[job_id]).model_dump_json(exclude_none=True).encode()


def test_served_bytes_are_the_pydantic_rendering_of_the_stored_tree(flow: Flow) -> None:
    job_id = flow.create(new_task())["status"]["jobId"]
    flow.clock.advance(1.5)
    flow.run()
    with flow.rt.db.read() as conn:
        nodes = assemble(job_store.load_tree(conn, job_id))
    some = [job_id, *(node.id for node in list(nodes.values())[1:4])]
    responses = get_all(flow.app, [(job_path(node_id), {"X-Auth-Token": flow.token}) for node_id in some])
    for node_id, response in zip(some, responses, strict=True):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == reference(nodes, node_id)


def test_the_framework_route_answers_as_the_fast_entry(flow: Flow) -> None:
    """Both entries run the same coroutine (the framework's is what OpenAPI documents)."""
    job_id = flow.create(new_task())["status"]["jobId"]
    framework = flow.app
    while not hasattr(framework, "openapi"):
        framework = framework.app
    requests = [
        (job_path(job_id), {"X-Auth-Token": flow.token}),
        (job_path("no-such-job"), {"X-Auth-Token": flow.token}),
        (job_path(job_id), signed(job_path(job_id), NOBODY)),
    ]
    fast = get_all(flow.app, requests)
    routed = get_all(framework, requests)
    assert [r.status_code for r in fast] == [200, 404, 403]
    assert [(r.status_code, r.content) for r in routed] == [(r.status_code, r.content) for r in fast]


def test_credential_reads_run_off_the_event_loop(flow: Flow) -> None:
    async def where() -> tuple[int, int]:
        return threading.get_ident(), await flow.rt.jobs.reader.off_loop(lambda _conn: threading.get_ident())

    loop_thread, read_thread = asyncio.run(where())
    assert loop_thread != read_thread


@pytest.mark.postgres
def test_postgres_reads_are_shared_only_by_requests_that_came_before_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with database_url("postgres", tmp_path) as url:
        database = Database(url)
        database.migrate()
        reader = HotReader(database)
        queries = Counted(monkeypatch, reader, "_postgres")

        def bump() -> None:
            with database.write() as conn:
                identity_store.bump_epoch(conn, identity_store.IAM_EPOCH)

        async def scenario() -> tuple[list[int], int, int]:
            trees = await asyncio.gather(*(reader.bundle(f"job-{i % 2}") for i in range(6)))
            assert trees == [None] * 6 and queries.take() == 2  # one query per job asked about
            together = await asyncio.gather(*(reader.epoch() for _ in range(5)))
            shared_queries = queries.take()
            first = asyncio.create_task(reader.epoch())
            while queries.calls == 0:  # until its query is on its way
                await asyncio.sleep(0)
            await asyncio.to_thread(bump)  # committed after the first query was sent ...
            later = await reader.epoch()  # ... so a request arriving now needs a query of its own
            await first
            await reader.close()
            return together, shared_queries, later

        try:
            together, shared_queries, later = asyncio.run(scenario())
        finally:
            database.dispose()
        assert together == [together[0]] * 5 and shared_queries == 1
        assert later == together[0] + 1
        assert queries.take() == 2


@pytest.mark.postgres
def test_postgres_generation_stays_while_nothing_is_committed_and_never_comes_back(tmp_path: Path) -> None:
    """PostgreSQL's generation (the current snapshot) is equal only while no transaction that
    wrote has committed, whether it began before the first read or after it."""
    with database_url("postgres", tmp_path) as url:
        database = Database(url)
        database.migrate()
        reader = HotReader(database)
        writer = database.write_engine.connect()

        async def generation() -> int | str | None:
            return (await reader.snapshot()).generation

        async def scenario() -> list[int | str | None]:
            seen = [await generation(), await generation()]  # nothing written: equal
            transaction = writer.begin()  # a writer that began before the next read ...
            writer.exec_driver_sql("UPDATE epochs SET value = value WHERE name = 'iam'")
            writer.exec_driver_sql("SELECT pg_current_xact_id()")
            seen.append(await generation())
            transaction.commit()  # ... and committed after it
            seen.append(await generation())
            await asyncio.to_thread(bump_elsewhere, database)  # one that began and ended between
            seen.append(await generation())
            await reader.close()
            return seen

        try:
            seen = asyncio.run(scenario())
        finally:
            writer.close()
            database.dispose()
        assert seen[0] == seen[1], seen
        # A writer still in progress may or may not show; its commit always does, as does one
        # that began and committed between two reads.
        before_commit, after_commit, after_other = seen[2:]
        assert after_commit not in (seen[1], before_commit) and after_other != after_commit, seen


def bump_elsewhere(database: Database) -> None:
    with database.write() as conn:
        identity_store.bump_epoch(conn, identity_store.IAM_EPOCH)
