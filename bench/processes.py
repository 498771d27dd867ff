"""Throughput of the mesh-job GET served by ``meshup serve --processes 1`` and ``--processes 2``.

Both servers run at once over the same database (seeded as ``bench/mesh_job.py`` seeds it: an
IAM user with a tag-conditioned policy, AK/SK-signed requests, N stored jobs); wrk loads one
at a time, the rounds interleaving them. Two placements:

- pinned: wrk on its own core (``taskset -c 1``), the servers on the others (``taskset -c 0`` on
  a two-core machine: then both processes share one core, and the second process cannot add
  throughput; on a machine with more cores pass ``--server-cpus 0,1 --wrk-cpu 2``);
- unpinned: the scheduler places everything.

    python bench/processes.py                          # 1,000 jobs, 10 s per run, 3 rounds
    python bench/processes.py --duration 5 --rounds 5 --json out.json
    python bench/processes.py --server-cpus 0,1 --wrk-cpu 2

"share" is the busiest serving process's part of the servers' CPU time during the runs (0.50 is
an even split between two). Needs wrk (Debian package ``wrk``) and taskset (util-linux).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.mesh_job import (  # noqa: E402
    MASTER_KEY,
    SERVE,
    Served,
    Variant,
    cpu_seconds,
    fill_jobs,
    free_port,
    meshup_targets,
    seed_document,
    wait_healthy,
    wrk,
)


@dataclass
class Server:
    label: str
    placement: str
    processes: int
    process: subprocess.Popen[bytes]
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    rps: list[float] = field(default_factory=list)
    p99: list[str] = field(default_factory=list)
    share: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def serving(self) -> list[int]:
        """The processes answering requests: this one, or (several) its children but the
        multiprocessing resource tracker."""
        if self.processes == 1:
            return [self.process.pid]
        found = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                command = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"resource_tracker" not in command:
                    found.append(int(child))
        return found


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) or 0.0 for pid in pids}


def start(
    label: str, placement: str, processes: int, env: dict[str, str], work: Path, cpus: str | None
) -> Server:
    port = free_port()
    pin = ["taskset", "-c", cpus] if cpus else []
    args = [*pin, *SERVE, "--port", str(port), "--processes", str(processes)]
    process = subprocess.Popen(args, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(label, placement, processes, process, url=f"http://127.0.0.1:{port}")
    wait_healthy(f"{server.url}/healthz", process)
    while len(server.serving()) < processes:  # every process up before the runs
        time.sleep(0.1)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown")
    parser.add_argument("--server-cpus", default="0", help="cores of the pinned servers (taskset -c)")
    parser.add_argument("--wrk-cpu", default="1", help="core of the pinned wrk (taskset -c)")
    parser.add_argument("--no-unpinned", action="store_true", help="only the pinned placement")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required")

    work = Path(tempfile.mkdtemp(prefix="meshup-processes-"))
    servers: list[Server] = []
    try:
        url = f"sqlite:///{work / 'meshup.db'}"
        env = {**os.environ, "MESHUP_DATABASE_URL": url, "MESHUP_MASTER_KEY": MASTER_KEY}
        seed = work / "seed.yaml"
        seed.write_text(yaml.safe_dump(seed_document()))
        subprocess.run([sys.executable, "-m", "meshup.cli", "seed", "apply", str(seed)], env=env, check=True)
        job_id = fill_jobs(url, args.jobs)

        placements = [("pinned", args.server_cpus)] + ([] if args.no_unpinned else [("unpinned", None)])
        for placement, cpus in placements:
            for processes in (1, 2):
                label = f"{placement}, {processes} process{'es' if processes > 1 else ''}"
                server = start(label, placement, processes, env, work, cpus)
                servers.append(server)
                targets, _body = meshup_targets(
                    Variant("meshup", ROOT / "src"), Served(server.url, 0, True), job_id, args.jobs
                )
                server.url, server.headers = targets[0].url, targets[0].headers  # AK/SK-signed
        prefix = {"pinned": ["taskset", "-c", args.wrk_cpu], "unpinned": []}
        for server in servers:  # warm-up: caches filled, every process has answered
            wrk(server.url, server.headers, 2, args.connections, "warm-up", 0, prefix[server.placement])
        for _round in range(args.rounds):
            for server in servers:
                pids = server.serving()
                before = cpu_of(pids)
                result = wrk(
                    server.url,
                    server.headers,
                    args.duration,
                    args.connections,
                    server.label,
                    0,
                    prefix[server.placement],
                )
                used = {pid: cpu - before[pid] for pid, cpu in cpu_of(pids).items()}
                server.rps.append(result.rps)
                server.p99.append(result.p99)
                total = sum(used.values())
                server.share.append(max(used.values()) / total if total else 1.0)
                server.cpu_us.append(total / (result.rps * args.duration) * 1e6 if result.rps else 0.0)
                if result.non_2xx:
                    sys.exit(f"{server.label}: {result.non_2xx} responses were not 2xx")
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
                try:
                    server.process.wait(30)
                except subprocess.TimeoutExpired:
                    server.process.kill()
        shutil.rmtree(work, ignore_errors=True)

    width = max(len(server.label) for server in servers)
    print(f"{'':{width}} {'req/s':>9} {'p99':>9} {'CPU/req':>8} {'share':>6} {'vs 1':>6}")
    rows = []
    for server in servers:
        rps = statistics.median(server.rps)
        one = next(s for s in servers if s.placement == server.placement and s.processes == 1)
        ratio = rps / statistics.median(one.rps)
        p99 = sorted(server.p99)[len(server.p99) // 2]
        cpu = statistics.median(server.cpu_us)
        share = statistics.median(server.share)
        print(f"{server.label:{width}} {rps:>9.0f} {p99:>9} {cpu:>6.0f}us {share:>6.2f} {ratio:>5.2f}x")
        rows.append(
            {
                "label": server.label,
                "placement": server.placement,
                "processes": server.processes,
                "rps": round(rps),
                "rps_runs": [round(value) for value in server.rps],
                "p99": p99,
                "cpu_us_per_request": round(cpu),
                "busiest_share": round(share, 3),
                "vs_one_process": round(ratio, 3),
            }
        )
    load = os.getloadavg()[0]
    print(
        f"\n{args.rounds} rounds of {args.duration} s, {args.connections} connections, AK/SK-signed GET, "
        f"{args.jobs:,} jobs; {os.cpu_count()} CPUs, load average at the end {load:.2f}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"cpus": os.cpu_count(), "load": load, "rounds": args.rounds, "results": rows}, indent=2
            )
        )


if __name__ == "__main__":
    main()
