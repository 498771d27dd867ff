"""Throughput of the mesh-job GET against a bare ASGI app returning the same bytes.

Both run under the same server (uvicorn, one process, uvloop + httptools) on this machine, loaded by
wrk over loopback in the same run, so the ratio is what matters on a noisy machine. meshup serves
an IAM user whose only policy allows asm:mesh:getUpgradeJob under StringEquals
g:ResourceTag/team = payments, authenticated by AK/SK signature and by token, with N stored jobs.

    python bench/mesh_job.py                       # 1,000 and 100,000 stored jobs, SQLite
    python bench/mesh_job.py --jobs 1000 1000000   # up to a million
    python bench/mesh_job.py --database-url postgresql://postgres@127.0.0.1:5432/bench

Needs wrk (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from meshup.iam.signing import sign  # noqa: E402
from meshup.store import tables as t  # noqa: E402
from meshup.store.db import Database  # noqa: E402

PROJECT = "0123456789abcdef0123456789abcdef"
MESH = "9b2f4c1e-0000-4000-8000-000000000001"
AK, SK = "AKBENCHALICE00000001", "BenchAliceSecretKey000000000000000000001"
PASSWORD = "Bench-Passw0rd!"
MASTER_KEY = "bench-master-key-0000000000000000000000000"


def seed_document() -> dict[str, object]:
    policy = {
        "Version": "5.0",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["asm:mesh:getUpgradeJob"],
                "Resource": ["asm:*:*:mesh:*"],
                "Condition": {"StringEquals": {"g:ResourceTag/team": ["payments"]}},
            }
        ],
    }
    return {
        "accounts": [
            {
                "name": "bench",
                "projects": [{"name": "cn-north-4", "id": PROJECT}],
                "users": [
                    {
                        "name": "alice",
                        "password": PASSWORD,
                        "accessKeys": [{"ak": AK, "sk": SK}],
                        "identityPolicies": [policy],
                    }
                ],
                "meshes": [
                    {
                        "name": "mesh-bench",
                        "id": MESH,
                        "project": "cn-north-4",
                        "version": "1.15.7-r1",
                        "tags": {"team": "payments"},
                        "clusters": ["c1"],
                    }
                ],
            }
        ]
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill_jobs(database_url: str, count: int) -> str:
    """Insert ``count`` job rows (trees of a root and 4 leaves); return a root id to query."""
    db = Database(database_url)
    now = datetime.now(UTC)
    target = ""
    rows: list[dict[str, object]] = []
    with db.write() as conn:
        for tree in range(max(1, count // 5)):
            root = str(uuid.uuid4())
            target = target or root
            for position in range(5):
                node = root if position == 0 else str(uuid.uuid4())
                rows.append(
                    {
                        "id": node,
                        "root_id": root,
                        "parent_id": None if position == 0 else root,
                        "position": max(0, position - 1),
                        "type": "ControlPlaneUpgrade" if position == 0 else "InstallControlPlane",
                        "target": "" if position == 0 else f"cluster c{position}",
                        "phase": "Success",
                        "reason": "",
                        "created_at": now,
                        "updated_at": now,
                        "started_at": now,
                        "completed_at": now,
                        "mesh_id": MESH,
                        "project_id": PROJECT,
                        "attempt": 1,
                        "payload": {},
                        "runnable": False,
                    }
                )
            if len(rows) >= 20_000:
                conn.execute(insert(t.jobs), rows)
                rows.clear()
            _ = tree
        if rows:
            conn.execute(insert(t.jobs), rows)
    db.dispose()
    return target


@dataclass
class Result:
    label: str
    rps: float
    p50: str
    p99: str
    non_2xx: int


def wrk(url: str, headers: dict[str, str], duration: int, connections: int, label: str) -> Result:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Result(label, rps, p50, p99, int(bad.group(1)) if bad else 0)


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def run(count: int, database_url: str | None, duration: int, connections: int) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="meshup-bench-"))
    url = database_url or f"sqlite:///{work / 'meshup.db'}"
    seed = work / "seed.yaml"
    seed.write_text(yaml.safe_dump(seed_document()))
    env = {
        **os.environ,
        "MESHUP_DATABASE_URL": url,
        "MESHUP_MASTER_KEY": MASTER_KEY,
        "PYTHONPATH": str(ROOT / "src"),
    }
    subprocess.run(
        [sys.executable, "-m", "meshup.cli", "seed", "apply", str(seed)],
        env=env,
        check=True,
        capture_output=True,
    )
    job_id = fill_jobs(url, count)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshup.cli",
            "serve",
            "--port",
            str(port),
            "--no-worker",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bare_port = free_port()
    bare = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(f"{base}/healthz", server)
        path = f"/v1/{PROJECT}/mesh-job/{job_id}"
        date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        host = f"127.0.0.1:{port}"
        signed = {
            "Content-Type": "application/json",
            "Host": host,
            "X-Project-Id": PROJECT,
            "X-Sdk-Date": date,
        }
        signed["Authorization"] = sign("GET", path, signed, b"", AK, SK, sdk_date=date)
        check = httpx.get(base + path, headers=signed)
        assert check.status_code == 200, check.text
        body_file = work / "body.json"
        body_file.write_bytes(check.content)
        login = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": "alice", "password": PASSWORD, "domain": {"name": "bench"}}
                    },
                },
                "scope": {"project": {"id": PROJECT}},
            }
        }
        token = httpx.post(f"{base}/v3/auth/tokens", json=login).headers["X-Subject-Token"]
        assert httpx.get(base + path, headers={"X-Auth-Token": token}).status_code == 200

        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_app:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--loop",
                "uvloop",
                "--http",
                "meshup.http.heads:BoundedHeadProtocol",  # the protocol meshup serve runs
            ],
            env={**env, "BENCH_BODY_FILE": str(body_file)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_healthy(f"http://127.0.0.1:{bare_port}/", bare)
        wrk(f"http://127.0.0.1:{bare_port}{path}", {}, 2, connections, "warm-up")
        results = [
            wrk(f"http://127.0.0.1:{bare_port}{path}", {}, duration, connections, "bare ASGI, same bytes")
        ]
        wrk(base + path, signed, 2, connections, "warm-up")
        results.append(wrk(base + path, signed, duration, connections, f"meshup AK/SK, {count:,} jobs"))
        results.append(
            wrk(base + path, {"X-Auth-Token": token}, duration, connections, f"meshup token, {count:,} jobs")
        )
        return results
    finally:
        for process in (server, bare):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL URL of an EMPTY database (default: SQLite)"
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
    print(f"{'':34} {'req/s':>10} {'p50':>9} {'p99':>9} {'vs bare':>8} {'non-2xx':>8}")
    for count in args.jobs:
        results = run(count, args.database_url, args.duration, args.connections)
        bare = results[0].rps
        for result in results:
            print(
                f"{result.label:34} {result.rps:>10.0f} {result.p50:>9} {result.p99:>9} "
                f"{result.rps / bare:>8.0%} {result.non_2xx:>8}"
            )
        print(json.dumps({"jobs": count, **{r.label: round(r.rps) for r in results}}), file=sys.stderr)


if __name__ == "__main__":
    main()
