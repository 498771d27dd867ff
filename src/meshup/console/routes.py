"""The console's routes: each page or action is a few calls of meshup's own API with the user's token.

Routes stay thin: read the form, call the API, hand the documents to ``views`` and a template.
Refusals of the API (400, 403, 404, 409) are shown with the API's own message; a 401 means the
token no longer works, and the person is sent back to sign in.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from meshup.console.api import ApiClient, ApiReply, segment
from meshup.console.live import Mode, fragment_mode, page_mode
from meshup.console.mesh_state import mesh_url, read_mesh, read_tree
from meshup.console.pages import BASE
from meshup.console.session import LOGIN_COOKIE, SESSION_COOKIE, Session
from meshup.console.stream import LiveStream
from meshup.console.tasks import TASKS_COOKIE, RememberedTasks, TaskIndex
from meshup.console.views import mesh_view, task_view, trace_view
from meshup.console.visit import Console, SignedOut, Visit

MAX_FORM_BYTES = 64 * 1024
AUDIT_WINDOW_MS = 7 * 86_400_000  # the audit page shows a week (the default retention)
SIGN_IN_NOTICES = {
    "expired": "Your session has expired. Sign in again.",
    "invalid": "Your session is no longer valid. Sign in again.",
    "signed-out": "You have signed out.",
}


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form (all the console's forms are); anything else reads as empty."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    if media_type != "application/x-www-form-urlencoded" or (
        declared.isdigit() and int(declared) > MAX_FORM_BYTES
    ):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=1000)


def first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0].strip() if values else ""


def build_router(console: Console) -> APIRouter:
    router = APIRouter(prefix=BASE, include_in_schema=False)

    # -- signing in and out -----------------------------------------------------------------------

    @router.get("")
    async def home(request: Request) -> Response:
        visit = Visit(console, request)
        if visit.session is None:
            return visit.go(f"{BASE}/sign-in")
        try:
            reply = await visit.call("GET", f"/v1/{visit.project}/meshes")
        except SignedOut as out:
            return visit.to_sign_in(out.reason)
        if not reply.ok:
            return visit.page("meshes.html", reply.status, meshes=[], error=reply.message)
        items = reply.body.get("items", []) if isinstance(reply.body, dict) else []
        meshes = sorted((mesh_view(item) for item in items), key=lambda mesh: mesh.name)
        return visit.page("meshes.html", meshes=meshes, error=None)

    @router.get("/audit")
    async def audit(request: Request) -> Response:
        """The project's recent traces, as the API lists them to this user (or its refusal)."""
        visit = Visit(console, request)
        if visit.session is None:
            return visit.go(f"{BASE}/sign-in")
        since = int(time.time() * 1000) - AUDIT_WINDOW_MS
        try:
            reply = await visit.call("GET", f"/v3/{visit.project}/traces?limit=100&from={since}")
        except SignedOut as out:
            return visit.to_sign_in(out.reason)
        if not reply.ok:
            return visit.problem(reply.status, reply.message)
        traces = reply.body.get("traces", []) if isinstance(reply.body, dict) else []
        return visit.page("audit.html", traces=[trace_view(trace) for trace in traces])

    def sign_in_page(
        visit: Visit, *, status: int = 200, error: str | None = None, form: dict[str, str] | None = None
    ) -> Response:
        nonce = console.signer.new_login_nonce()
        response = console.pages.render(
            "sign_in.html",
            status,
            session=None,
            login_csrf=console.signer.login_token(nonce),
            notice=SIGN_IN_NOTICES.get(visit.request.query_params.get("reason", "")),
            error=error,
            form=form or {"account": "", "user": "", "project": ""},
        )
        visit.cookie(response, LOGIN_COOKIE, nonce)
        return response

    @router.get("/sign-in")
    async def sign_in_form(request: Request) -> Response:
        return sign_in_page(Visit(console, request))

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        visit = Visit(console, request)
        form = await read_form(request)
        if not console.signer.login_ok(request.cookies.get(LOGIN_COOKIE), first(form, "csrf")):
            return visit.problem(
                403, "The sign-in form has expired or did not come from this console; reload it."
            )
        shown = {name: first(form, name) for name in ("account", "user", "project")}
        password = form.get("password", [""])[0]
        if not (shown["account"] and shown["user"] and password):
            return sign_in_page(
                visit, status=400, error="Account, user and password are required.", form=shown
            )
        session, error = await password_login(
            visit.api, shown["account"], shown["user"], password, shown["project"]
        )
        if session is None:
            return sign_in_page(visit, status=401, error=error, form=shown)
        response = visit.go(BASE)
        visit.cookie(response, SESSION_COOKIE, console.signer.session_cookie(session))
        visit.drop_cookie(response, LOGIN_COOKIE)
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        visit = Visit(console, request)
        form = await read_form(request)
        if visit.session is not None and not console.signer.csrf_ok(visit.session, first(form, "csrf")):
            return forged(visit)
        return visit.to_sign_in("signed-out")

    # -- a mesh and its upgrade -------------------------------------------------------------------

    async def mesh_page(
        visit: Visit,
        mesh_id: str,
        index: TaskIndex,
        *,
        notice: str | None = None,
        fragment: bool = False,
        polled: bool = False,
    ) -> Response:
        """The mesh's page; ``fragment``: only its live region (an action's answer, or ``polled``:
        fetched by polling or by a stream that failed, and then it keeps polling)."""
        state = await read_mesh(visit, mesh_id, index)
        if isinstance(state, ApiReply):
            url = mesh_url(mesh_id)
            if fragment and state.status >= 500:  # e.g. the database is briefly unreachable
                return visit.page(
                    "_retry.html", live_url=f"{url}/live", live_mode=Mode.POLLING, notice=state.message
                )
            if fragment:
                return visit.go(url)  # the full page says why
            return visit.problem(state.status, state.message)
        tree, tree_error = await read_tree(visit, state.job_id)
        mode = fragment_mode(state.active) if polled else page_mode(state.active, state.job_id)
        context = state.context(mode, tree=tree, tree_error=tree_error, notice=notice)
        response = visit.page("_live.html" if fragment else "mesh.html", **context)
        if isinstance(index, RememberedTasks) and index.changed:
            visit.cookie(response, TASKS_COOKIE, index.cookie())
        return response

    async def after_action(visit: Visit, mesh_id: str, index: TaskIndex, notice: str | None) -> Response:
        """htmx swaps the live region in place; a plain form post gets the whole page."""
        return await mesh_page(visit, mesh_id, index, notice=notice, fragment=visit.htmx)

    @router.get("/meshes/{mesh_id}")
    async def mesh(request: Request, mesh_id: str) -> Response:
        visit = Visit(console, request)
        if visit.session is None:
            return visit.go(f"{BASE}/sign-in")
        try:
            return await mesh_page(visit, mesh_id, visit.task_index())
        except SignedOut as out:
            return visit.to_sign_in(out.reason)

    @router.get("/meshes/{mesh_id}/live")
    async def mesh_live(request: Request, mesh_id: str) -> Response:
        visit = Visit(console, request)
        if visit.session is None:
            return visit.to_sign_in("invalid")
        try:
            return await mesh_page(visit, mesh_id, visit.task_index(), fragment=True, polled=True)
        except SignedOut as out:
            return visit.to_sign_in(out.reason)

    @router.get("/meshes/{mesh_id}/live/events")
    async def mesh_live_events(request: Request, mesh_id: str) -> Response:
        """The live region as a stream of server-sent events (see ``console.live``)."""
        return LiveStream(Visit(console, request), mesh_id)

    async def action(request: Request) -> tuple[Visit, dict[str, list[str]], Response | None]:
        """The visit and form of a POST, or the response refusing it (signed out, or forged)."""
        visit = Visit(console, request)
        form = await read_form(request)
        if visit.session is None:
            return visit, form, visit.to_sign_in("invalid")
        if not console.signer.csrf_ok(visit.session, first(form, "csrf")):
            return visit, form, forged(visit)
        return visit, form, None

    @router.post("/meshes/{mesh_id}/upgrade")
    async def start_upgrade(request: Request, mesh_id: str) -> Response:
        visit, form, refused = await action(request)
        if refused is not None:
            return refused
        target = first(form, "target")
        index = visit.task_index()
        body = {
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": task_name(target)},
            "spec": {
                "meshId": mesh_id,
                "upgradeStrategy": "Canary",
                "targetVersion": target,
                "targetType": "InCluster",
                "currentStep": {"step": "PreCheck"},
            },
        }
        try:
            reply = await visit.call("POST", f"/v1/{visit.project}/mesh-upgrade", body)
            if reply.ok:
                index.remember(mesh_id, task_view(reply.body).id)
            return await after_action(visit, mesh_id, index, None if reply.ok else reply.message)
        except SignedOut as out:
            return visit.to_sign_in(out.reason)

    @router.post("/meshes/{mesh_id}/step")
    async def run_step(request: Request, mesh_id: str) -> Response:
        visit, form, refused = await action(request)
        if refused is not None:
            return refused
        task_id, step = first(form, "task"), first(form, "step")
        current: dict[str, Any] = {"step": step}
        namespaces = [ns for ns in form.get("namespace", []) if ns]
        if namespaces:
            current["namespaces"] = namespaces
        body = {"kind": "MeshUpgrade", "apiVersion": "v1", "spec": {"currentStep": current}}
        index = visit.task_index()
        try:
            reply = await visit.call("PUT", f"/v1/{visit.project}/mesh-upgrade/{segment(task_id)}", body)
            return await after_action(visit, mesh_id, index, None if reply.ok else reply.message)
        except SignedOut as out:
            return visit.to_sign_in(out.reason)

    @router.post("/meshes/{mesh_id}/track")
    async def track(request: Request, mesh_id: str) -> Response:
        visit, form, refused = await action(request)
        if refused is not None:
            return refused
        task_id = first(form, "task")
        index = visit.task_index()
        notice = None
        try:
            reply = await visit.call("GET", f"/v1/{visit.project}/mesh-upgrade/{segment(task_id)}")
            spec = reply.body.get("spec", {}) if isinstance(reply.body, dict) else {}
            if not reply.ok:
                notice = reply.message
            elif isinstance(spec, dict) and spec.get("meshId") != mesh_id:
                notice = f"upgrade task {task_id} belongs to another mesh"
            else:
                index.remember(mesh_id, task_id)
            return await after_action(visit, mesh_id, index, notice)
        except SignedOut as out:
            return visit.to_sign_in(out.reason)

    return router


def forged(visit: Visit) -> Response:
    return visit.problem(
        403, "This form did not come from this console session (cross-site request refused)."
    )


def task_name(target: str) -> str:
    """A task name the API accepts: ``to-1-18-7-r5``."""
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in target.lower()).strip("-")
    return f"to-{cleaned}"[:64].rstrip("-") or "upgrade"


async def password_login(
    api: ApiClient, account: str, user: str, password: str, project: str
) -> tuple[Session | None, str]:
    """Keystone password login scoped to ``project`` (by name), or to the account's first project."""
    identity = {
        "methods": ["password"],
        "password": {"user": {"name": user, "password": password, "domain": {"name": account}}},
    }
    if project:
        scope: dict[str, Any] = {"project": {"name": project, "domain": {"name": account}}}
    else:
        unscoped = await api.post("/v3/auth/tokens", {"auth": {"identity": identity}}, token=False)
        if not unscoped.ok:
            return None, f"Sign-in failed: {unscoped.message}"
        projects = await api.get(
            "/v3/projects", headers={"x-auth-token": unscoped.headers.get("x-subject-token", "")}
        )
        listed = projects.body.get("projects", []) if isinstance(projects.body, dict) else []
        if not projects.ok or not listed:
            return None, "Sign-in failed: the account has no project to work in."
        scope = {"project": {"id": str(listed[0].get("id", ""))}}
    reply = await api.post("/v3/auth/tokens", {"auth": {"identity": identity, "scope": scope}}, token=False)
    token = reply.headers.get("x-subject-token", "")
    body = reply.body.get("token", {}) if isinstance(reply.body, dict) else {}
    if not reply.ok or not token or not isinstance(body, dict):
        return None, f"Sign-in failed: {reply.message}"
    scoped = body.get("project") or {}
    named = body.get("user") or {}
    return (
        Session(
            token=token,
            account=str((named.get("domain") or {}).get("name", account)),
            user=str(named.get("name", user)),
            project_id=str(scoped.get("id", "")),
            project_name=str(scoped.get("name", "")),
        ),
        "",
    )
