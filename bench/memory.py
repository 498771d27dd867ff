"""Resident memory of ``meshup serve`` (defaults) under the mesh-job GET benchmark for minutes.

meshup serves a 12-node job tree among N stored jobs (default 1,000,000) while wrk polls it with
AK/SK for ``--minutes`` (default 5); the server's resident set size is sampled every 5 s. Printed:
RSS after the first minute and at the end, the growth between them, and the bare ASGI app's RSS
after the same load as the reference point.

    python bench/memory.py                        # 1,000,000 jobs, 5 minutes
    python bench/memory.py --jobs 100000 --minutes 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.mesh_job import BARE, Variant, free_port, meshup_targets, start_meshup, wait_healthy  # noqa: E402

SAMPLE_SECONDS = 5.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def load(url: str, headers: dict[str, str], seconds: float, pid: int) -> list[tuple[float, float]]:
    """wrk for ``seconds`` while sampling the server's RSS: [(seconds since start, MB)]."""
    args = ["wrk", "-t1", "-c32", f"-d{int(seconds)}s", url]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            samples.append((time.monotonic() - started, rss_mb(pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    subprocess.run(args, capture_output=True, check=True)
    done.set()
    sampler.join()
    samples.append((time.monotonic() - started, rss_mb(pid)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="meshup-memory-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        variant = Variant("meshup", ROOT / "src")
        servers, job_id = start_meshup(
            variant, f"sqlite:///{work / 'meshup.db'}", args.jobs, work, processes, [True]
        )
        (aksk, _token), body = meshup_targets(variant, servers[0], job_id, args.jobs)
        started_mb = rss_mb(aksk.pid)
        samples = load(aksk.url, aksk.headers, args.minutes * 60, aksk.pid)
        minute_one = min(samples, key=lambda s: abs(s[0] - 60))[1]
        end = samples[-1][1]
        peak = max(mb for _, mb in samples)

        body_file = work / "body.json"
        body_file.write_bytes(body)
        port = free_port()
        bare = subprocess.Popen(
            [*BARE, "--port", str(port)],
            env={**os.environ, "BENCH_BODY_FILE": str(body_file), "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(bare)
        wait_healthy(f"http://127.0.0.1:{port}/", bare)
        path = aksk.url[aksk.url.index("/v1/") :]
        bare_end = load(f"http://127.0.0.1:{port}{path}", {}, 60, bare.pid)[-1][1]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(work, ignore_errors=True)

    growth = (end - minute_one) / minute_one
    print(f"meshup serve (defaults), {args.jobs:,} jobs, AK/SK GET under wrk for {args.minutes:g} min")
    print(f"  RSS at start of load     {started_mb:7.1f} MB")
    print(f"  RSS after minute 1       {minute_one:7.1f} MB")
    print(f"  RSS at the end           {end:7.1f} MB   (peak {peak:.1f} MB; target <= 200 MB)")
    print(f"  growth minute 1 -> end   {growth:+7.1%}     (target < 10%)")
    print(f"  bare ASGI app, 1 min     {bare_end:7.1f} MB   (reference)")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "memory",
                    "jobs": args.jobs,
                    "minutes": args.minutes,
                    "rss_mb_start": round(started_mb, 1),
                    "rss_mb_minute_1": round(minute_one, 1),
                    "rss_mb_end": round(end, 1),
                    "rss_mb_peak": round(peak, 1),
                    "growth": round(growth, 4),
                    "bare_rss_mb": round(bare_end, 1),
                    "samples": [(round(t, 1), round(mb, 1)) for t, mb in samples],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
