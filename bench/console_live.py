"""Server CPU of the console's live region: following the job event stream against polling.

One ``meshup serve --no-worker`` (SQLite) serves the console; one ``meshup worker`` runs the
simulated clusters, slowed so that a pre-check runs longer than a measuring window. In each window
a new pre-check runs on a mesh of its own while N viewers watch that mesh's page:

- reference: no viewer;
- polling: each viewer fetches the region's fragment URL every second (what the region did before
  it streamed, and still does as the fallback);
- streaming: each viewer holds the region's event stream (``…/live/events``).

The CPU time of the serving process over each window is read from /proc; the ratio of the two
viewer windows (the reference taken off both) is what matters on a noisy machine.

    python bench/console_live.py                          # 20 viewers, 10 s windows
    python bench/console_live.py --viewers 50 --window 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

PASSWORD = "Bench-Passw0rd!"
MASTER_KEY = "bench-master-key-0000000000000000000000000"
WINDOWS = ("reference", "polling", "streaming")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed() -> dict[str, object]:
    cluster = {
        "kubernetesVersion": "1.28",
        "nodes": {"count": 4, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
        "namespaces": [
            {"name": "shop", "labels": {"istio-injection": "enabled"}, "workloads": [{"name": "cart"}]}
        ],
    }
    return {
        "accounts": [
            {
                "name": "bench",
                "projects": [{"name": "cn-north-4", "id": "be" * 16}],
                "users": [{"name": "bench-admin", "root": True, "password": PASSWORD}],
                "clusters": [{"id": f"c-{name}", **cluster} for name in WINDOWS],
                "meshes": [
                    {
                        "name": f"mesh-{name}",
                        "id": f"be000000-0000-4000-8000-00000000000{index}",
                        "project": "cn-north-4",
                        "version": "1.15.7-r1",
                        "clusters": [f"c-{name}"],
                    }
                    for index, name in enumerate(WINDOWS, start=1)
                ],
            }
        ]
    }


@contextlib.contextmanager
def processes(workdir: Path, sim_speed: float) -> Iterator[tuple[str, int]]:
    """The serving process (its URL and pid) and a worker process, on one SQLite database."""
    port = free_port()
    env = {
        **os.environ,
        "MESHUP_DATABASE_URL": f"sqlite:///{workdir / 'meshup.db'}",
        "MESHUP_MASTER_KEY": MASTER_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    seed_file = workdir / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(seed()))
    log = (workdir / "server.log").open("wb")
    command = [sys.executable, "-m", "meshup.cli"]
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--no-worker", "--seed", str(seed_file)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker = None
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"meshup serve did not start:\n{(workdir / 'server.log').read_text()}")
            time.sleep(0.1)
        worker = subprocess.Popen(
            [*command, "worker", "--sim-speed", str(sim_speed)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        yield url, server.pid
    finally:
        for process in (worker, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    if found is None:
        raise SystemExit(f"no {name} in the page")
    return found.group(1)


async def sign_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/console/sign-in")
    data = {"csrf": hidden(form.text, "csrf"), "account": "bench", "user": "bench-admin"}
    reply = await client.post("/console/sign-in", data={**data, "password": PASSWORD, "project": ""})
    if reply.status_code != 303:
        raise SystemExit(f"sign-in failed: {reply.status_code}")


async def start_step(client: httpx.AsyncClient, mesh_url: str) -> None:
    page = await client.get(mesh_url)
    data = {"csrf": hidden(page.text, "csrf"), "target": "1.18.7-r1"}
    reply = await client.post(f"{mesh_url}/upgrade", data=data)
    if 'data-live="stream"' not in reply.text:
        raise SystemExit("the pre-check did not start")


async def running(client: httpx.AsyncClient, mesh_url: str) -> bool:
    reply = await client.get(f"{mesh_url}/live", headers={"HX-Request": "true"})
    return 'data-live="polling"' in reply.text


async def poll(client: httpx.AsyncClient, url: str, offset: float, seen: Counter[str]) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time() + offset
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        reply = await client.get(url, headers={"HX-Request": "true"})
        seen["polls" if reply.status_code == 200 else f"status {reply.status_code}"] += 1
        due += 1.0


async def stream(client: httpx.AsyncClient, url: str, seen: Counter[str]) -> None:
    async with client.stream("GET", url) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                seen[f"{line[7:]} events"] += 1


async def window(
    client: httpx.AsyncClient, url: str, pid: int, name: str, viewers: int, seconds: float
) -> tuple[float, Counter[str]]:
    mesh_url = f"/console/meshes/be000000-0000-4000-8000-00000000000{WINDOWS.index(name) + 1}"
    await start_step(client, mesh_url)
    seen: Counter[str] = Counter()
    before = cpu_seconds(pid)
    if name == "polling":
        tasks = [poll(client, f"{mesh_url}/live", i / viewers, seen) for i in range(viewers)]
    elif name == "streaming":
        tasks = [stream(client, f"{mesh_url}/live/events", seen) for _ in range(viewers)]
    else:
        tasks = []
    running_tasks = [asyncio.ensure_future(task) for task in tasks]
    await asyncio.sleep(seconds)
    for task in running_tasks:
        task.cancel()
    await asyncio.gather(*running_tasks, return_exceptions=True)
    used = cpu_seconds(pid) - before
    if not await running(client, mesh_url):
        raise SystemExit(f"the {name} window's pre-check ended within the window: raise --sim-speed")
    return used, seen


async def measure(url: str, pid: int, viewers: int, seconds: float) -> dict[str, tuple[float, Counter[str]]]:
    limits = httpx.Limits(max_connections=viewers + 10, max_keepalive_connections=viewers + 10)
    timeout = httpx.Timeout(30.0, read=None)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        await sign_in(client)
        return {name: await window(client, url, pid, name, viewers, seconds) for name in WINDOWS}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window")
    parser.add_argument(
        "--sim-speed", type=float, help="simulated time factor (> 1: slower; default 6 per window second)"
    )
    args = parser.parse_args()
    sim_speed = args.sim_speed or 6 * args.window  # a pre-check then outlasts its window
    with (
        tempfile.TemporaryDirectory(prefix="meshup-bench-console-") as tmp,
        processes(Path(tmp), sim_speed) as (url, pid),
    ):
        results = asyncio.run(measure(url, pid, args.viewers, args.window))
    reference = results["reference"][0]
    print(f"{args.viewers} viewers, {args.window:g} s windows, sim speed {sim_speed:g}; CPU s of the server:")
    for name, (used, seen) in results.items():
        counts = ", ".join(f"{count} {what}" for what, count in sorted(seen.items())) or "no viewer"
        print(f"  {name:<10} {used:6.2f} s   ({counts})")
    polling, streaming = (results[name][0] - reference for name in ("polling", "streaming"))
    per_viewer = args.viewers * args.window
    print(
        f"  per viewer-second above the reference: polling {1000 * polling / per_viewer:.2f} ms, "
        f"streaming {1000 * streaming / per_viewer:.2f} ms"
    )
    if polling > 0:
        print(f"  streaming / polling: {streaming / polling:.2f}")


if __name__ == "__main__":
    main()
