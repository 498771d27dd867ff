"""A bounded flood of failed password logins, run as its own process so that its CPU time and
its event loop never share a GIL with the client whose latency the test measures.

``python -m tests.support.flood '<json plan>'`` prints one JSON line: the count of each status,
per target URL, and how long the flood lasted. Every client sends wrong passwords, one request
after the other, as fast as the server answers (an attacker does not honour Retry-After), until
it has sent ``per_client`` requests or ``seconds`` have passed. Targets are loopback servers only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class FloodPlan:
    urls: list[str]  # servers, taken in turn by the clients
    domain: str
    project_id: str
    users: list[str]  # user names to guess at (known and unknown)
    clients: int
    per_client: int
    seconds: float
    sources: list[str]  # local addresses, taken in turn by the clients ([] = the default)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def login_body(user: str, password: str, domain: str, project_id: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
            },
            "scope": {"project": {"id": project_id}},
        }
    }


async def _client(number: int, plan: FloodPlan, deadline: float, counts: dict[str, Counter[str]]) -> None:
    url = plan.urls[number % len(plan.urls)]
    for url_ in plan.urls:
        assert url_.startswith("http://127."), "the flood targets loopback servers only"
    transport = httpx.AsyncHTTPTransport(
        local_address=plan.sources[number % len(plan.sources)] if plan.sources else None
    )
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        for attempt in range(plan.per_client):
            if time.monotonic() >= deadline:
                return
            user = plan.users[(number + attempt) % len(plan.users)]
            body = login_body(user, f"wrong-{number}-{attempt}", plan.domain, plan.project_id)
            try:
                response = await http.post(f"{url}/v3/auth/tokens", json=body)
                status = str(response.status_code)
                if response.status_code == 429 and not response.headers.get("retry-after", "").isdigit():
                    status = "429-without-retry-after"
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            counts[url][status] += 1


async def flood(plan: FloodPlan) -> dict[str, Any]:
    counts: dict[str, Counter[str]] = {url: Counter() for url in plan.urls}
    started = time.monotonic()
    deadline = started + plan.seconds
    await asyncio.gather(*(_client(number, plan, deadline, counts) for number in range(plan.clients)))
    return {"counts": {url: dict(c) for url, c in counts.items()}, "seconds": time.monotonic() - started}


def main() -> None:
    # The attackers' CPU is not the server's: on one machine, let the server have it first.
    os.nice(10)
    plan = FloodPlan(**json.loads(sys.argv[1]))
    print(json.dumps(asyncio.run(flood(plan))), flush=True)


if __name__ == "__main__":
    main()
