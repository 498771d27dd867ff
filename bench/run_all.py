"""Every benchmark in one run, then each target of the performance work beside its figure.

Each benchmark is its own program (see bench/README.md); this runs them one after another with
the settings the README's table was made with, keeps each one's JSON in ``--out`` (default
bench/results/), and prints a summary: target, figure, met or not. ``--quick`` shortens
everything (a smoke run, not figures to quote).

    python bench/run_all.py                                   # SQLite only
    python bench/run_all.py --postgres postgresql://postgres@127.0.0.1:5432/test
    python bench/run_all.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.targets import Verdict, verdicts  # noqa: E402


@dataclass(frozen=True)
class Step:
    name: str
    args: list[str]


def steps(quick: bool, postgres: str | None) -> list[Step]:
    duration = ["--duration", "3" if quick else "10"]
    rounds = ["--rounds", "1" if quick else "3"]
    jobs = ["1000", "100000"] if quick else ["1000", "1000000"]
    plan = [
        Step("mesh_job", ["mesh_job.py", "--jobs", *jobs, *duration, *rounds, "--access-log", "on", "off"]),
        Step("processes", ["processes.py", *duration]),
        Step("engine", ["engine.py", *(["--upgrades", "20"] if quick else [])]),
        Step("startup", ["startup.py"]),
        Step("peer", ["peer.py", *duration]),
        Step("memory", ["memory.py", *(["--jobs", "100000", "--minutes", "1.5"] if quick else [])]),
    ]
    if postgres is not None:
        plan.insert(
            1,
            Step(
                "mesh_job_postgres",
                ["mesh_job.py", "--jobs", "1000", *duration, *rounds, "--database-url", postgres],
            ),
        )
        plan.insert(
            4,
            Step(
                "engine_postgres",
                ["engine.py", "--database-url", postgres, *(["--upgrades", "20"] if quick else [])],
            ),
        )
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=None, help="PostgreSQL URL: also run the PostgreSQL figures")
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test, not figures")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--only", nargs="+", default=None, help="run only these steps (names as printed)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    failed: list[str] = []
    for step in steps(args.quick, args.postgres):
        if args.only and step.name not in args.only:
            continue
        target = args.out / f"{step.name}.json"
        print(f"\n=== {step.name}: python bench/{' '.join(step.args)}", flush=True)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / step.args[0]), *step.args[1:], "--json", str(target)]
        )
        print(f"--- {step.name}: {time.monotonic() - started:.0f} s", flush=True)
        if done.returncode != 0 or not target.exists():
            failed.append(step.name)
            continue
        results[step.name] = json.loads(target.read_text())
    print("\n=== targets")
    table: list[Verdict] = verdicts(results)
    width = max((len(v.target) for v in table), default=10)
    for verdict in table:
        mark = {True: "met", False: "MISSED", None: "-"}[verdict.met]
        print(f"{verdict.target:{width}}  {verdict.figure:>24}  {mark}")
    (args.out / "summary.json").write_text(
        json.dumps([{"target": v.target, "figure": v.figure, "met": v.met} for v in table], indent=2)
    )
    if failed:
        sys.exit(f"benchmarks that did not finish: {', '.join(failed)}")


if __name__ == "__main__":
    main()
