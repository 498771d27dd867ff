"""Where a mesh-job GET's time goes inside meshup, without the HTTP server.

The whole application (``create_app``, access log on, writing to a file) answers the same GET
N times in-process through its ASGI entry, with AK/SK and with a token, and prints the CPU time
per request; ``--profile`` adds a cProfile listing of the heaviest functions. What uvicorn itself
costs per request is what ``bench/mesh_job.py``'s bare app shows.

    python bench/get_profile.py                    # µs per request, AK/SK and token
    python bench/get_profile.py --profile aksk     # and where the time goes
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.mesh_job import AK, MASTER_KEY, PASSWORD, PROJECT, SK, fill_jobs, seed_document  # noqa: E402


def build(work: Path, jobs: int, database_url: str | None) -> tuple[Any, str, str]:
    os.environ["MESHUP_MASTER_KEY"] = MASTER_KEY
    url = database_url or f"sqlite:///{work / 'meshup.db'}"
    from meshup.app import build_runtime, create_app
    from meshup.config import from_environment
    from meshup.seed.apply import apply_seed
    from meshup.seed.schema import load_seed

    seed = work / "seed.yaml"
    seed.write_text(yaml.safe_dump(seed_document()))
    settings = from_environment().with_overrides(database_url=url, access_log=True, workers=0)
    rt = build_runtime(settings)
    with rt.db.write() as conn:
        apply_seed(conn, load_seed(seed), rt.identity.master_key, rt.clock.now())
    job_id = fill_jobs(url, jobs)
    from meshup.http.access_log import LineWriter, write_to

    # What a served process does in its lifespan: access log lines to a file, from a thread.
    write_to(LineWriter(open(work / "access.log", "ab")).start())  # noqa: SIM115
    app = create_app(settings, runtime=rt)
    return app, job_id, url


def scope_for(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def call(app: Any, scope: dict[str, Any]) -> tuple[int, bytes]:
    status = 0
    body = b""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await app(dict(scope), receive, send)
    return status, body


async def login(app: Any) -> str:
    import orjson

    document = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "alice", "password": PASSWORD, "domain": {"name": "bench"}}},
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    payload = orjson.dumps(document)
    scope = scope_for("/v3/auth/tokens", {"content-type": "application/json"})
    scope["method"] = "POST"
    scope["headers"].append((b"content-length", str(len(payload)).encode()))
    token = ""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal token
        if message["type"] == "http.response.start":
            assert message["status"] == 201, message
            token = dict(message["headers"])[b"x-subject-token"].decode()

    await app(scope, receive, send)
    return token


async def measure(app: Any, scope: dict[str, Any], count: int) -> float:
    status, body = await call(app, scope)
    assert status == 200, body
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            await call(app, scope)
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


async def main_async(args: argparse.Namespace) -> None:
    from meshup.iam.signing import sign

    with tempfile.TemporaryDirectory(prefix="meshup-profile-") as tmp:
        app, job_id, _url = build(Path(tmp), args.jobs, args.database_url)
        # The lifespan opens nothing the GET needs; the app answers without it.
        path = f"/v1/{PROJECT}/mesh-job/{job_id}"
        date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        signed = {"Content-Type": "application/json", "Host": "127.0.0.1:8080", "X-Sdk-Date": date}
        signed["X-Project-Id"] = PROJECT
        signed["Authorization"] = sign("GET", path, signed, b"", AK, SK, sdk_date=date)
        token = await login(app)
        scopes = {"aksk": scope_for(path, signed), "token": scope_for(path, {"X-Auth-Token": token})}
        for name, scope in scopes.items():
            print(f"{name:6} {await measure(app, scope, args.requests):8.1f} µs CPU per request (no server)")
        if args.profile:
            profiler = cProfile.Profile()
            scope = scopes[args.profile]
            profiler.enable()
            for _ in range(args.requests * 3):
                await call(app, scope)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
            print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", choices=["aksk", "token"], default=None)
    parser.add_argument("--database-url", default=None, help="an EMPTY PostgreSQL database (default: SQLite)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
