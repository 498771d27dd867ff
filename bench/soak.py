"""A mixed-workload soak: two API processes and two workers on one PostgreSQL database.

For N minutes, over loopback only, it runs side by side:

- pollers reading mesh jobs (AK/SK, a tag-conditioned policy), as SDK waiters do;
- upgrades in flight: on every soak mesh a loop of PreCheck → ControlPlaneUpgrade →
  DataPlaneUpgrade → Rollback → delete task, each step waited for through the mesh-job GET;
- token issuance (password logins that succeed);
- mesh churn: create a mesh on a new cluster, wait for Running, delete it, wait for 404;
- mesh lists;
- failed logins (wrong passwords for a real user, and unknown users) from another loopback
  address (127.0.0.2), which exhausts its own budget of failures (429) and no one else's.

Every response is checked against the statuses its operation may answer; anything else is
"unexpected". At the end it checks that acknowledged work is all there (every created mesh is
Running or, if deleted, gone; every acknowledged step's job is readable and finished) and that
the resident memory of every process grew less than 10% from the window after the warm-up
(minute 1, or a third of a shorter run) to the last window of the run (floor against floor). It prints a table and writes JSON.

    python bench/soak.py --minutes 5
    python bench/soak.py --minutes 1 --json soak.json          # what CI runs
    python bench/soak.py --postgres-url postgresql://postgres@127.0.0.1:5432/test

Exit status 0 only when there were no unexpected statuses, nothing acknowledged was lost and
memory stayed within bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from meshup.iam.signing import sign  # noqa: E402

PROJECT = "50a50a50a50a50a50a50a50a50a50a50"
ACCOUNT = "soak"
ROOT_AK, ROOT_SK = "AKSOAKROOT0000000001", "SoakRootSecretKey00000000000000000000001"
POLL_AK, POLL_SK = "AKSOAKPOLLER00000001", "SoakPollerSecretKey000000000000000000001"
PASSWORD = "Soak-Passw0rd!"
MASTER_KEY = "soak-master-key-000000000000000000000000000"
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
UPGRADE_MESHES = 4
ATTACKER_ADDRESS = "127.0.0.2"
TERMINAL = ("Success", "Failed")

# What each operation may answer. 409: a step raced with another client's view of the task (never
# expected here, since each mesh has one upgrader) is not allowed; 429 is allowed for logins only.
EXPECTED: dict[str, set[int]] = {
    "poll": {200},
    "task create": {201},
    "task step": {200},
    "task show": {200},
    "task delete": {200},
    "token": {201},
    "mesh create": {201},
    "mesh show": {200},
    "mesh delete": {200},
    "mesh list": {200},
    "failed login": {401, 429},
}


def seed_document() -> dict[str, Any]:
    clusters = []
    meshes = []
    for index in range(UPGRADE_MESHES):
        cluster = f"soak-u{index}"
        clusters.append(
            {
                "id": cluster,
                "kubernetesVersion": "1.28",
                "nodes": {"count": 4, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
                "namespaces": [
                    {
                        "name": "shop",
                        "labels": {"istio-injection": "enabled"},
                        "workloads": [{"name": "cart"}, {"name": "web"}, {"name": "api"}],
                    },
                    {
                        "name": "payments",
                        "labels": {"istio-injection": "enabled"},
                        "workloads": [{"name": "ledger"}],
                    },
                ],
            }
        )
        meshes.append(
            {
                "name": f"soak-upgrade-{index}",
                "project": "cn-north-4",
                "version": SOURCE,
                "tags": {"team": "payments"},
                "clusters": [cluster],
            }
        )
    poller_policy = {
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
                "name": ACCOUNT,
                "projects": [{"name": "cn-north-4", "id": PROJECT}],
                "users": [
                    {
                        "name": "soak-admin",
                        "root": True,
                        "password": PASSWORD,
                        "accessKeys": [{"ak": ROOT_AK, "sk": ROOT_SK}],
                    },
                    {
                        "name": "poller",
                        "password": PASSWORD,
                        "accessKeys": [{"ak": POLL_AK, "sk": POLL_SK}],
                        "identityPolicies": [poller_policy],
                    },
                    {"name": "victim", "password": PASSWORD},
                ],
                "clusters": clusters,
                "meshes": meshes,
            }
        ]
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Tally:
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def note(self, operation: str, response: httpx.Response) -> httpx.Response:
        self.statuses.setdefault(operation, Counter())[response.status_code] += 1
        if response.status_code not in EXPECTED[operation] and len(self.unexpected) < 50:
            self.unexpected.append(
                f"{operation}: {response.request.method} {response.request.url.path} -> "
                f"{response.status_code} {response.text[:200]}"
            )
        return response

    @property
    def unexpected_count(self) -> int:
        return sum(
            count
            for operation, counter in self.statuses.items()
            for status, count in counter.items()
            if status not in EXPECTED[operation]
        )


class Signed(httpx.Auth):
    """AK/SK signatures exactly as the official SDK makes them."""

    def __init__(self, ak: str, sk: str) -> None:
        self.ak, self.sk = ak, sk

    def auth_flow(self, request: httpx.Request) -> Any:
        date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        request.headers["Content-Type"] = "application/json"
        request.headers["X-Project-Id"] = PROJECT
        request.headers["X-Sdk-Date"] = date
        signed = {
            "Content-Type": "application/json",
            "Host": request.headers["Host"],
            "X-Project-Id": PROJECT,
            "X-Sdk-Date": date,
        }
        path = request.url.raw_path.decode()
        request.headers["Authorization"] = sign(
            request.method, path, signed, request.content, self.ak, self.sk, sdk_date=date
        )
        yield request


class Soak:
    def __init__(self, bases: list[str], deadline: float) -> None:
        self.bases = bases
        self.deadline = deadline
        self.tally = Tally()
        self.jobs: list[str] = []  # acknowledged step jobs
        self.created: dict[str, bool] = {}  # mesh id -> deleted by us
        self._turn = 0

    def base(self) -> str:
        """Spread requests over both API processes, as a load balancer would."""
        self._turn += 1
        return self.bases[self._turn % len(self.bases)]

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def wait_job(self, client: httpx.AsyncClient, job_id: str) -> str:
        while True:
            response = self.tally.note(
                "poll", await client.get(f"{self.base()}/v1/{PROJECT}/mesh-job/{job_id}")
            )
            if response.status_code == 200:
                phase = str(response.json()["status"]["phase"])
                if phase in TERMINAL:
                    return phase
            await asyncio.sleep(0.2)

    async def poller(self, client: httpx.AsyncClient) -> None:
        while self.running():
            if not self.jobs:
                await asyncio.sleep(0.1)
                continue
            job = self.jobs[secrets.randbelow(len(self.jobs))]
            self.tally.note("poll", await client.get(f"{self.base()}/v1/{PROJECT}/mesh-job/{job}"))
            await asyncio.sleep(0.005)

    async def upgrader(self, client: httpx.AsyncClient, mesh_id: str, index: int) -> None:
        cycle = 0
        while self.running():
            cycle += 1
            body = {
                "kind": "MeshUpgrade",
                "apiVersion": "v1",
                "metadata": {"name": f"soak-{index}-{cycle}"},
                "spec": {
                    "meshId": mesh_id,
                    "upgradeStrategy": "Canary",
                    "targetVersion": TARGET,
                    "targetType": "InCluster",
                    "currentStep": {"step": "PreCheck"},
                },
            }
            created = self.tally.note(
                "task create", await client.post(f"{self.base()}/v1/{PROJECT}/mesh-upgrade", json=body)
            )
            if created.status_code != 201:
                return
            task = created.json()
            task_id = task["metadata"]["uid"]
            self.jobs.append(task["status"]["jobId"])
            if await self.wait_job(client, task["status"]["jobId"]) != "Success":
                self.tally.errors.append(f"PreCheck of {task_id} failed")
                return
            for step in ("ControlPlaneUpgrade", "DataPlaneUpgrade", "Rollback"):
                body["spec"]["currentStep"] = {"step": step}
                moved = self.tally.note(
                    "task step",
                    await client.put(f"{self.base()}/v1/{PROJECT}/mesh-upgrade/{task_id}", json=body),
                )
                if moved.status_code != 200:
                    return
                job = moved.json()["status"]["jobId"]
                self.jobs.append(job)
                if await self.wait_job(client, job) != "Success":
                    self.tally.errors.append(f"{step} of {task_id} failed")
                    return
            self.tally.note(
                "task delete", await client.delete(f"{self.base()}/v1/{PROJECT}/mesh-upgrade/{task_id}")
            )

    async def churner(self, client: httpx.AsyncClient, worker: int) -> None:
        serial = 0
        while self.running():
            serial += 1
            name = f"soak-churn-{worker}-{serial}-{secrets.token_hex(2)}"
            body = {
                "apiVersion": "v1",
                "kind": "Mesh",
                "metadata": {"name": name},
                "spec": {
                    "type": "InCluster",
                    "version": SOURCE,
                    "extendParams": {"clusters": [{"clusterID": f"c-{name}"[:60]}]},
                },
            }
            created = self.tally.note(
                "mesh create", await client.post(f"{self.base()}/v1/{PROJECT}/meshes", json=body)
            )
            if created.status_code != 201:
                await asyncio.sleep(0.5)
                continue
            mesh_id = created.json()["metadata"]["uid"]
            self.created[mesh_id] = False
            while True:
                shown = self.tally.note(
                    "mesh show", await client.get(f"{self.base()}/v1/{PROJECT}/meshes/{mesh_id}")
                )
                if shown.status_code != 200 or shown.json()["status"]["phase"] != "Creating":
                    break
                await asyncio.sleep(0.2)
            if not self.running():
                return  # leave this one in place: it must still be there at the end
            deleted = self.tally.note(
                "mesh delete", await client.delete(f"{self.base()}/v1/{PROJECT}/meshes/{mesh_id}")
            )
            if deleted.status_code == 200:
                self.created[mesh_id] = True

    async def token_issuer(self, client: httpx.AsyncClient) -> None:
        while self.running():
            self.tally.note(
                "token", await client.post(f"{self.base()}/v3/auth/tokens", json=login("poller", PASSWORD))
            )
            await asyncio.sleep(0.25)

    async def failed_logins(self, client: httpx.AsyncClient) -> None:
        while self.running():
            user = "victim" if secrets.randbelow(2) else f"nobody-{secrets.token_hex(3)}"
            self.tally.note(
                "failed login", await client.post(f"{self.base()}/v3/auth/tokens", json=login(user, "wrong"))
            )
            await asyncio.sleep(0.1)

    async def lister(self, client: httpx.AsyncClient) -> None:
        while self.running():
            self.tally.note("mesh list", await client.get(f"{self.base()}/v1/{PROJECT}/meshes"))
            await asyncio.sleep(0.2)

    async def verify(self, root: httpx.AsyncClient, poller: httpx.AsyncClient) -> list[str]:
        """Everything acknowledged is there, and every job finished (after in-flight work drains)."""
        lost: list[str] = []
        for job in self.jobs:
            deadline = time.monotonic() + 120
            while True:
                response = await poller.get(f"{self.bases[0]}/v1/{PROJECT}/mesh-job/{job}")
                if response.status_code != 200:
                    lost.append(f"job {job}: {response.status_code}")
                    break
                if response.json()["status"]["phase"] in TERMINAL or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        for mesh_id, deleted in self.created.items():
            deadline = time.monotonic() + 120
            while True:
                response = await root.get(f"{self.bases[0]}/v1/{PROJECT}/meshes/{mesh_id}")
                if deleted and response.status_code == 404:
                    break
                if not deleted and response.status_code == 200:
                    if response.json()["status"]["phase"] == "Running":
                        break
                elif not deleted or response.status_code != 200:
                    lost.append(f"mesh {mesh_id}: {response.status_code}")
                    break
                if time.monotonic() > deadline:
                    lost.append(f"mesh {mesh_id}: still {response.json()['status']['phase']}")
                    break
                await asyncio.sleep(0.5)
        return lost


def login(user: str, password: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": ACCOUNT}}},
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def drive(bases: list[str], seconds: float, pids: dict[str, int], warmup: float) -> dict[str, Any]:
    soak = Soak(bases, time.monotonic() + seconds)
    # Idle connections are let go well before the server's keep-alive timeout (5 s), as a careful
    # client does: otherwise a request can race the server closing an idle connection.
    limits = httpx.Limits(max_connections=64, keepalive_expiry=2.0)
    async with (
        httpx.AsyncClient(auth=Signed(ROOT_AK, ROOT_SK), timeout=30, limits=limits) as root,
        httpx.AsyncClient(auth=Signed(POLL_AK, POLL_SK), timeout=30, limits=limits) as poller,
        httpx.AsyncClient(timeout=30, limits=limits) as anonymous,
        # Wrong passwords come from an address of their own (any 127.x is loopback), as an
        # attacker's would: the per-address budget of failed logins is theirs to exhaust (429),
        # not the legitimate users' beside them.
        httpx.AsyncClient(
            timeout=30, limits=limits, transport=httpx.AsyncHTTPTransport(local_address=ATTACKER_ADDRESS)
        ) as attacker,
    ):
        listed = (await root.get(f"{bases[0]}/v1/{PROJECT}/meshes")).json()["items"]
        upgrade_meshes = [
            m["metadata"]["uid"] for m in listed if m["metadata"]["name"].startswith("soak-upgrade")
        ]
        memory: dict[str, list[tuple[float, int]]] = {name: [] for name in pids}
        started = time.monotonic()

        async def sample() -> None:
            while soak.running():
                for name, pid in pids.items():
                    memory[name].append((time.monotonic() - started, rss_kib(pid)))
                await asyncio.sleep(2)

        tasks = [
            *(soak.upgrader(root, mesh, index) for index, mesh in enumerate(upgrade_meshes)),
            *(soak.poller(poller) for _ in range(4)),
            *(soak.churner(root, worker) for worker in range(2)),
            soak.token_issuer(anonymous),
            soak.failed_logins(attacker),
            soak.lister(root),
            sample(),
        ]
        await asyncio.gather(*tasks)
        for name, pid in pids.items():
            memory[name].append((time.monotonic() - started, rss_kib(pid)))
        lost = await soak.verify(root, poller)
    growth = {}
    # Password hashing (argon2, 64 MiB a hash, mapped and unmapped per hash) makes resident memory
    # jump and fall back within a second, so one sample says little: compare the floor of a window
    # right after the warm-up with the floor of the last window of the run. A leak raises the
    # floor; a hash in progress only raises a peak.
    window = max(10.0, seconds / 6)
    for name, samples in memory.items():
        end_at = samples[-1][0]
        early = [kib for at, kib in samples if warmup <= at < warmup + window] or [samples[-1][1]]
        late = [kib for at, kib in samples if at >= end_at - window] or [samples[-1][1]]
        base, end = min(early), min(late)
        growth[name] = {
            "at_warmup_mib": base / 1024,
            "end_mib": end / 1024,
            "growth": end / base - 1 if base else 0.0,
        }
    return {
        "seconds": seconds,
        "requests": {op: dict(counter) for op, counter in soak.tally.statuses.items()},
        "unexpected": soak.tally.unexpected_count,
        "unexpected_samples": soak.tally.unexpected,
        "errors": soak.tally.errors,
        "acknowledged_jobs": len(soak.jobs),
        "acknowledged_meshes": len(soak.created),
        "lost": lost,
        "memory": growth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MESHUP_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server where a throw-away database may be created",
    )
    parser.add_argument("--sim-speed", type=float, default=0.02)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()

    seconds = args.minutes * 60
    warmup = min(60.0, seconds / 3)
    admin = make_url(args.postgres_url).set(drivername="postgresql")
    admin_dsn = admin.render_as_string(hide_password=False)
    database = f"meshup_soak_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = admin.set(database=database).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="meshup-soak-"))
    env = {
        **os.environ,
        "MESHUP_DATABASE_URL": url,
        "MESHUP_MASTER_KEY": MASTER_KEY,
        "MESHUP_SIM_SPEED": str(args.sim_speed),
        "PYTHONPATH": str(ROOT / "src"),
        "PYTHONUNBUFFERED": "1",
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        (work / "seed.yaml").write_text(yaml.safe_dump(seed_document()))
        subprocess.run(
            [sys.executable, "-m", "meshup.cli", "seed", "apply", str(work / "seed.yaml")],
            env=env,
            check=True,
            capture_output=True,
        )
        ports = [free_port(), free_port()]
        for index, port in enumerate(ports):
            log = (work / f"api-{index}.log").open("wb")
            processes[f"api-{index}"] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "meshup.cli",
                    "serve",
                    "--port",
                    str(port),
                    "--no-worker",
                    "--log-level",
                    "warning",
                ],
                env=env,
                cwd=work,
                stdout=log,
                stderr=log,
            )
        for index in range(2):
            log = (work / f"worker-{index}.log").open("wb")
            processes[f"worker-{index}"] = subprocess.Popen(
                [sys.executable, "-m", "meshup.cli", "worker", "--threads", "2"],
                env=env,
                cwd=work,
                stdout=log,
                stderr=log,
            )
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for index, base in enumerate(bases):
            wait_healthy(f"{base}/readyz", processes[f"api-{index}"])
        pids = {name: process.pid for name, process in processes.items()}
        result = asyncio.run(drive(bases, seconds, pids, warmup))
        died = [name for name, process in processes.items() if process.poll() is not None]
        result["died"] = died
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    print(f"soak: {args.minutes:g} min, 2 API processes + 2 workers, PostgreSQL")
    print(f"{'operation':16} {'requests':>9}  statuses")
    for operation, counter in sorted(result["requests"].items()):
        statuses = ", ".join(f"{status} x{count}" for status, count in sorted(counter.items()))
        print(f"{operation:16} {sum(counter.values()):>9}  {statuses}")
    print(
        f"acknowledged: {result['acknowledged_jobs']} step jobs, {result['acknowledged_meshes']} meshes; "
        f"lost: {len(result['lost'])}; unexpected statuses: {result['unexpected']}"
    )
    print(f"{'process':10} {'RSS after warm-up':>18} {'RSS at end':>11} {'growth':>7}")
    for name, memory in result["memory"].items():
        print(
            f"{name:10} {memory['at_warmup_mib']:>15.1f} MiB {memory['end_mib']:>7.1f} MiB {memory['growth']:>7.1%}"
        )
    for line in result["unexpected_samples"][:10] + result["errors"][:10] + result["lost"][:10]:
        print("  ", line)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    ok = (
        result["unexpected"] == 0
        and not result["lost"]
        and not result["errors"]
        and not result["died"]
        and all(m["growth"] < 0.10 for m in result["memory"].values())
        and result["acknowledged_jobs"] > 0
    )
    print("soak:", "passed" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
