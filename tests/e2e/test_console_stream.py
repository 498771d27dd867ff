"""The console's live event stream over real HTTP: a real ``meshup serve``, a real client.

The stream of a mesh's live region follows the API's live job events of the step that runs and
sends the rendered region: ``live`` events (the body) while the job runs, one ``end`` event (the
whole region) when it is over. What it shows is checked against what the API answers to the same
user through keystoneauth1; refusals come from the API, as the API words them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from markupsafe import escape

from meshup.client.sse import Event, parse_events
from tests.support.server import ServerProcess, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

SEED = Path(__file__).with_name("console_seed.yaml")
PROJECT = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"
MESH_FLOW = "c0501e00-0000-4000-8000-000000000001"
MESH_BACK = "c0501e00-0000-4000-8000-000000000002"
MESH_SHOP = "c0501e00-0000-4000-8000-000000000003"
MESH_PAY = "c0501e00-0000-4000-8000-000000000004"
MISSING_MESH = "c0501e00-0000-4000-8000-00000000dead"
PASSWORDS = {"acme-admin": "Root-Passw0rd!", "rita": "Rita-Passw0rd!", "uma": "Uma-Passw0rd!"}
TIMEOUT = httpx.Timeout(10.0, read=60.0)  # a step may take long on a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("console-stream")
    process = start_server(
        workdir,
        f"sqlite:///{workdir / 'meshup.db'}",
        seed=SEED,
        # Slow enough that a pre-check is still running when the stream connects, on a busy machine too.
        extra_args=["--sim-speed", "3", "--workers", "2"],
    )
    try:
        yield process
    finally:
        process.stop()


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, f"no {name} in the page"
    return found.group(1)


def signed_in(server: ServerProcess, user: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=TIMEOUT)
    form = client.get("/console/sign-in")
    reply = client.post(
        "/console/sign-in",
        data={
            "csrf": hidden(form.text, "csrf"),
            "account": "acme",
            "user": user,
            "password": PASSWORDS[user],
            "project": "",
        },
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/console"
    return client


def api_session(server: ServerProcess, user: str) -> ks_session.Session:
    auth = v3.Password(
        auth_url=f"{server.url}/v3",
        username=user,
        password=PASSWORDS[user],
        user_domain_name="acme",
        project_name="cn-north-4",
        project_domain_name="acme",
    )
    return ks_session.Session(auth=auth)


def start_upgrade(client: httpx.Client, mesh_id: str, target: str) -> str:
    """Start a pre-check from the console's form; the page it answers with."""
    page = client.get(f"/console/meshes/{mesh_id}")
    reply = client.post(
        f"/console/meshes/{mesh_id}/upgrade", data={"csrf": hidden(page.text, "csrf"), "target": target}
    )
    assert reply.status_code == 200
    return reply.text


def events(client: httpx.Client, mesh_id: str) -> list[Event]:
    """Every event of one stream, read until the server closes it."""
    with client.stream("GET", f"/console/meshes/{mesh_id}/live/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"
        assert "content-length" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"
        return list(parse_events(response.iter_lines()))


def rows(html: str) -> list[tuple[str, str]]:
    """(type, phase) of each row of the job tree shown."""
    return re.findall(r'<tr class="node [^"]*" data-type="([^"]+)" data-phase="([^"]+)">', html)


def test_the_stream_follows_a_step_to_its_end(server: ServerProcess) -> None:
    client = signed_in(server, "acme-admin")
    page = start_upgrade(client, MESH_FLOW, "1.18.7-r5")
    assert 'data-live="stream"' in page
    assert f'sse-connect="/console/meshes/{MESH_FLOW}/live/events"' in page

    received = events(client, MESH_FLOW)
    *changes, end = received
    assert end.event == "end" and changes and {event.event for event in changes} == {"live"}
    for change in changes:  # the body: the region itself stays, and so does its connection
        assert "<section" not in change.data and 'id="mesh"' in change.data
        assert rows(change.data)[0][0] == "PreCheck"
    assert any(phase == "Running" for change in changes for _, phase in rows(change.data))

    # The end: the whole region, idle, in the state the API shows; the next step can start.
    assert end.data.startswith('<section id="live" data-live="idle"')
    assert 'id="task-phase">Waiting<' in end.data
    assert re.search(r'id="step-ControlPlaneUpgrade">', end.data)  # enabled (no "disabled")
    api = api_session(server, "acme-admin")
    task_id = re.findall(r'<code class="id">([^<]+)</code>', end.data)[0]
    task = api.get(f"{server.url}/v1/{PROJECT}/mesh-upgrade/{task_id}").json()
    job = api.get(f"{server.url}/v1/{PROJECT}/mesh-job/{task['status']['jobId']}").json()

    def nodes(node: dict[str, object]) -> Iterator[tuple[str, str]]:
        spec, status = node["spec"], node["status"]
        assert isinstance(spec, dict) and isinstance(status, dict)
        yield str(spec["type"]), str(status["phase"])
        for child in spec.get("subjobs") or []:
            yield from nodes(child)

    assert rows(end.data) == list(nodes(job))
    assert {phase for _, phase in rows(end.data)} == {"Success"}

    # Once the step is over, a new stream ends at once with the same region.
    (again,) = events(client, MESH_FLOW)
    assert again.event == "end" and again.data.startswith('<section id="live" data-live="idle"')
    assert rows(again.data) == rows(end.data)


def test_a_job_the_api_refuses_ends_the_stream_with_its_message(server: ServerProcess) -> None:
    client = signed_in(server, "uma")
    page = start_upgrade(client, MESH_BACK, "1.18.7-r1")  # uma may upgrade, not read jobs
    task_id = re.findall(r'<code class="id">([^<]+)</code>', page)[0]
    api = api_session(server, "uma")
    task = api.get(f"{server.url}/v1/{PROJECT}/mesh-upgrade/{task_id}").json()
    reply = api.get(f"{server.url}/v1/{PROJECT}/mesh-job/{task['status']['jobId']}", raise_exc=False)
    assert reply.status_code == 403
    message = reply.json()["errorMsg"]
    assert "asm:mesh:getUpgradeJob" in message

    (end,) = events(client, MESH_BACK)
    assert end.event == "end"
    assert f'<p class="error" id="tree-error" role="alert">{escape(message)}</p>' in end.data
    assert re.match(r'<section id="live" data-live="(polling|idle)"', end.data)  # idle if it ended first
    assert "Traceback" not in end.data


def test_a_mesh_the_api_refuses_hands_the_region_over_to_its_fragment_url(server: ServerProcess) -> None:
    client = signed_in(server, "rita")  # sees only the shop team's meshes
    api = api_session(server, "rita")
    for mesh_id in (MESH_PAY, MISSING_MESH):
        reply = api.get(f"{server.url}/v1/{PROJECT}/meshes/{mesh_id}", raise_exc=False)
        assert reply.status_code in (403, 404)
        (end,) = events(client, mesh_id)
        assert end.event == "end"
        assert end.data.startswith(
            f'<section id="live" data-live="polling" hx-get="/console/meshes/{mesh_id}/live"'
        )
        assert f"{escape(reply.json()['errorMsg'])} (retrying)" in end.data
        # ... where the next poll is sent to the mesh's page, which says why.
        fragment = client.get(f"/console/meshes/{mesh_id}/live", headers={"HX-Request": "true"})
        assert fragment.headers["hx-redirect"] == f"/console/meshes/{mesh_id}"


def test_without_a_session_the_stream_hands_over_to_sign_in(server: ServerProcess) -> None:
    client = httpx.Client(base_url=server.url, timeout=TIMEOUT)
    (end,) = events(client, MESH_SHOP)
    assert end.event == "end" and 'data-live="polling"' in end.data and "Signed out" in end.data
    fragment = client.get(f"/console/meshes/{MESH_SHOP}/live", headers={"HX-Request": "true"})
    assert fragment.headers["hx-redirect"] == "/console/sign-in?reason=invalid"


def test_an_idle_mesh_ends_its_stream_at_once(server: ServerProcess) -> None:
    client = signed_in(server, "acme-admin")
    page = client.get(f"/console/meshes/{MESH_SHOP}")
    assert 'data-live="idle"' in page.text and "sse-connect" not in page.text
    (end,) = events(client, MESH_SHOP)
    assert end.event == "end" and end.data.startswith('<section id="live" data-live="idle" ')
    assert 'id="start-upgrade"' in end.data
