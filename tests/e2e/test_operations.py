"""Operating the server: health, metrics, the OpenAPI document, request ids and the access log."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from prometheus_client.parser import text_string_to_metric_families

from meshup.iam.signing import sign
from tests.e2e.conftest import KEYS, MISSING_JOB, PASSWORDS, PAY_JOB, PROJECT, SEED, SHOP_JOB
from tests.support.clients import asm_client, get_mesh_job, keystone_token
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

JOB_ROUTE = "/v1/{project_id}/mesh-job/{job_id}"
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
WRONG_PASSWORD = "Wr0ng-Passw0rd-Operations-7431!"


def job_url(server: ServerProcess, job_id: str) -> str:
    return f"{server.url}/v1/{PROJECT}/mesh-job/{job_id}"


def login_body(user: str, password: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": "acme"}}},
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }


# -- health ---------------------------------------------------------------------------------------


def test_liveness_and_readiness(server: ServerProcess) -> None:
    for path in ("/healthz", "/readyz", "/healthz/", "/readyz/"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("application/json")
        assert REQUEST_ID.match(response.headers["x-request-id"])


# -- request ids ----------------------------------------------------------------------------------


def test_every_response_carries_a_unique_request_id(server: ServerProcess) -> None:
    responses = [
        httpx.get(f"{server.url}/healthz"),
        httpx.get(f"{server.url}/metrics"),
        httpx.get(f"{server.url}/openapi.json"),
        httpx.get(f"{server.url}/no/such/thing"),  # 404, no route
        httpx.delete(f"{server.url}/healthz"),  # 405
        httpx.get(job_url(server, PAY_JOB)),  # 401, no credentials
        httpx.get(job_url(server, PAY_JOB), headers={"X-Auth-Token": "MU1.forged.token"}),  # 401
        httpx.post(f"{server.url}/v3/auth/tokens", json=login_body("alice", WRONG_PASSWORD)),  # 401
        httpx.post(
            f"{server.url}/v3/auth/tokens", content=b"{", headers={"Content-Type": "application/json"}
        ),
        httpx.get(f"{server.url}/v3/projects"),  # 401, identity envelope
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 405, 401, 401, 401, 400, 401]
    ids = [r.headers.get("x-request-id", "") for r in responses]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    # The gateway envelope repeats the id.
    for response in responses[5:7]:
        assert response.json()["request_id"] == response.headers["x-request-id"]


# -- metrics --------------------------------------------------------------------------------------


def scrape(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_template_and_status(server: ServerProcess) -> None:
    before = scrape(server)
    ak, sk = KEYS["alice"]
    client = asm_client(server.url, ak, sk, PROJECT)
    assert get_mesh_job(client, PAY_JOB)[0] == 200
    assert get_mesh_job(client, PAY_JOB)[0] == 200
    for job_id in (SHOP_JOB, MISSING_JOB):
        with pytest.raises(ClientRequestException):
            get_mesh_job(client, job_id)
    assert httpx.get(job_url(server, PAY_JOB), headers={"X-Auth-Token": "MU1.bogus.x"}).status_code == 401
    assert httpx.get(f"{server.url}/no/such/thing").status_code == 404
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "meshup_http_requests_total"
    assert delta(requests, method="GET", route=JOB_ROUTE, status="200") == 2
    assert delta(requests, method="GET", route=JOB_ROUTE, status="403") == 1
    assert delta(requests, method="GET", route=JOB_ROUTE, status="404") == 1
    assert delta(requests, method="GET", route=JOB_ROUTE, status="401") == 1
    # Paths are never labels (unbounded cardinality): only templates appear.
    routes = {dict(labels).get("route") for (name, labels) in after if name == requests}
    assert PAY_JOB not in " ".join(r or "" for r in routes)
    assert all(r == "unmatched" or r.startswith("/") for r in routes if r)

    histogram = "meshup_http_request_duration_seconds"
    assert delta(f"{histogram}_count", route=JOB_ROUTE) == 5
    assert delta(f"{histogram}_sum", route=JOB_ROUTE) > 0
    assert delta(f"{histogram}_bucket", route=JOB_ROUTE, le="+Inf") == 5
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in after.items()
        if name == f"{histogram}_bucket" and dict(labels).get("route") == JOB_ROUTE
    )
    assert len(buckets) > 3
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)  # cumulative

    failures = "meshup_auth_failures_total"
    grew = {
        dict(labels)["reason"]
        for (name, labels) in after
        if name == failures and delta(failures, **dict(labels)) > 0
    }
    assert grew, "a rejected token must count as an authentication failure"
    assert all(re.fullmatch(r"[a-z_]+", reason) for reason in grew)


def test_failed_logins_and_signatures_are_counted(server: ServerProcess) -> None:
    before = scrape(server)
    wrong = httpx.post(f"{server.url}/v3/auth/tokens", json=login_body("alice", WRONG_PASSWORD))
    assert wrong.status_code == 401
    ak, _ = KEYS["bob"]
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = f"/v1/{PROJECT}/mesh-job/{PAY_JOB}"
    headers = {"Host": f"127.0.0.1:{server.port}", "X-Sdk-Date": date}
    headers["Authorization"] = sign("GET", path, headers, b"", ak, "not-bobs-secret-key", sdk_date=date)
    assert httpx.get(server.url + path, headers=headers).status_code == 401
    after = scrape(server)
    total_before = sum(v for (n, _), v in before.items() if n == "meshup_auth_failures_total")
    total_after = sum(v for (n, _), v in after.items() if n == "meshup_auth_failures_total")
    assert total_after - total_before == 2
    reasons = {
        dict(labels)["reason"]
        for (name, labels), count in after.items()
        if name == "meshup_auth_failures_total" and count > value(before, name, **dict(labels))
    }
    assert "signature" in reasons


# -- OpenAPI --------------------------------------------------------------------------------------


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/")
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def test_openapi_documents_the_mesh_job_api(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.text)
    assert str(document["openapi"]).startswith("3.")
    assert document["info"]["title"] and document["info"]["version"]

    operation = document["paths"][JOB_ROUTE]["get"]
    responses = operation["responses"]
    ok = resolve(document, responses["200"]["content"]["application/json"]["schema"])
    assert {"kind", "apiVersion", "metadata", "spec", "status"} <= set(ok["properties"])
    assert {"kind", "apiVersion", "metadata", "spec", "status"} <= set(ok.get("required", []))
    status = resolve(document, ok["properties"]["status"])
    assert {"phase", "reason", "startTime", "completionTime"} <= set(status["properties"])
    spec = resolve(document, ok["properties"]["spec"])
    assert "subjobs" in spec["properties"]
    for code in ("401", "403", "404"):
        assert code in responses, code
        assert responses[code]["description"]
    # Only statuses the server really answers (validation errors are 400 in its own envelope).
    assert set(responses) <= {"200", "204", "400", "401", "403", "404", "503"}
    # 204 belongs to the live-events extension only (an ended job whose last event the client holds).
    assert "204" not in responses or "Live job events" in responses["204"]["description"]
    error = resolve(document, responses["404"]["content"]["application/json"]["schema"])
    assert {"errorCode", "errorMsg"} <= set(error["properties"])
    gateway = resolve(document, {"$ref": "#/components/schemas/GatewayError"})
    assert {"error_code", "error_msg", "request_id"} <= set(gateway["properties"])

    schemes = document["components"]["securitySchemes"]
    by_header = {s.get("name"): s for s in schemes.values()}
    assert by_header["X-Auth-Token"]["type"] == "apiKey" and by_header["X-Auth-Token"]["in"] == "header"
    assert by_header["Authorization"]["type"] == "apiKey" and by_header["Authorization"]["in"] == "header"
    used = {name for requirement in operation["security"] for name in requirement}
    assert used == set(schemes)
    assert len(operation["security"]) == 2  # either one suffices (OR), not both (AND)

    for path, operations in document["paths"].items():
        for method, op in operations.items():
            assert "422" not in op.get("responses", {}), f"{method.upper()} {path} documents 422"


# -- access log -----------------------------------------------------------------------------------


def access_lines(server: ServerProcess) -> Iterator[dict[str, Any]]:
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "requestId" in entry:
                yield entry


def access_entry(server: ServerProcess, request_id: str) -> dict[str, Any]:
    """The access log line of one request (written just after the response: wait briefly)."""
    deadline = time.monotonic() + 5
    while True:
        found = [entry for entry in access_lines(server) if entry["requestId"] == request_id]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == 1, f"expected one access log line for {request_id}, found {len(found)}"
    return found[0]


def test_access_log_has_one_json_line_per_request(server: ServerProcess) -> None:
    token, _ = keystone_token(server.url, "alice", PASSWORDS["alice"], "acme", PROJECT)
    ok = httpx.get(job_url(server, PAY_JOB), headers={"X-Auth-Token": token})
    assert ok.status_code == 200
    entry = access_entry(server, ok.headers["x-request-id"])
    assert entry["principal"] == "acme/alice"
    assert entry["method"] == "GET"
    assert entry["route"] == JOB_ROUTE
    assert entry["status"] == 200
    assert isinstance(entry["durationMs"], int | float) and entry["durationMs"] >= 0

    ak, sk = KEYS["bob"]
    denied = None
    try:
        get_mesh_job(asm_client(server.url, ak, sk, PROJECT), PAY_JOB)
    except ClientRequestException as exc:
        denied = exc
    assert denied is not None and denied.status_code == 403
    entry = access_entry(server, denied.request_id)
    assert (entry["principal"], entry["status"], entry["route"]) == ("acme/bob", 403, JOB_ROUTE)

    unauthenticated = httpx.get(job_url(server, PAY_JOB))
    entry = access_entry(server, unauthenticated.headers["x-request-id"])
    assert entry["status"] == 401 and entry["principal"] == "-"

    lost = httpx.get(f"{server.url}/v1/{PROJECT}/nothing-here")
    entry = access_entry(server, lost.headers["x-request-id"])
    assert entry["status"] == 404 and entry["route"] == "unmatched"
    assert PROJECT not in json.dumps(entry)

    issued = httpx.post(f"{server.url}/v3/auth/tokens", json=login_body("alice", PASSWORDS["alice"]))
    entry = access_entry(server, issued.headers["x-request-id"])
    assert (entry["method"], entry["route"], entry["status"]) == ("POST", "/v3/auth/tokens", 201)
    assert entry["principal"] == "acme/alice"


def test_exactly_one_access_line_per_request(server: ServerProcess) -> None:
    before = sum(1 for _ in access_lines(server))
    responses = [
        httpx.get(f"{server.url}/healthz"),
        httpx.get(f"{server.url}/metrics"),
        httpx.get(f"{server.url}/nowhere"),
        httpx.get(job_url(server, MISSING_JOB)),
        httpx.post(f"{server.url}/v3/auth/tokens", json=login_body("alice", WRONG_PASSWORD)),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    entries = [access_entry(server, request_id) for request_id in ids]  # one each, or it fails
    assert [e["status"] for e in entries] == [r.status_code for r in responses]
    assert sum(1 for _ in access_lines(server)) == before + len(responses)
    assert {"requestId", "principal", "method", "route", "status", "durationMs"} <= set(entries[0])


def seed_secrets() -> set[str]:
    """Every password, secret key and security token of the e2e seed file."""
    found: set[str] = set()
    for account in yaml.safe_load(SEED.read_text())["accounts"]:
        for user in account.get("users", []):
            if user.get("password"):
                found.add(user["password"])
            for key in user.get("accessKeys", []):
                found.add(key["sk"])
                if key.get("securityToken"):
                    found.add(key["securityToken"])
    return found


def test_no_secret_reaches_the_server_log(server: ServerProcess) -> None:
    sent: set[str] = {WRONG_PASSWORD}
    # Logins: good, wrong password, unknown user, malformed.
    good = httpx.post(f"{server.url}/v3/auth/tokens", json=login_body("alice", PASSWORDS["alice"]))
    token = good.headers["x-subject-token"]
    sent.add(token)
    for user, password in (("alice", WRONG_PASSWORD), ("nobody", WRONG_PASSWORD), ("bob", "Bob-Passw0rd!!x")):
        assert httpx.post(f"{server.url}/v3/auth/tokens", json=login_body(user, password)).status_code == 401
        sent.add(password)
    httpx.post(
        f"{server.url}/v3/auth/tokens",
        content=json.dumps(login_body("alice", WRONG_PASSWORD))[:-3].encode(),
        headers={"Content-Type": "application/json"},
    )
    # Tokens: valid, tampered, validated.
    httpx.get(job_url(server, PAY_JOB), headers={"X-Auth-Token": token})
    tampered = token[:-6] + "AAAAAA"
    sent.add(tampered)
    httpx.get(job_url(server, PAY_JOB), headers={"X-Auth-Token": tampered})
    httpx.get(f"{server.url}/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": tampered})
    # Signatures: good, wrong secret, temporary key with a wrong security token.
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = f"/v1/{PROJECT}/mesh-job/{PAY_JOB}"
    for ak, sk, extra in (
        (*KEYS["alice"], {}),
        (KEYS["alice"][0], "Some-Wrong-Secret-Key-000000000000000001", {}),
        (
            "AKALICETEMPVALID0001",
            "AliceTempSecretValid00000000000000000001",
            {"X-Security-Token": "nope-7431"},
        ),
    ):
        headers = {"Host": f"127.0.0.1:{server.port}", "X-Sdk-Date": date, **extra}
        authorization = sign("GET", path, headers, b"", ak, sk, sdk_date=date)
        headers["Authorization"] = authorization
        sent.update({sk, authorization, authorization.rsplit("Signature=", 1)[1]})
        httpx.get(server.url + path, headers=headers)
    sent.add("nope-7431")
    # The SDK itself, every user.
    for ak, sk in KEYS.values():
        with contextlib.suppress(ClientRequestException):
            get_mesh_job(asm_client(server.url, ak, sk, PROJECT), PAY_JOB)

    time.sleep(0.2)  # the last access log lines are written just after their responses
    log = server.log()
    assert "requestId" in log
    leaked = sorted(secret for secret in sent | seed_secrets() if secret in log)
    assert leaked == [], f"secrets in the server log: {leaked}"
    assert "SDK-HMAC-SHA256 Access=" not in log
