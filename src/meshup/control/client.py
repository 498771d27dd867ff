"""A client of the control API, for ``meshup admin``, the pytest plugin and any test harness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from meshup.control.access import HEADER


class ControlError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("errorMsg") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status}: {message or body}")
        self.status = status
        self.body = body


class ControlClient:
    def __init__(self, endpoint: str, token: str, *, timeout: float = 60.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(
            base_url=self.endpoint + "/meshup-api", headers={HEADER: token}, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = response.text
        if response.status_code >= 400:
            raise ControlError(response.status_code, body)
        return body

    def reset(self, to: str = "start") -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/reset", json={"to": to})
        return result

    def save_snapshot(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", f"/snapshots/{name}")
        return result

    def snapshots(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/snapshots")["snapshots"]
        return result

    def restore_snapshot(self, name: str) -> None:
        self._call("POST", f"/snapshots/{name}/restore")

    def delete_snapshot(self, name: str) -> None:
        self._call("DELETE", f"/snapshots/{name}")

    def seed(self, document: dict[str, Any] | str | Path) -> dict[str, Any]:
        """Apply a seed: a mapping (sent as JSON), or a YAML/JSON file."""
        if isinstance(document, dict):
            result: dict[str, Any] = self._call("POST", "/seed", json=document)
            return result
        path = Path(document)
        media = "application/json" if path.suffix.lower() == ".json" else "application/yaml"
        result = self._call("POST", "/seed", content=path.read_bytes(), headers={"Content-Type": media})
        return result

    def clock(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/clock")
        return result

    def set_clock(self, mode: str, *, speed: float | None = None, now: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"mode": mode}
        if speed is not None:
            body["speed"] = speed
        if now is not None:
            body["now"] = now
        result: dict[str, Any] = self._call("PUT", "/clock", json=body)
        return result

    def advance(self, seconds: float) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/clock/advance", json={"seconds": seconds})
        return result

    def run_until_idle(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/clock/run-until-idle")
        return result

    def faults(self, cluster: str | None = None) -> list[dict[str, Any]]:
        params = {"cluster": cluster} if cluster else None
        result: list[dict[str, Any]] = self._call("GET", "/faults", params=params)["faults"]
        return result

    def add_fault(self, cluster: str, job_type: str, **options: Any) -> dict[str, Any]:
        """``options``: account, times, reason, namespace, workload, neverReady, revision."""
        body = {
            "cluster": cluster,
            "jobType": job_type,
            **{k: v for k, v in options.items() if v is not None},
        }
        result: dict[str, Any] = self._call("POST", "/faults", json=body)
        return result

    def delete_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"/faults/{fault_id}")
