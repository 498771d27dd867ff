"""Start-up time: ``meshup --help``, and ``meshup serve`` until ``/healthz`` answers 200 on an
existing SQLite database, against reference points measured in the same run.

    python bench/startup.py                          # 7 runs of each, medians
    python bench/startup.py --runs 11 --json out.json
    python bench/startup.py --compare-ref main       # also the code of another git revision

References: ``python -c pass`` (the interpreter alone) and a bare ASGI app under the same server
software (uvicorn, uvloop, meshup's request-head protocol) until its first 200: what any server
written this way costs before meshup does anything. Runs interleave the variants, so a busy
minute of a shared machine hits all of them; each time is wall clock from just before the process
is started, and CPU is what the process used by then (steadier when other work shares the cores).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench.mesh_job import ROOT, Variant, cpu_seconds, export_revision, free_port  # noqa: E402

TARGETS = {"help": 0.3, "serve": 1.0}  # seconds: the start-up goals
POLL = 0.005


@dataclass
class Sample:
    wall: float
    cpu: float | None


@dataclass
class Measured:
    label: str
    kind: str  # reference, help, serve
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(sample.wall for sample in self.samples)

    @property
    def cpu(self) -> float | None:
        values = [sample.cpu for sample in self.samples if sample.cpu is not None]
        return statistics.median(values) if values else None


def run_to_end(args: list[str], env: dict[str, str], cwd: Path) -> Sample:
    began = time.perf_counter()
    before = os.times()
    subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - began
    after = os.times()
    return Sample(
        wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)
    )


def first_200(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def run_until_healthy(args: list[str], env: dict[str, str], cwd: Path, path: str) -> Sample:
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [*args, "--port", str(port)], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not first_200(port, path):
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}")
            if time.perf_counter() - began > 60:
                raise RuntimeError(f"{' '.join(args)} did not answer within 60 s")
            time.sleep(POLL)
        wall = time.perf_counter() - began
        cpu = _tree_cpu(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return Sample(wall, cpu)


def _tree_cpu(pid: int) -> float | None:
    """CPU of a process and its children (the serving processes of ``--processes``)."""
    total = cpu_seconds(pid)
    if total is None:
        return None
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += cpu_seconds(int(child)) or 0.0
    return total


def environment(**extra: str) -> dict[str, str]:
    """This environment, but with compiled modules written and read as an installation has them
    (a shell that forbids writing them would have every start compile meshup from source)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def variant_env(variant: Variant, database: Path) -> dict[str, str]:
    return {
        **environment(),
        "PYTHONPATH": str(variant.src),
        "MESHUP_DATABASE_URL": f"sqlite:///{database}",
        "MESHUP_ACCESS_LOG": "0",
        "MESHUP_LOG_LEVEL": "warning",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2], help="serve --processes values")
    parser.add_argument("--compare-ref", default=None, help="also measure this git revision's code (before)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="meshup-startup-"))
    try:
        variants = [Variant("meshup" if not args.compare_ref else "after", ROOT / "src")]
        if args.compare_ref:
            variants.insert(0, export_revision(args.compare_ref, work / "ref"))
        body = work / "body.json"
        body.write_bytes(b'{"status":"ok"}')
        bare_env = environment(BENCH_BODY_FILE=str(body), PYTHONPATH=str(ROOT))
        bare = [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--log-level", "warning"]
        bare += ["--no-access-log", "--loop", "uvloop", "--http", "meshup.http.heads:BoundedHeadProtocol"]

        measures: list[tuple[Measured, Callable[[], Sample]]] = [
            (
                Measured("python -c pass", "reference"),
                lambda: run_to_end([sys.executable, "-c", "pass"], environment(), work),
            ),
            (
                Measured("bare uvicorn app, first 200", "reference"),
                lambda: run_until_healthy(bare, bare_env, ROOT, "/"),
            ),
        ]
        for index, variant in enumerate(variants):
            home = work / f"v{index}"
            home.mkdir()
            env = variant_env(variant, home / "meshup.db")
            cli = [sys.executable, "-m", "meshup.cli"]
            # The database exists before any measured start: the first start made it (and its
            # demo account); every start measured is a restart.
            run_until_healthy([*cli, "serve"], env, home, "/healthz")
            measures.append(
                (
                    Measured(f"{variant.name}: meshup --help", "help"),
                    lambda cli=cli, env=env, home=home: run_to_end([*cli, "--help"], env, home),
                )
            )
            # Another revision may have no --processes: it is compared on a single process.
            for processes in args.processes if variant.src == ROOT / "src" else [1]:
                serve = [*cli, "serve"] + (["--processes", str(processes)] if processes > 1 else [])
                measures.append(
                    (
                        Measured(
                            f"{variant.name}: serve{f' --processes {processes}' if processes > 1 else ''}, /healthz 200",
                            "serve" if processes == 1 else "serve-processes",
                        ),
                        lambda serve=serve, env=env, home=home: run_until_healthy(
                            serve, env, home, "/healthz"
                        ),
                    )
                )
        for _measured, measure in measures:  # a warm-up: compiled modules written, files cached
            measure()
        for _round in range(args.runs):
            for measured, measure in measures:
                measured.samples.append(measure())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    bare_time = next(m for m, _ in measures if m.label.startswith("bare")).median
    width = max(len(m.label) for m, _ in measures)
    print(f"{'':{width}} {'median':>8} {'min':>8} {'CPU':>7} {'vs bare':>8} {'target':>7}")
    rows = []
    for measured, _ in measures:
        target = TARGETS.get(measured.kind)
        verdict = "" if target is None else ("ok" if measured.median <= target else "MISSED")
        cpu = "-" if measured.cpu is None else f"{measured.cpu:.2f}s"
        low = min(sample.wall for sample in measured.samples)
        print(
            f"{measured.label:{width}} {measured.median:>7.3f}s {low:>7.3f}s {cpu:>7} "
            f"{measured.median / bare_time:>7.1f}x {verdict:>7}"
        )
        rows.append(
            {
                "label": measured.label,
                "kind": measured.kind,
                "median_s": round(measured.median, 4),
                "min_s": round(low, 4),
                "cpu_s": None if measured.cpu is None else round(measured.cpu, 3),
                "vs_bare": round(measured.median / bare_time, 2),
                "target_s": target,
                "samples_s": [round(sample.wall, 4) for sample in measured.samples],
            }
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        f"\n{args.runs} runs each, interleaved; load average at the end {load:.2f} on {os.cpu_count()} CPUs"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"runs": args.runs, "load": load, "cpus": os.cpu_count(), "results": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
