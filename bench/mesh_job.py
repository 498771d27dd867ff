"""Throughput of the mesh-job GET against a bare ASGI app returning the same bytes.

"vs bare" compares with the bare app under the same request (the same head for the server to
parse: the AK/SK request carries five more headers than the token one); "vs plain" with the bare
app under a request with no headers of its own.

Every server runs under the same server software (uvicorn, one process, uvloop + httptools) on
this machine and is loaded by wrk over loopback in the same run, so the ratios are what matter on
a noisy machine. meshup runs with ``meshup serve``'s defaults (embedded engine workers on, the
access log on, written to a file as a deployment would) and serves an IAM user whose only policy
allows asm:mesh:getUpgradeJob under StringEquals g:ResourceTag/team = payments, authenticated by
AK/SK signature and by token, a 12-node job tree among N stored jobs. ``--access-log on off``
serves the same database a second time with the access log off. ``--compare-ref`` also serves
the code of another git revision (its ``src/``, taken with ``git archive``, run by this
interpreter) on its own database, so one run prints bare, before and after.

    python bench/mesh_job.py                       # 1,000 and 100,000 stored jobs, SQLite
    python bench/mesh_job.py --jobs 1000 --duration 5 --compare-ref main
    python bench/mesh_job.py --jobs 1000 1000000   # up to a million
    python bench/mesh_job.py --database-url postgresql://postgres@127.0.0.1:5432/test  # makes its own databases

Needs wrk (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The code under test: this checkout's, or (in the helper processes of --compare-ref) another's.
SRC = Path(os.environ.get("MESHUP_BENCH_SRC") or ROOT / "src")
sys.path.insert(0, str(SRC))

from meshup.iam.signing import sign  # noqa: E402
from meshup.store.db import Database  # noqa: E402

PROJECT = "0123456789abcdef0123456789abcdef"
MESH = "9b2f4c1e-0000-4000-8000-000000000001"
AK, SK = "AKBENCHALICE00000001", "BenchAliceSecretKey000000000000000000001"
PASSWORD = "Bench-Passw0rd!"
MASTER_KEY = "bench-master-key-0000000000000000000000000"
SERVE = [
    sys.executable,
    "-m",
    "meshup.cli",
    "serve",
    "--log-level",
    "warning",
]
BARE = [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--log-level", "warning", "--no-access-log"]
BARE += ["--loop", "uvloop", "--http", "meshup.http.heads:BoundedHeadProtocol"]  # what `meshup serve` runs


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


# A job tree as an upgrade step makes one: a root, 3 clusters' subjobs, 8 leaves (12 nodes).
TREE_SHAPE = ((3, "PreCheckCluster"), (3, "UpgradeDataPlane"), (2, "InstallControlPlane"))
TREE_NODES = 1 + len(TREE_SHAPE) + sum(leaves for leaves, _ in TREE_SHAPE)


def fill_jobs(database_url: str, count: int) -> str:
    """Insert about ``count`` job rows in 12-node trees; return a root id to query."""
    from sqlalchemy import insert

    from meshup.store import tables as t

    db = Database(database_url)
    now = datetime.now(UTC)
    target = ""
    rows: list[dict[str, object]] = []
    with db.write() as conn:
        for _tree in range(max(1, count // TREE_NODES)):
            root = str(uuid.uuid4())
            target = target or root
            nodes: list[tuple[str, str | None, int, str, str]] = [(root, None, 0, "ControlPlaneUpgrade", "")]
            for index, (leaves, kind) in enumerate(TREE_SHAPE):
                group = str(uuid.uuid4())
                nodes.append((group, root, index, "ClusterUpgrade", f"cluster c{index + 1}"))
                nodes += [
                    (str(uuid.uuid4()), group, leaf, kind, f"cluster c{index + 1}") for leaf in range(leaves)
                ]
            for node, parent, position, kind, target_text in nodes:
                rows.append(
                    {
                        "id": node,
                        "root_id": root,
                        "parent_id": parent,
                        "position": position,
                        "type": kind,
                        "target": target_text,
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
    cpu_us: float | None  # server CPU time per request: steadier than req/s on a busy machine


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    headers: dict[str, str],
    duration: int,
    connections: int,
    label: str,
    pid: int,
    prefix: Sequence[str] = (),
) -> Result:
    """One wrk run; ``prefix`` runs it under another command (``taskset -c 1`` pins it to a core)."""
    args = [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    cpu_after = cpu_seconds(pid)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    cpu = None
    if cpu_before is not None and cpu_after is not None and requests:
        cpu = (cpu_after - cpu_before) / requests * 1e6
    return Result(label, rps, p50, p99, int(bad.group(1)) if bad else 0, cpu)


def duration_ms(text: str) -> float:
    """wrk's ``1.23ms`` / ``850.00us`` / ``1.01s`` in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


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


@dataclass(frozen=True)
class Variant:
    """Code to serve: this checkout's ``src`` or another revision's."""

    name: str
    src: Path


@dataclass
class Target:
    label: str
    url: str
    headers: dict[str, str]
    pid: int  # of the server answering
    facts: dict[str, object] = field(default_factory=dict)  # what the JSON says of it


def export_revision(ref: str, into: Path) -> Variant:
    """``src/`` of a git revision, without touching any checkout (``git archive``)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", f"{ref}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    named = commit if commit.startswith(ref) or ref.startswith(commit) else f"{ref} {commit}"
    return Variant(f"before ({named})", into / "src")


@contextlib.contextmanager
def databases(base_url: str | None, work: Path, count: int) -> Iterator[list[str]]:
    """One empty database per variant: SQLite files, or databases made beside ``base_url``."""
    if base_url is None:
        yield [f"sqlite:///{work / f'meshup-{i}.db'}" for i in range(count)]
        return
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(base_url)
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    suffix = uuid.uuid4().hex[:8]
    names = [f"{admin.database}_bench_{suffix}_{i}" for i in range(count)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [admin.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Served:
    """One meshup server of a variant: its base URL, pid and whether it writes the access log."""

    base: str
    pid: int
    access_log: bool


def start_meshup(
    variant: Variant,
    url: str,
    count: int,
    work: Path,
    processes: list[subprocess.Popen[bytes]],
    access_logs: list[bool],
) -> tuple[list[Served], str]:
    """Seed, fill and serve ``variant`` once per access-log setting; return the servers and a job id."""
    work.mkdir(parents=True, exist_ok=True)
    seed = work / "seed.yaml"
    seed.write_text(yaml.safe_dump(seed_document()))
    env = {
        **os.environ,
        "MESHUP_DATABASE_URL": url,
        "MESHUP_MASTER_KEY": MASTER_KEY,
        "PYTHONPATH": str(variant.src),
        "MESHUP_BENCH_SRC": str(variant.src),
    }
    imported = subprocess.run(
        [sys.executable, "-c", "import meshup; print(meshup.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(imported).is_relative_to(variant.src), f"{variant.name} imported {imported}"
    run = {"env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "-m", "meshup.cli", "seed", "apply", str(seed)], **run)  # type: ignore[call-overload]
    job_id = subprocess.run(  # type: ignore[call-overload]
        [sys.executable, __file__, "--fill", url, str(count)], **run
    ).stdout.strip()
    served = []
    for access_log in access_logs:
        port = free_port()
        flag = "--access-log" if access_log else "--no-access-log"
        # The access log goes where a deployment sends it: a file (here, beside the database).
        with open(work / f"access-{port}.log", "wb") as log:
            server = subprocess.Popen(
                [*SERVE, flag, "--port", str(port)], env=env, cwd=work, stdout=log, stderr=subprocess.DEVNULL
            )
        processes.append(server)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(f"{base}/healthz", server)
        served.append(Served(base, server.pid, access_log))
    return served, job_id


def meshup_targets(variant: Variant, served: Served, job_id: str, count: int) -> tuple[list[Target], bytes]:
    base = served.base
    path = f"/v1/{PROJECT}/mesh-job/{job_id}"
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {
        "Content-Type": "application/json",
        "Host": base.removeprefix("http://"),
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": date,
    }
    signed["Authorization"] = sign("GET", path, signed, b"", AK, SK, sdk_date=date)
    check = httpx.get(base + path, headers=signed)
    assert check.status_code == 200, check.text
    assert len(orjson.loads(check.content)["spec"]["subjobs"]) == len(TREE_SHAPE)
    login = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "alice", "password": PASSWORD, "domain": {"name": "bench"}}},
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    token = httpx.post(f"{base}/v3/auth/tokens", json=login).headers["X-Subject-Token"]
    assert httpx.get(base + path, headers={"X-Auth-Token": token}).status_code == 200
    log = "log on" if served.access_log else "log off"
    return [
        Target(
            f"{variant.name} AK/SK, {log}, {count:,} jobs",
            base + path,
            signed,
            served.pid,
            {"variant": variant.name, "auth": "aksk", "access_log": served.access_log},
        ),
        Target(
            f"{variant.name} token, {log}, {count:,} jobs",
            base + path,
            {"X-Auth-Token": token},
            served.pid,
            {"variant": variant.name, "auth": "token", "access_log": served.access_log},
        ),
    ], check.content


def run(
    variants: list[Variant],
    count: int,
    database_url: str | None,
    duration: int,
    connections: int,
    rounds: int,
    access_logs: list[bool],
) -> list[tuple[Target, Result]]:
    """Each target with its median result, the bare app first."""
    work = Path(tempfile.mkdtemp(prefix="meshup-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with databases(database_url, work, len(variants)) as urls:
            targets: list[Target] = []
            body = b""
            for index, (variant, url) in enumerate(zip(variants, urls, strict=True)):
                servers, job_id = start_meshup(
                    variant, url, count, work / f"v{index}", processes, access_logs
                )
                for served in servers:
                    found, body = meshup_targets(variant, served, job_id, count)
                    targets += found
            body_file = work / "body.json"
            body_file.write_bytes(body)
            bare_port = free_port()
            bare = subprocess.Popen(
                [*BARE, "--port", str(bare_port)],
                env={**os.environ, "BENCH_BODY_FILE": str(body_file), "PYTHONPATH": str(ROOT)},
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(bare)
            wait_healthy(f"http://127.0.0.1:{bare_port}/", bare)
            path = targets[0].url[targets[0].url.index("/v1/") :]
            bare_url = f"http://127.0.0.1:{bare_port}{path}"
            # The ceiling: the bare app under the very request meshup gets (the server parses the
            # same head), and under a request with no headers of its own.
            first = {target.facts["auth"]: target for target in reversed(targets)}
            targets[:0] = [
                Target("bare ASGI, same bytes", bare_url, {}, bare.pid, {"variant": "bare", "auth": None}),
                *(
                    Target(
                        f"bare ASGI, same bytes, {name} request",
                        bare_url,
                        first[auth].headers,
                        bare.pid,
                        {"variant": "bare", "auth": auth},
                    )
                    for auth, name in (("aksk", "AK/SK"), ("token", "token"))
                ),
            ]
            for target in targets:
                wrk(target.url, target.headers, 2, connections, "warm-up", target.pid)
            # Rounds interleave the targets, so a slow minute of a shared machine hits all of them.
            measured: dict[str, list[Result]] = {target.label: [] for target in targets}
            for _round in range(rounds):
                for target in targets:
                    measured[target.label].append(
                        wrk(target.url, target.headers, duration, connections, target.label, target.pid)
                    )
            return [
                (target, sorted(found, key=lambda r: r.rps)[len(found) // 2])
                for target, found in zip(targets, measured.values(), strict=True)
            ]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--fill":  # helper mode: runs with the variant's code
        print(fill_jobs(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server URL; the benchmark makes (and drops) its own databases beside it (default: SQLite)",
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median is shown")
    parser.add_argument("--compare-ref", default=None, help="also serve this git revision's code (before)")
    parser.add_argument(
        "--access-log",
        nargs="+",
        choices=["on", "off"],
        default=["on"],
        help="serve with the access log on/off",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="meshup-bench-ref-") as checkout:
        variants = [Variant("after" if args.compare_ref else "meshup", ROOT / "src")]
        if args.compare_ref:
            variants.insert(0, export_revision(args.compare_ref, Path(checkout) / "tree"))
        width = max(40, *(len(f"{v.name} token, log off, {n:,} jobs") for v in variants for n in args.jobs))
        print(
            f"{'':{width}} {'req/s':>10} {'p50':>9} {'p99':>9} {'vs bare':>8} {'vs plain':>8} {'non-2xx':>8} {'CPU/req':>9}"
        )
        records: list[dict[str, object]] = []
        for count in args.jobs:
            logs = [mode == "on" for mode in args.access_log]
            pairs = run(
                variants, count, args.database_url, args.duration, args.connections, args.rounds, logs
            )
            plain = pairs[0][1].rps
            ceiling = {t.facts["auth"]: r.rps for t, r in pairs if t.facts["variant"] == "bare"}
            for target, result in pairs:
                cpu = "-" if result.cpu_us is None else f"{result.cpu_us:.0f}us"
                same = result.rps / ceiling[target.facts["auth"]]
                print(
                    f"{result.label:{width}} {result.rps:>10.0f} {result.p50:>9} {result.p99:>9} "
                    f"{same:>8.0%} {result.rps / plain:>8.0%} {result.non_2xx:>8} {cpu:>9}"
                )
            records += [
                {
                    "jobs": count,
                    "database": "postgresql" if args.database_url else "sqlite",
                    **t.facts,
                    "label": r.label,
                    "rps": round(r.rps),
                    "vs_bare": round(r.rps / ceiling[t.facts["auth"]], 3),
                    "vs_bare_plain": round(r.rps / plain, 3),
                    "p50": r.p50,
                    "p99": r.p99,
                    "p99_ms": duration_ms(r.p99),
                    "non_2xx": r.non_2xx,
                    "cpu_us": None if r.cpu_us is None else round(r.cpu_us, 1),
                }
                for t, r in pairs
            ]
        if args.json is not None:
            args.json.write_text(json.dumps({"benchmark": "mesh_job", "results": records}, indent=2))


if __name__ == "__main__":
    main()
