"""The OpenAPI document says what the server does: content types, headers, bodies, 405s."""

from __future__ import annotations

from pathlib import Path

from meshup.iam.schemas import TOKEN_REQUEST_SCHEMAS
from tests.integration.test_openapi import document


def test_metrics_are_documented_as_prometheus_text(tmp_path: Path) -> None:
    responses = document(tmp_path)["paths"]["/metrics"]["get"]["responses"]
    assert set(responses["200"]["content"]) == {"text/plain"}


def test_token_validation_documents_its_headers_and_statuses(tmp_path: Path) -> None:
    operation = document(tmp_path)["paths"]["/v3/auth/tokens"]["get"]
    assert {"200", "400", "401", "404"} == set(operation["responses"])
    assert operation["security"] == [{"iamToken": []}]
    (subject,) = operation["parameters"]
    assert subject == {
        "name": "X-Subject-Token",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    }


def test_identity_request_bodies_are_the_hand_written_schemas(tmp_path: Path) -> None:
    doc = document(tmp_path)
    for name, schema in TOKEN_REQUEST_SCHEMAS.items():
        assert doc["components"]["schemas"][name] == schema
    body = doc["paths"]["/v3/auth/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TokenRequest"}


def test_the_projects_lookup_needs_credentials(tmp_path: Path) -> None:
    operation = document(tmp_path)["paths"]["/v3/projects"]["get"]
    assert operation["security"] == [{"iamToken": []}, {"akskSignature": []}]


def test_readiness_documents_the_database_outage(tmp_path: Path) -> None:
    responses = document(tmp_path)["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} == set(responses)
    assert responses["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Status"
    }
