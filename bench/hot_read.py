"""What the mesh-job read costs on SQLite inline on the event loop, and handed to a thread.

``store.hot`` reads SQLite inline (the epoch before authentication, then the job tree); this
measures why: both reads of a 5-node tree among N stored jobs, timed on the event loop and through
``asyncio.to_thread`` (what any off-loop read costs), wall and CPU time per read.

    python bench/hot_read.py                 # 1,000 and 100,000 stored jobs
    python bench/hot_read.py --jobs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.mesh_job import MASTER_KEY, fill_jobs, seed_document  # noqa: E402
from meshup.store.db import Database  # noqa: E402
from meshup.store.hot import EPOCH_SQL, SQLITE_TREE, HotReader, _sqlite_nodes  # noqa: E402


async def per_read(read: Callable[[], Awaitable[object]], reads: int) -> tuple[float, float]:
    """Best of 5 runs: wall and CPU microseconds per read."""
    best = (float("inf"), float("inf"))
    for _ in range(5):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(reads):
            await read()
        run = ((time.perf_counter() - wall) / reads * 1e6, (time.process_time() - cpu) / reads * 1e6)
        best = min(best, run)
    return best


async def measure(reader: HotReader, job_id: str, reads: int) -> list[tuple[str, float, float]]:
    async def inline() -> object:
        await reader.epoch()
        return await reader.bundle(job_id)

    def both() -> object:  # what the two reads do on SQLite, without the coroutines
        reader._sqlite(EPOCH_SQL, ())
        return _sqlite_nodes(reader._sqlite(SQLITE_TREE, (job_id,)))

    async def in_thread() -> object:
        return await asyncio.to_thread(both)

    async def hop() -> object:
        return await asyncio.to_thread(lambda: None)

    results = []
    for label, read in (
        ("epoch + tree, inline", inline),
        ("epoch + tree, in a thread", in_thread),
        ("thread hop alone", hop),
    ):
        await read()
        results.append((label, *await per_read(read, reads)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'':40} {'wall/read':>10} {'CPU/read':>10}")
    for count in args.jobs:
        work = Path(tempfile.mkdtemp(prefix="meshup-bench-"))
        try:
            url = f"sqlite:///{work / 'meshup.db'}"
            seed = work / "seed.yaml"
            seed.write_text(yaml.safe_dump(seed_document()))
            env = {**os.environ, "MESHUP_DATABASE_URL": url, "MESHUP_MASTER_KEY": MASTER_KEY}
            env["PYTHONPATH"] = str(ROOT / "src")
            subprocess.run(
                [sys.executable, "-m", "meshup.cli", "seed", "apply", str(seed)], env=env, check=True
            )
            job_id = fill_jobs(url, count)
            db = Database(url)
            for label, wall, cpu in asyncio.run(measure(HotReader(db), job_id, args.reads)):
                print(f"{label + f', {count:,} jobs':40} {wall:>8.1f}us {cpu:>8.1f}us")
            db.dispose()
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
