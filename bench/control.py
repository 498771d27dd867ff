"""Control API timings against a real server: start-up, reset, snapshot save and restore.

Run as ``python -m bench.control [--rounds N] [--seed FILE]``; prints a table (milliseconds).
Start-up is process start to a healthy ``/healthz`` (``serve --ephemeral --clock manual``, seeded).
Reset is measured twice: as the server reports it (``ms``, the restore transaction) and as a
client sees it (the whole HTTP round trip).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from meshup.testing import DEFAULT_SEED, MeshupServer


def _timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return (time.perf_counter() - began) * 1000


def _row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name:<34}{statistics.median(values):>10.1f}{p95:>10.1f}{max(values):>10.1f}{len(values):>8}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--seed", type=Path, default=DEFAULT_SEED)
    args = parser.parse_args()

    rows: dict[str, list[float]] = {"server start-up (to /healthz)": []}
    for _ in range(args.starts):
        server = MeshupServer(seed=args.seed)
        rows["server start-up (to /healthz)"].append(_timed(server.start))
        server.stop()

    with MeshupServer(seed=args.seed) as server:
        control = server.control
        reported: list[float] = []
        rows["reset, round trip"] = [
            _timed(lambda: reported.append(float(control.reset()["ms"]))) for _ in range(args.rounds)
        ]
        rows["reset, as the server reports it"] = reported
        rows["reset to empty, round trip"] = [
            _timed(lambda: control.reset("empty")) for _ in range(args.rounds)
        ]
        control.reset()
        rows["snapshot save"] = [_timed(lambda: control.save_snapshot("bench")) for _ in range(args.rounds)]
        rows["snapshot restore"] = [
            _timed(lambda: control.restore_snapshot("bench")) for _ in range(args.rounds)
        ]

    print(f"{'operation (ms)':<34}{'median':>10}{'p95':>10}{'max':>10}{'n':>8}")
    for name, values in rows.items():
        print(_row(name, values))


if __name__ == "__main__":
    main()
