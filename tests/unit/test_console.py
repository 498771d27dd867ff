"""The console's pure parts: what buttons a task document enables, the tree rows, cookies, the ASGI call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from meshup.client.sse import parse_events
from meshup.console.api import ApiClient, ApiReply, StreamBlock
from meshup.console.live import Mode, final_mode, fragment_mode, live_body, live_region, page_mode
from meshup.console.routes import task_name
from meshup.console.session import Session, Signer
from meshup.console.stream import sse_event
from meshup.console.tasks import MAX_REMEMBERED, RememberedTasks
from meshup.console.views import duration, state_of, task_view, tree_rows, upgrade_targets
from meshup.upgrades.model import Step, StepRun, TaskPhase, TaskState, allowed_next, finished, started

SESSION = Session("MU1.token", "acme", "alice", "c" * 32, "cn-north-4")


def document(phase: str, step: str, migrated: list[str], pending: list[str]) -> dict[str, Any]:
    return {
        "kind": "MeshUpgrade",
        "metadata": {"name": "to-1-18-7-r5", "uid": "t-1"},
        "spec": {"targetVersion": "1.18.7-r5", "currentStep": {"step": step}},
        "status": {
            "phase": phase,
            "step": step,
            "jobId": "j-1",
            "message": "",
            "migratedNamespaces": migrated,
            "pendingNamespaces": pending,
        },
    }


def render(state: TaskState) -> dict[str, Any]:
    """The task document the API renders for ``state`` (status only matters here)."""
    last = state.last
    assert last is not None
    return document(state.phase.value, last.step.value, list(state.migrated), list(state.pending))


def walk(steps: list[tuple[Step, bool, tuple[str, ...]]]) -> list[TaskState]:
    """Every state a task passes through for a run of (step, success, namespaces migrated)."""
    state = TaskState(TaskPhase.WAITING, ("shop", "payments"))
    states = []
    for number, (step, success, migrated_now) in enumerate(steps):
        state = started(state, step, f"job-{number}")
        states.append(state)
        state = finished(state, f"job-{number}", success, migrated_now)
        states.append(state)
    return states


RUNS = [
    [(Step.PRECHECK, False, ()), (Step.PRECHECK, True, ()), (Step.CONTROL_PLANE, False, ())],
    [(Step.PRECHECK, True, ()), (Step.PRECHECK, True, ()), (Step.CONTROL_PLANE, True, ())],
    [
        (Step.PRECHECK, True, ()),
        (Step.CONTROL_PLANE, False, ()),
        (Step.CONTROL_PLANE, True, ()),
        (Step.DATA_PLANE, True, ("payments",)),
        (Step.DATA_PLANE, False, ()),
        (Step.DATA_PLANE, True, ("shop",)),
        (Step.COMPLETE, False, ()),
        (Step.COMPLETE, True, ()),
    ],
    [
        (Step.PRECHECK, True, ()),
        (Step.CONTROL_PLANE, True, ()),
        (Step.DATA_PLANE, False, ("shop", "payments")),
        (Step.ROLLBACK, False, ()),
        (Step.ROLLBACK, True, ()),
    ],
]


@pytest.mark.parametrize("run", RUNS)
def test_a_task_document_enables_exactly_the_steps_the_state_machine_allows(
    run: list[tuple[Step, bool, tuple[str, ...]]],
) -> None:
    for state in walk(run):
        shown = task_view(render(state))
        assert {a.step for a in shown.actions if a.enabled} == {s.value for s in allowed_next(state)}, state
        assert [a.step for a in shown.actions] == [s.value for s in Step]


def test_an_unknown_document_enables_nothing() -> None:
    assert allowed_next(state_of({"status": {"phase": "Exploding", "step": "PreCheck"}})) == []
    assert allowed_next(state_of(None)) == []
    assert task_view({}).actions and not any(a.enabled for a in task_view({}).actions)


def test_state_of_keeps_the_namespaces_and_the_last_run() -> None:
    state = state_of(document("Failed", "DataPlaneUpgrade", ["shop"], ["payments"]))
    assert state.namespaces == ("shop", "payments") and state.migrated == ("shop",)
    assert state.last == StepRun(Step.DATA_PLANE, "j-1", "Failed")


def test_upgrade_targets_follow_the_upgrade_paths() -> None:
    assert upgrade_targets("1.15.7-r1") == ["1.15.7-r4", "1.18.7-r1", "1.18.7-r5"]
    assert upgrade_targets("1.18.7-r1") == ["1.18.7-r5"]
    assert upgrade_targets("1.18.7-r5") == []
    assert upgrade_targets("nonsense") == []


def test_tree_rows_are_depth_first_with_symbols_targets_and_durations() -> None:
    now = datetime(2026, 11, 27, 10, 5, 0, tzinfo=UTC)

    def job(
        kind: str, phase: str, start: str, end: str, children: list[Any], target: str = "", reason: str = ""
    ) -> Any:
        return {
            "kind": "Job",
            "metadata": {"uid": kind},
            "spec": {"type": kind, "subjobs": children, "target": target},
            "status": {"phase": phase, "reason": reason, "startTime": start, "completionTime": end},
        }

    tree = job(
        "ControlPlaneUpgrade",
        "Running",
        "2026-11-27T10:00:00Z",
        "",
        [
            job(
                "InstallControlPlane",
                "Success",
                "2026-11-27T10:00:00Z",
                "2026-11-27T10:00:04Z",
                [],
                "cluster c1",
            ),
            job(
                "WaitControlPlaneReady",
                "Failed",
                "2026-11-27T10:00:04Z",
                "2026-11-27T10:01:10Z",
                [],
                reason="istiod-1-18-7-r5 not ready after 300s",
            ),
            job("InstallGateways", "Initializing", "", "", []),
        ],
    )
    rows = tree_rows(tree, now)
    assert [(r.type, r.depth, r.symbol) for r in rows] == [
        ("ControlPlaneUpgrade", 0, "●"),
        ("InstallControlPlane", 1, "✓"),
        ("WaitControlPlaneReady", 1, "✗"),
        ("InstallGateways", 1, "○"),
    ]
    assert [r.duration for r in rows] == ["5 min 00 s", "4 s", "1 min 06 s", ""]
    assert rows[1].target == "cluster c1"
    assert rows[2].reason == "istiod-1-18-7-r5 not ready after 300s" and rows[1].reason == ""
    assert tree_rows(None) == []


def test_duration_shapes() -> None:
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    assert duration("2026-11-27T10:00:00Z", "2026-11-27T12:30:00Z", now) == "2 h 30 min"
    assert duration("2026-11-27T12:00:05Z", "", now) == "0 s"  # clocks apart: never negative
    assert duration("not a time", "", now) == ""


def test_the_session_cookie_is_signed_and_bound_to_the_key() -> None:
    signer = Signer(b"k" * 32)
    cookie = signer.session_cookie(SESSION)
    assert signer.session(cookie) == SESSION
    encoded, _, mac = cookie.partition(".")
    assert signer.session(f"{encoded}x.{mac}") is None
    assert signer.session(f"{encoded}.{mac[:-2]}AA") is None
    assert Signer(b"q" * 32).session(cookie) is None
    assert signer.session(None) is None and signer.session("") is None and signer.session("x" * 5000) is None
    # A value sealed for another purpose is not a session.
    assert signer.session(signer.seal("tasks", {"t": "a", "a": "b", "u": "c", "p": "d", "n": "e"})) is None


def test_form_tokens_depend_on_the_session_and_the_key() -> None:
    signer = Signer(b"k" * 32)
    token = signer.csrf_token(SESSION)
    assert signer.csrf_ok(SESSION, token)
    assert (
        not signer.csrf_ok(SESSION, None)
        and not signer.csrf_ok(SESSION, "")
        and not signer.csrf_ok(SESSION, "x")
    )
    other = Session("MU1.other", "acme", "alice", "c" * 32, "cn-north-4")
    assert not signer.csrf_ok(other, token)
    assert not Signer(b"q" * 32).csrf_ok(SESSION, token)
    nonce = signer.new_login_nonce()
    assert signer.login_ok(nonce, signer.login_token(nonce))
    assert not signer.login_ok(None, signer.login_token(nonce))
    assert not signer.login_ok(signer.new_login_nonce(), signer.login_token(nonce))


def test_remembered_tasks_belong_to_their_owner_and_stay_small() -> None:
    signer = Signer(b"k" * 32)
    tasks = RememberedTasks(signer, None, SESSION)
    assert tasks.latest("m-1") is None and not tasks.changed
    for number in range(MAX_REMEMBERED + 5):
        tasks.remember(f"m-{number}", f"t-{number}")
    tasks.remember("m-1", "t-new")
    cookie = tasks.cookie()
    assert len(cookie) < 4096
    again = RememberedTasks(signer, cookie, SESSION)
    assert again.latest("m-1") == "t-new"
    assert again.latest("m-0") is None  # the least recently used fell out
    assert again.latest(f"m-{MAX_REMEMBERED + 4}") == f"t-{MAX_REMEMBERED + 4}"
    again.forget("m-1", "t-other")
    assert not again.changed
    again.forget("m-1", "t-new")
    assert again.changed and again.latest("m-1") is None
    stranger = Session("MU1.x", "acme", "bob", "c" * 32, "cn-north-4")
    assert RememberedTasks(signer, cookie, stranger).latest("m-1") is None


def test_task_names_are_valid_api_names() -> None:
    assert task_name("1.18.7-r5") == "to-1-18-7-r5"
    assert task_name("") == "to"
    assert len(task_name("9" * 100)) <= 64


def test_the_live_region_streams_or_polls_only_while_active_and_escapes_its_urls() -> None:
    idle = str(live_region(Mode.IDLE, "/console/meshes/m/live", "/console/meshes/m/live/events"))
    assert idle == 'id="live" data-live="idle"'
    polling = str(live_region(Mode.POLLING, '/console/meshes/"x"/live'))
    assert 'data-live="polling"' in polling and 'hx-trigger="every 1s"' in polling
    assert "&#34;x&#34;" in polling and "sse-connect" not in polling
    stream = str(live_region(Mode.STREAM, '/console/meshes/"x"/live', '/console/meshes/"x"/live/events'))
    assert 'data-live="stream"' in stream and 'hx-ext="sse"' in stream
    assert 'sse-connect="/console/meshes/&#34;x&#34;/live/events"' in stream
    # The last event replaces the region; a failed stream makes it fetch its fragment URL once.
    assert 'sse-swap="end"' in stream and 'hx-swap="outerHTML"' in stream
    assert 'hx-get="/console/meshes/&#34;x&#34;/live" hx-trigger="htmx:sseError"' in stream
    assert 'sse-swap="live" hx-swap="innerHTML"' in str(live_body(Mode.STREAM))
    assert "sse-swap" not in live_body(Mode.POLLING) and "sse-swap" not in live_body(Mode.IDLE)


def test_which_mode_a_region_is_rendered_in() -> None:
    assert page_mode(False, "j-1") is Mode.IDLE
    assert page_mode(True, "j-1") is Mode.STREAM
    assert page_mode(True, "") is Mode.POLLING  # moving, but no job to follow
    assert fragment_mode(True) is Mode.POLLING and fragment_mode(False) is Mode.IDLE
    assert final_mode(False, "j-1", "j-1") is Mode.IDLE
    assert final_mode(True, "j-1", "j-1") is Mode.POLLING  # the same job again would end at once
    assert final_mode(True, "j-2", "j-1") is Mode.STREAM  # another step started meanwhile
    assert final_mode(True, "", "j-1") is Mode.POLLING


def test_an_event_carries_every_line_of_its_text() -> None:
    text = '<p class="a">one</p>\n<p>two\r\nthree\rfour</p>\n\n<p>after a blank line</p>'
    raw = sse_event("live", text)
    assert raw.startswith(b"event: live\ndata: <p") and raw.endswith(b"\n\n") and b"\r" not in raw
    (event,) = parse_events(raw.decode().split("\n"))
    assert event.event == "live"
    assert event.data == text.replace("\r\n", "\n").replace("\r", "\n")


def test_an_event_stream_of_the_api_is_read_as_it_comes_and_left_by_disconnecting() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope["headers"])[b"accept"].decode())
        await receive()
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in (
            b'retry: 2000\n\nid: m1\ndata: {"a"',
            b": 1}\n\n: keep-alive\n\n",
            b"event: error\ndata: x\n\n",
        ):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        seen.append((await receive())["type"])  # the console leaves
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def follow() -> list[StreamBlock | None]:
        client = ApiClient(app, client=None, host="console.test", scheme="http", token="MU1.t")
        async with client.stream("/v1/p/mesh-job/j") as events:
            assert await events.open() is None
            blocks = [await events.next(5) for _ in range(4)]
            with pytest.raises(TimeoutError):
                await events.next(0.01)
        return blocks

    blocks = asyncio.run(follow())
    assert blocks == [
        StreamBlock("", ""),
        StreamBlock("message", '{"a": 1}'),
        StreamBlock("", ""),
        StreamBlock("error", "x"),
    ]
    assert seen == ["text/event-stream", "http.disconnect"]


def test_an_event_stream_the_api_refuses_reads_as_its_reply() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b'{"errorCode": "ASM.01030001", "errorMsg": "IAM denies asm:mesh:getUpgradeJob"}'
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})

    async def follow() -> tuple[ApiReply | None, StreamBlock | None]:
        client = ApiClient(app, client=None, host="console.test", scheme="http", token="MU1.t")
        async with client.stream("/v1/p/mesh-job/j") as events:
            return await events.open(), await events.next(1)

    reply, after = asyncio.run(follow())
    assert reply is not None and reply.status == 403 and reply.message == "IAM denies asm:mesh:getUpgradeJob"
    assert after is None  # nothing follows a refusal


def test_api_calls_carry_the_token_and_the_browser_address() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        seen["body"] = (await receive())["body"]
        await send({"type": "http.response.start", "status": 409, "headers": [(b"x-request-id", b"r1")]})
        await send(
            {"type": "http.response.body", "body": b'{"errorCode": "ASM.01010003", "errorMsg": "busy"}'}
        )

    client = ApiClient(app, client=("192.0.2.7", 5050), host="console.test", scheme="https", token="MU1.t")
    reply = asyncio.run(client.put("/v1/p/mesh-upgrade/a%2Fb", {"spec": {}}))
    scope = seen["scope"]
    assert scope["client"] == ("192.0.2.7", 5050) and scope["scheme"] == "https"
    assert scope["raw_path"] == b"/v1/p/mesh-upgrade/a%2Fb" and scope["path"] == "/v1/p/mesh-upgrade/a/b"
    headers = dict(scope["headers"])
    assert headers[b"x-auth-token"] == b"MU1.t" and headers[b"content-type"] == b"application/json"
    assert headers[b"host"] == b"console.test"
    assert seen["body"] == b'{"spec":{}}'
    assert reply.status == 409 and reply.message == "busy" and not reply.ok and not reply.signed_out


def test_error_messages_of_every_envelope() -> None:
    gateway = ApiReply(401, {}, {"error_code": "APIGW.0307", "error_msg": "token expired", "request_id": "r"})
    assert gateway.message == "token expired" and gateway.signed_out and gateway.expired
    keystone = ApiReply(401, {}, {"error": {"code": 401, "title": "Unauthorized", "message": "nope"}})
    assert keystone.message == "nope" and not keystone.expired
    assert ApiReply(502, {}, None).message == "the API answered 502"


def test_a_running_data_plane_step_names_the_namespaces_it_migrates() -> None:
    running = document("Running", "DataPlaneUpgrade", [], ["shop", "payments"])
    running["spec"]["currentStep"]["namespaces"] = ["shop"]
    assert task_view(running).migrating == ["shop"]
    done = document("Waiting", "DataPlaneUpgrade", ["shop"], ["payments"])
    done["spec"]["currentStep"]["namespaces"] = ["shop"]
    assert task_view(done).migrating == []
