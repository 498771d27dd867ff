"""The browser console end to end: a real ``meshup serve``, driven by a person in headless Chromium.

Playwright's sync API refuses to run inside an asyncio loop, so these are plain functions and the
server is a separate process (``console_seed.yaml``; simulated clusters at 0.3 of real time, so a
step's job runs for a second or two and the live tree can be watched). What the console shows is
checked against what the API answers to the same user through keystoneauth1.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Route,
    expect,
    sync_playwright,
)

from tests.support.server import ServerProcess, start_server

pytestmark = [pytest.mark.serial, pytest.mark.e2e, pytest.mark.browser]

SEED = Path(__file__).with_name("console_seed.yaml")
PROJECT = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"
MESH_FLOW = "c0501e00-0000-4000-8000-000000000001"
MESH_BACK = "c0501e00-0000-4000-8000-000000000002"
MESH_SHOP = "c0501e00-0000-4000-8000-000000000003"
MESH_PAY = "c0501e00-0000-4000-8000-000000000004"
MESH_FALLBACK = "c0501e00-0000-4000-8000-000000000005"  # in project la-south-2
MISSING_MESH = "c0501e00-0000-4000-8000-00000000dead"
PASSWORDS = {"acme-admin": "Root-Passw0rd!", "rita": "Rita-Passw0rd!", "vera": "Vera-Passw0rd!"}
STEP_WAIT = 60_000  # ms: the longest a step may take on a loaded machine
expect.set_options(timeout=15_000)  # page updates on a machine busy with other tests
STEPS = ("PreCheck", "ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete", "Rollback")


def _serve(
    tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(name)
    server = start_server(
        workdir,
        f"sqlite:///{workdir / 'meshup.db'}",
        seed=SEED,
        extra_args=["--sim-speed", "0.3", "--workers", "2"],
        extra_env=env,
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(tmp_path_factory, "console", {})


@pytest.fixture(scope="module")
def short_token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Tokens live 3.6 seconds."""
    yield from _serve(tmp_path_factory, "console-ttl", {"MESHUP_TOKEN_TTL_HOURS": "0.001"})


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium is not None  # browser tests are not collected without it (tests/conftest.py)
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# --- helpers ---------------------------------------------------------------------------------------


def sign_in(page: Page, server: ServerProcess, user: str, *, project: str = "") -> None:
    page.goto(f"{server.url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    page.fill("input[name=account]", "acme")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.fill("input[name=project]", project)
    page.click("#sign-in")
    expect(page.locator("#who")).to_have_text(f"acme/{user}")


def open_mesh(page: Page, server: ServerProcess, mesh_id: str) -> None:
    page.goto(f"{server.url}/console/meshes/{mesh_id}")
    expect(page.locator("#mesh")).to_be_visible()


def wait_for_task(page: Page, phase: str, step: str) -> None:
    expect(page.locator("#task-step")).to_have_text(step, timeout=STEP_WAIT)
    expect(page.locator("#task-phase")).to_have_text(phase, timeout=STEP_WAIT)


def enabled_steps(page: Page) -> set[str]:
    return {step for step in STEPS if page.locator(f"#step-{step}").is_enabled()}


def root_row(page: Page) -> Any:
    return page.locator("#tree tbody tr").first


def live_requests(page: Page) -> tuple[list[str], list[str]]:
    """The URLs the page requests from now on: polls of a region's fragment URL, and streams."""
    polls: list[str] = []
    streams: list[str] = []

    def seen(request: Request) -> None:
        path = urlsplit(request.url).path
        if path.endswith("/live"):
            polls.append(path)
        elif path.endswith("/live/events"):
            streams.append(path)

    page.on("request", seen)
    return polls, streams


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


def api_error(server: ServerProcess, user: str, path: str) -> tuple[int, str]:
    reply = api_session(server, user).get(f"{server.url}{path}", raise_exc=False)
    return reply.status_code, str(reply.json()["errorMsg"])


# --- signing in and out ----------------------------------------------------------------------------


def test_sign_in_lists_the_meshes_of_the_first_project(page: Page, server: ServerProcess) -> None:
    page.goto(f"{server.url}/console/sign-in")
    page.fill("input[name=account]", "acme")
    page.fill("input[name=user]", "acme-admin")
    page.fill("input[name=password]", "not the password")
    page.click("#sign-in")
    expect(page.locator("#error")).to_contain_text(
        "Sign-in failed: The request you have made requires authentication."
    )
    expect(page.locator("input[name=user]")).to_have_value("acme-admin")  # the form keeps what was typed

    sign_in(page, server, "acme-admin")
    expect(page.locator("#project")).to_have_text("cn-north-4")  # the account's first project
    rows = page.locator("#meshes tbody tr")
    expect(rows).to_have_count(4)
    flow = page.locator("tr[data-mesh=mesh-flow]")
    expect(flow).to_contain_text("1.15.7-r1")
    expect(flow).to_contain_text("Running")
    expect(flow).to_contain_text("flow-1, flow-2")
    expect(flow).to_contain_text("team=platform")
    expect(page.locator("tr[data-mesh=mesh-shop]")).to_contain_text("1.18.7-r1")

    session = next(c for c in page.context.cookies() if c["name"] == "meshup_console")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/console"
    assert "meshup_console" not in page.evaluate("document.cookie")  # no script can read the token


def test_sign_in_to_a_project_by_name(page: Page, server: ServerProcess) -> None:
    sign_in(page, server, "acme-admin", project="eu-west-0")
    expect(page.locator("#project")).to_have_text("eu-west-0")
    expect(page.locator("#empty")).to_be_visible()  # no mesh lives there


def test_sign_out(page: Page, server: ServerProcess) -> None:
    sign_in(page, server, "acme-admin")
    page.click("#sign-out")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?reason=signed-out$"))
    expect(page.locator("#notice")).to_have_text("You have signed out.")
    assert "meshup_console" not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{server.url}/console/meshes/{MESH_FLOW}")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))


def test_an_expired_token_sends_you_back_to_sign_in(page: Page, short_token_server: ServerProcess) -> None:
    sign_in(page, short_token_server, "acme-admin")
    expect(page.locator("#meshes")).to_be_visible()
    time.sleep(4.5)  # the token lives 3.6 s
    page.goto(f"{short_token_server.url}/console/meshes/{MESH_FLOW}")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?reason=expired$"))
    expect(page.locator("#notice")).to_have_text("Your session has expired. Sign in again.")
    assert "meshup_console" not in {c["name"] for c in page.context.cookies()}


# --- upgrades --------------------------------------------------------------------------------------


def test_an_upgrade_runs_every_step_to_complete(page: Page, server: ServerProcess) -> None:
    polls, streams = live_requests(page)
    sign_in(page, server, "acme-admin")
    page.click("text=mesh-flow")
    expect(page.locator("#mesh-clusters")).to_have_text("flow-1, flow-2")
    # Only the targets the upgrade paths allow from 1.15.7-r1 are offered.
    options = page.locator("#target option").all_inner_texts()
    assert options == ["1.15.7-r4", "1.18.7-r1", "1.18.7-r5"]
    page.select_option("#target", "1.18.7-r5")
    page.click("#start-upgrade")

    # The pre-check's tree, refreshed live until every node has succeeded.
    expect(page.locator("#task-target")).to_have_text("1.18.7-r5")
    expect(page.locator("#tree")).to_be_visible()
    expect(root_row(page)).to_have_attribute("data-type", "PreCheck")
    wait_for_task(page, "Waiting", "PreCheck")
    expect(root_row(page)).to_have_attribute("data-phase", "Success")
    phases = page.locator("#tree tbody tr").evaluate_all("rows => rows.map(r => r.dataset.phase)")
    assert len(phases) > 3 and set(phases) == {"Success"}
    expect(page.locator("#tree")).to_contain_text("CheckClusterVersion")
    expect(page.locator("#tree")).to_contain_text("cluster flow-2")
    expect(root_row(page)).to_contain_text("✓")
    expect(page.locator("#live")).to_have_attribute("data-live", "idle")  # the stream has ended
    assert enabled_steps(page) == {"PreCheck", "ControlPlaneUpgrade"}

    # A refused action shows the service's message: force a disabled button and press it.
    page.locator("#step-Complete").evaluate("button => { button.disabled = false; }")
    page.click("#step-Complete")
    expect(page.locator("#notice")).to_have_text(
        "Complete is not allowed now; allowed now: PreCheck, ControlPlaneUpgrade"
    )

    page.click("#step-ControlPlaneUpgrade")
    expect(page.locator("#live")).to_have_attribute("data-live", "stream")
    expect(page.locator("#mesh-phase")).to_have_text("Upgrading")
    assert enabled_steps(page) == set()  # nothing may start while a step runs
    expect(page.locator("#tree tr[data-type=WaitControlPlaneReady]").first).to_contain_text("cluster flow-1")
    wait_for_task(page, "Waiting", "ControlPlaneUpgrade")
    expect(page.locator("#mesh-phase")).to_have_text("Running")
    assert enabled_steps(page) == {"DataPlaneUpgrade", "Rollback"}

    # Data plane: first the namespace chosen, then (none ticked) everything still pending.
    expect(page.locator("#pending")).to_have_text("shoppayments")
    boxes = page.locator("#namespaces input[type=checkbox]")
    assert sorted(boxes.evaluate_all("inputs => inputs.map(i => i.value)")) == ["payments", "shop"]
    page.check("#namespaces input[value=payments]")
    page.click("#step-DataPlaneUpgrade")
    wait_for_task(page, "Waiting", "DataPlaneUpgrade")
    expect(page.locator("#migrated")).to_have_text("payments")
    expect(page.locator("#pending")).to_have_text("shop")
    expect(page.locator("#tree")).to_contain_text("namespace payments")
    assert enabled_steps(page) == {"DataPlaneUpgrade", "Rollback"}
    page.click("#step-DataPlaneUpgrade")
    wait_for_task(page, "Waiting", "DataPlaneUpgrade")
    expect(page.locator("#pending")).to_have_text("none")
    assert enabled_steps(page) == {"Complete", "Rollback"}

    page.click("#step-Complete")
    wait_for_task(page, "Completed", "Complete")
    expect(page.locator("#mesh-version")).to_have_text("1.18.7-r5")
    expect(page.locator("#mesh-phase")).to_have_text("Running")
    expect(page.locator("#step-Complete")).to_have_count(0)  # a finished task offers no step
    expect(page.locator("#start-upgrade")).to_be_disabled()  # no upgrade path leads on from 1.18.7-r5

    # Every step's tree came from the event stream: not one poll of the region's fragment URL.
    assert polls == [] and len(streams) >= 4

    # The page remembers the task across visits; the list shows the new version.
    page.goto(f"{server.url}/console")
    expect(page.locator("tr[data-mesh=mesh-flow]")).to_contain_text("1.18.7-r5")
    open_mesh(page, server, MESH_FLOW)
    expect(page.locator("#task-phase")).to_have_text("Completed")


def test_roll_back_an_upgrade(page: Page, server: ServerProcess, browser: Browser) -> None:
    sign_in(page, server, "acme-admin")
    open_mesh(page, server, MESH_BACK)
    page.select_option("#target", "1.18.7-r1")
    page.click("#start-upgrade")
    wait_for_task(page, "Waiting", "PreCheck")
    assert "Rollback" not in enabled_steps(page)  # nothing to roll back before the control plane
    page.click("#step-ControlPlaneUpgrade")
    wait_for_task(page, "Waiting", "ControlPlaneUpgrade")
    page.click("#step-Rollback")
    expect(page.locator("#mesh-phase")).to_have_text("RollingBack")
    expect(root_row(page)).to_have_attribute("data-type", "Rollback")
    wait_for_task(page, "RolledBack", "Rollback")
    expect(root_row(page)).to_have_attribute("data-phase", "Success")
    expect(page.locator("#mesh-phase")).to_have_text("Running")
    expect(page.locator("#mesh-version")).to_have_text("1.15.7-r1")
    expect(page.locator("#start-upgrade")).to_be_enabled()  # a rolled-back mesh may start again

    # The mesh's history lists the task (from the API's task list).
    task_id = page.locator("#task code.id").inner_text()
    expect(page.locator(f"#history tr[data-task='{task_id}']")).to_have_attribute("data-phase", "RolledBack")
    # Another browser (no cookies of the first) finds the task through the API's task list too,
    # and following a task id still works.
    other = browser.new_page()
    try:
        sign_in(other, server, "acme-admin")
        open_mesh(other, server, MESH_BACK)
        expect(other.locator("#task code.id")).to_have_text(task_id)
        expect(other.locator("#task-phase")).to_have_text("RolledBack")
        expect(other.locator("#history tbody tr")).to_have_count(1)
        other.click("details.track summary")
        other.fill("#track-task", task_id)
        with other.expect_response(lambda response: response.url.endswith("/track")):
            other.click("#track")  # the page looks the same afterwards: wait for its answer
        expect(other.locator("#task-phase")).to_have_text("RolledBack")
        expect(other.locator("#notice")).to_have_count(0)
        other.click("details.track summary")
        other.fill("#track-task", "00000000-0000-4000-8000-00000000dead")
        other.click("#track")
        expect(other.locator("#notice")).to_contain_text("not found")
    finally:
        other.close()


def test_the_live_region_polls_where_it_cannot_stream(
    page: Page, server: ServerProcess, context: BrowserContext
) -> None:
    # A browser without EventSource: the region fetches its fragment URL and polls from then on.
    page.add_init_script("delete window.EventSource")
    polls, streams = live_requests(page)
    sign_in(page, server, "acme-admin", project="la-south-2")
    open_mesh(page, server, MESH_FALLBACK)
    page.select_option("#target", "1.18.7-r1")
    page.click("#start-upgrade")
    expect(page.locator("#live")).to_have_attribute("data-live", "polling")
    wait_for_task(page, "Waiting", "PreCheck")
    expect(root_row(page)).to_have_attribute("data-phase", "Success")
    expect(page.locator("#live")).to_have_attribute("data-live", "idle")
    assert polls and streams == []

    # A stream that fails (here: the server's answer replaced by a 503): the same fallback.
    other = context.new_page()

    def unavailable(route: Route) -> None:
        route.fulfill(status=503, content_type="text/plain", body="unavailable")

    other.route(re.compile(r".*/live/events$"), unavailable)
    polls, streams = live_requests(other)
    open_mesh(other, server, MESH_FALLBACK)
    other.click("#step-ControlPlaneUpgrade")
    expect(other.locator("#live")).to_have_attribute("data-live", "polling")
    wait_for_task(other, "Waiting", "ControlPlaneUpgrade")
    expect(other.locator("#live")).to_have_attribute("data-live", "idle")
    assert polls and streams


# --- the same IAM decisions as the API -------------------------------------------------------------


def test_a_restricted_user_sees_only_the_meshes_the_api_shows_them(page: Page, server: ServerProcess) -> None:
    sign_in(page, server, "rita")
    expect(page.locator("#meshes tbody tr")).to_have_count(1)
    expect(page.locator("tr[data-mesh=mesh-shop]")).to_be_visible()

    status, message = api_error(server, "rita", f"/v1/{PROJECT}/meshes/{MESH_PAY}")
    assert status == 403
    reply = page.goto(f"{server.url}/console/meshes/{MESH_PAY}")
    assert reply is not None and reply.status == 403
    expect(page.locator("#error")).to_have_text(message)
    assert "Traceback" not in page.content()

    status, message = api_error(server, "rita", f"/v1/{PROJECT}/meshes/{MISSING_MESH}")
    assert status == 404
    reply = page.goto(f"{server.url}/console/meshes/{MISSING_MESH}")
    assert reply is not None and reply.status == 404
    expect(page.locator("#error")).to_have_text(message)


def test_a_denied_action_shows_the_api_message(page: Page, server: ServerProcess) -> None:
    sign_in(page, server, "vera")
    expect(page.locator("#meshes tbody tr")).to_have_count(4)
    open_mesh(page, server, MESH_SHOP)
    page.click("#start-upgrade")
    body = {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": "to-1-18-7-r5"},
        "spec": {
            "meshId": MESH_SHOP,
            "upgradeStrategy": "Canary",
            "targetVersion": "1.18.7-r5",
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }
    reply = api_session(server, "vera").post(
        f"{server.url}/v1/{PROJECT}/mesh-upgrade", json=body, raise_exc=False
    )
    assert reply.status_code == 403
    expect(page.locator("#notice")).to_have_text(reply.json()["errorMsg"])
    assert "IAM denies asm:mesh:upgrade" in reply.json()["errorMsg"]
    expect(page.locator("#task-name")).to_have_count(0)  # no task was created


# --- request forgery -------------------------------------------------------------------------------


def post_from_page(page: Page, path: str, body: str) -> int:
    """A same-origin POST with the session cookie, as a script injected into the page could send."""
    return int(
        page.evaluate(
            """async ([path, body]) => (await fetch(path, {method: "POST", body,
                 headers: {"Content-Type": "application/x-www-form-urlencoded"}})).status""",
            [path, body],
        )
    )


def test_a_post_without_the_form_token_is_refused(page: Page, server: ServerProcess) -> None:
    sign_in(page, server, "acme-admin")
    open_mesh(page, server, MESH_PAY)
    upgrade = f"/console/meshes/{MESH_PAY}/upgrade"
    assert post_from_page(page, upgrade, "target=1.18.7-r5") == 403
    assert post_from_page(page, upgrade, "target=1.18.7-r5&csrf=forged") == 403
    assert post_from_page(page, "/console/sign-out", "") == 403
    assert post_from_page(page, "/console/sign-in", "account=acme&user=rita&password=Rita-Passw0rd%21") == 403

    # Nothing happened: still signed in as before, and the mesh has no upgrade task.
    page.reload()
    expect(page.locator("#who")).to_have_text("acme/acme-admin")
    expect(page.locator("#task-name")).to_have_count(0)
    root = api_session(server, "acme-admin")
    mesh = root.get(f"{server.url}/v1/{PROJECT}/meshes/{MESH_PAY}").json()
    assert mesh["status"]["phase"] == "Running"

    # Another site's form: the browser sends no SameSite=Strict cookie and the token is missing.
    reply = httpx.post(f"{server.url}{upgrade}", data={"target": "1.18.7-r5"})
    assert reply.status_code == 303 and reply.headers["location"] == "/console/sign-in?reason=invalid"


def test_the_console_is_not_in_the_api_schema(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert not [path for path in document["paths"] if path.startswith("/console")]
    htmx = httpx.get(f"{server.url}/console/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text
    sse = httpx.get(f"{server.url}/console/static/htmx-ext-sse.min.js")
    assert sse.status_code == 200 and 'htmx.defineExtension("sse"' in sse.text
