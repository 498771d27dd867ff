"""The performance targets, each judged from the JSON the benchmarks write (bench/run_all.py).

One place says what each target is and how its figure is read, so the README's table and the
run's summary cannot disagree. A target whose benchmark did not run shows ``-``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    target: str
    figure: str
    met: bool | None  # None: not measured in this run


def _rows(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = results.get(name)
    return list(found.get("results", [])) if isinstance(found, dict) else []


def _pick(rows: Iterable[dict[str, Any]], **facts: object) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(key) == value for key, value in facts.items()):
            return row
    return None


def _get_targets(results: dict[str, Any]) -> list[Verdict]:
    rows = _rows(results, "mesh_job")
    verdicts = []
    sizes = sorted({row["jobs"] for row in rows})
    smallest = sizes[0] if sizes else None
    for auth, shown in (("aksk", "AK/SK"), ("token", "token")):
        for log in (True, False):
            row = _pick(rows, jobs=smallest, auth=auth, access_log=log, variant="meshup")
            if row is None:
                continue
            label = f"GET {shown}, SQLite, log {'on' if log else 'off'}: >= 40% of bare"
            figure = f"{row['vs_bare']:.0%} (plain {row['vs_bare_plain']:.0%})"
            verdicts.append(Verdict(label, figure, row["vs_bare"] >= 0.40 if log else None))
        row = _pick(rows, jobs=smallest, auth=auth, access_log=True, variant="meshup")
        if row is not None:
            verdicts.append(
                Verdict(f"GET {shown}, p99 at 32 connections <= 10 ms", row["p99"], row["p99_ms"] <= 10.0)
            )
        if len(sizes) > 1:
            low = _pick(rows, jobs=sizes[0], auth=auth, access_log=True, variant="meshup")
            high = _pick(rows, jobs=sizes[-1], auth=auth, access_log=True, variant="meshup")
            if low and high and low.get("cpu_us") and high.get("cpu_us"):
                # Judged by meshup's own CPU per request, which a busy machine moves far less than
                # throughput; the ratios to the bare app at each size are shown beside it.
                change = high["cpu_us"] / low["cpu_us"] - 1
                figure = f"CPU/req {change:+.0%} (vs bare {low['vs_bare']:.0%} -> {high['vs_bare']:.0%})"
                verdicts.append(
                    Verdict(
                        f"GET {shown}, {sizes[0]:,} -> {sizes[-1]:,} jobs within 10%",
                        figure,
                        abs(change) <= 0.10,
                    )
                )
    for auth, shown in (("aksk", "AK/SK"), ("token", "token")):
        row = _pick(_rows(results, "mesh_job_postgres"), auth=auth, variant="meshup")
        if row is not None:
            verdicts.append(
                Verdict(
                    f"GET {shown}, PostgreSQL: >= 25% of bare",
                    f"{row['vs_bare']:.0%}",
                    row["vs_bare"] >= 0.25,
                )
            )
    return verdicts


def _processes(results: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for row in _rows(results, "processes"):
        if row.get("processes") == 2:
            ratio = row["vs_one_process"]
            placement = row["placement"]
            verdicts.append(
                Verdict(f"serve --processes 2 vs 1 ({placement}): >= 1.7x", f"{ratio:.2f}x", ratio >= 1.7)
            )
    return verdicts


def _engine(results: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for name, database in (("engine", "SQLite"), ("engine_postgres", "PostgreSQL")):
        found = results.get(name)
        if not isinstance(found, dict):
            continue
        for row in found.get("results", []):
            ratio = row.get("ratio")
            if ratio is None:
                continue
            workers = row.get("workers")
            verdicts.append(
                Verdict(
                    f"engine, {database}, {workers} worker(s): >= 30% of bare loop",
                    f"{ratio:.0%}",
                    ratio >= 0.30,
                )
            )
        if database == "PostgreSQL":
            rates = {row.get("workers"): row.get("engine_leaves_per_s") for row in found.get("results", [])}
            if rates.get(1) and rates.get(2):
                verdicts.append(
                    Verdict(
                        "engine, PostgreSQL: 2 workers faster than 1",
                        f"{rates[2] / rates[1]:.2f}x",
                        rates[2] > rates[1],
                    )
                )
    return verdicts


def _startup(results: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for row in _rows(results, "startup"):
        target = row.get("target_s")
        if target is not None:
            label = {"help": "meshup --help", "serve": "serve healthy (/healthz 200)"}.get(
                row["kind"], row["label"]
            )
            verdicts.append(
                Verdict(f"{label} within {target:g} s", f"{row['median_s']:.2f} s", row["median_s"] <= target)
            )
    return verdicts


def _memory(results: dict[str, Any]) -> list[Verdict]:
    found = results.get("memory")
    if not isinstance(found, dict):
        return []
    return [
        Verdict(
            f"RSS after {found['minutes']:g} min, {found['jobs']:,} jobs <= 200 MB",
            f"{found['rss_mb_end']:.0f} MB",
            found["rss_mb_end"] <= 200,
        ),
        Verdict("RSS growth minute 1 -> end < 10%", f"{found['growth']:+.1%}", found["growth"] < 0.10),
    ]


def _peer(results: dict[str, Any]) -> list[Verdict]:
    found = results.get("peer")
    if not isinstance(found, dict):
        return []
    return [Verdict("peer: meshup GET / moto DescribeCluster", f"{found['meshup_vs_moto']:.1f}x", None)]


JUDGES: tuple[Callable[[dict[str, Any]], list[Verdict]], ...] = (
    _get_targets,
    _processes,
    _engine,
    _startup,
    _memory,
    _peer,
)


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    """Every target that the given results measure."""
    return [verdict for judge in JUDGES for verdict in judge(results)]
