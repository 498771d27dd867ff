"""The OpenAPI document: every endpoint, with request bodies, responses and resolvable schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshup.app import build_runtime, create_app
from meshup.config import Settings

WRITES = {
    ("post", "/v1/{project_id}/mesh-upgrade"),
    ("put", "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"),
    ("post", "/v1/{project_id}/meshes"),
    ("put", "/v1/{project_id}/meshes/{mesh_id}"),
    ("put", "/v2/meshes/{mesh_id}/injection"),
    ("post", "/v3/auth/tokens"),
}


def document(tmp_path: Path) -> dict[str, Any]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'meshup.db'}", master_key="k" * 40, workers=0)
    runtime = build_runtime(settings)
    try:
        app: Any = create_app(settings, runtime=runtime)
        while not hasattr(app, "openapi"):  # unwrap the ASGI layers in front of the framework
            app = app.app
        return dict(app.openapi())
    finally:
        runtime.db.dispose()


def refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        return found.union(*(refs(v) for k, v in value.items() if k != "$ref"))
    if isinstance(value, list):
        return set().union(*(refs(v) for v in value))
    return set()


def test_every_asm_endpoint_is_documented(tmp_path: Path) -> None:
    doc = document(tmp_path)
    operations = {(method, path): op for path, ops in doc["paths"].items() for method, op in ops.items()}
    asm = {key for key in operations if key[1].startswith(("/v1/", "/v2/"))}
    assert len(asm) == 14
    for key in asm:
        op = operations[key]
        assert "x-iam-action" in op and op["x-iam-action"].startswith("asm:mesh:")
        assert op["security"] == [{"iamToken": []}, {"akskSignature": []}]
        assert {"401", "403", "503"} <= set(op["responses"])
    for key in WRITES:
        assert "requestBody" in operations[key], key
    for op in operations.values():
        assert "422" not in op["responses"]


def test_every_schema_reference_resolves(tmp_path: Path) -> None:
    doc = document(tmp_path)
    schemas = doc["components"]["schemas"]
    missing = [ref for ref in refs(doc) if ref.rsplit("/", 1)[-1] not in schemas]
    assert missing == []
    job = schemas["MeshJob"]
    assert set(job["properties"]) == {"kind", "apiVersion", "metadata", "spec", "status"}
