"""What the control API does: reset, snapshots, seeding, the simulated clock and faults.

One control operation at a time. Those that replace rows or move time hold this process's
workers (:class:`meshup.engine.worker.WorkerGate`): they claim nothing and the steps in flight
are recorded before the operation starts, so no step runs on rows that vanish or sees time jump.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from meshup.clock import ControlledClock, jumpable
from meshup.control import faults as fault_store
from meshup.control import snapshots
from meshup.control.schemas import ClockIn, FaultIn
from meshup.errors import Conflict, InvalidRequest, NotFound, shown
from meshup.http.runtime import Runtime
from meshup.seed.apply import apply_seed
from meshup.seed.schema import JOB_TYPES, SeedError, load_seed
from meshup.store import engine as engine_store
from meshup.timefmt import as_utc, parse_rfc3339

SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
MAX_LEAVES = 100_000
# The start-up state is kept in memory for ``reset to start``: the small databases of test suites,
# not a production-sized one (a million jobs would hold gigabytes for a reset nobody asked for).
MAX_START_SNAPSHOT_ROWS = 50_000


class SeedRejected(InvalidRequest):
    """A seed document with errors; ``errors`` lists every one as ``"path: message"``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid seed document: " + "; ".join(errors))
        self.errors = errors


def instant(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RunReport:
    leaves: int
    now: datetime


class ControlService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self._start: snapshots.Snapshot | None = None
        self._start_rows = 0  # rows of a database too large to keep at start-up
        self._named: dict[str, snapshots.Snapshot] = {}

    @property
    def clock(self) -> Any:
        return self.rt.engine.clock

    def take_start_snapshot(self) -> None:
        with self.rt.db.read() as conn:
            rows = snapshots.count_rows(conn)
            if rows > MAX_START_SNAPSHOT_ROWS:
                self._start_rows = rows
                return
            self._start = snapshots.capture(conn, "start", self.clock.now())

    # -- reset and snapshots -------------------------------------------------------------------

    def reset(self, to: str) -> float:
        """Back to the state at start-up (or to no rows at all); the milliseconds it took."""
        if to == "start" and self._start_rows:
            raise Conflict(
                f"the start-up state was not kept: the database held {self._start_rows} rows at start-up "
                f"(at most {MAX_START_SNAPSHOT_ROWS} are kept); reset to empty, or restore a saved snapshot"
            )
        began = time.perf_counter()
        self._restore(self._start if to == "start" else None)
        return round((time.perf_counter() - began) * 1000, 2)

    def save(self, name: str) -> snapshots.Snapshot:
        if not SNAPSHOT_NAME.match(name):
            raise InvalidRequest("snapshot names are 1-64 letters, digits, '.', '_' or '-'")
        with self._lock, self.rt.engine.gate.held(), self.rt.db.read() as conn:
            snapshot = snapshots.capture(conn, name, datetime.now(UTC))
            self._named[name] = snapshot
        return snapshot

    def saved(self) -> list[snapshots.Snapshot]:
        with self._lock:
            return sorted(self._named.values(), key=lambda s: s.name)

    def restore(self, name: str) -> None:
        with self._lock:
            snapshot = self._named.get(name)
        if snapshot is None:
            raise NotFound(f"no snapshot {shown(name)}")
        self._restore(snapshot)

    def delete(self, name: str) -> None:
        with self._lock:
            if self._named.pop(name, None) is None:
                raise NotFound(f"no snapshot {shown(name)}")

    def _restore(self, snapshot: snapshots.Snapshot | None) -> None:
        with self._lock, self.rt.engine.gate.held(), self.rt.db.write() as conn:
            snapshots.restore(conn, snapshot)

    # -- seed ------------------------------------------------------------------------------------

    def seed(self, body: bytes, content_type: str) -> dict[str, Any]:
        """Validate and apply a seed document exactly as ``meshup seed apply`` does a file."""
        media = content_type.split(";")[0].strip().lower()
        suffix = ".yaml" if media in YAML_TYPES else ".json"
        with tempfile.TemporaryDirectory(prefix="meshup-seed-") as directory:
            path = Path(directory) / f"body{suffix}"
            path.write_bytes(body)
            try:
                parsed = load_seed(path)
            except SeedError as exc:
                raise SeedRejected([error.replace(str(path), "(body)") for error in exc.errors]) from None
        with self._lock, self.rt.db.write() as conn:
            report = apply_seed(conn, parsed, self.rt.identity.master_key, self.clock.now())
        return {
            "accounts": report.accounts,
            "users": report.users,
            "accessKeys": report.access_keys,
            "clusters": report.clusters,
            "meshes": report.meshes,
            "jobs": report.jobs,
        }

    # -- the simulated clock ---------------------------------------------------------------------

    def clock_state(self) -> dict[str, Any]:
        clock = self.clock
        speed = clock.speed if isinstance(clock, ControlledClock) else 0.0
        mode = "manual" if jumpable(clock) is not None else "system"
        return {"mode": mode, "now": instant(clock.now()), "speed": speed}

    def configure_clock(self, body: ClockIn) -> dict[str, Any]:
        clock = self.clock
        if not isinstance(clock, ControlledClock):
            raise Conflict("this server's clock cannot be switched")
        try:
            at = parse_rfc3339(body.now) if body.now is not None else None
        except ValueError:
            raise InvalidRequest("now: not an RFC 3339 timestamp") from None
        with self._lock, self.rt.engine.gate.held():
            try:
                clock.configure(manual=body.mode == "manual", speed=body.speed, now=at)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
        return self.clock_state()

    def advance(self, seconds: float) -> RunReport:
        """Move the manual clock by ``seconds``, running whatever becomes due on the way (each at
        its due time), to idle."""
        with self._lock, self.rt.engine.gate.held():
            clock = self._manual()
            target = clock.now() + timedelta(seconds=seconds)
            leaves = 0
            while True:
                leaves += self._drain(leaves)
                with self.rt.db.read() as conn:
                    wake = engine_store.next_wake(conn)
                due = as_utc(wake) if wake is not None else None
                if due is not None and clock.now() < due <= target:
                    clock.set(due)
                elif clock.now() < target:
                    clock.set(target)
                else:
                    return RunReport(leaves, clock.now())

    def run_until_idle(self) -> RunReport:
        with self._lock, self.rt.engine.gate.held():
            clock = self._manual()
            try:
                leaves = self.rt.engine.run_until_idle(MAX_LEAVES)
            except RuntimeError as exc:
                raise Conflict(str(exc)) from None
            return RunReport(leaves, clock.now())

    def _manual(self) -> Any:
        clock = jumpable(self.clock)
        if clock is None:
            raise Conflict('the clock is in system mode; PUT /meshup-api/clock {"mode": "manual"} first')
        return clock

    def _drain(self, done: int) -> int:
        count = 0
        while self.rt.engine.run_once():
            count += 1
            if done + count >= MAX_LEAVES:
                raise Conflict(f"the engine did not go idle within {MAX_LEAVES} leaves")
        return count

    # -- faults ----------------------------------------------------------------------------------

    def faults(self, cluster: str | None) -> list[dict[str, Any]]:
        with self.rt.db.read() as conn:
            return fault_store.list_faults(conn, cluster)

    def add_fault(self, body: FaultIn) -> dict[str, Any]:
        fault = _new_fault(body)
        with self._lock, self.rt.db.write() as conn:
            return fault_store.add_fault(conn, fault, self.clock.now())

    def delete_fault(self, fault_id: str) -> None:
        with self._lock, self.rt.db.write() as conn:
            fault_store.delete_fault(conn, fault_id, self.clock.now())


def _new_fault(body: FaultIn) -> fault_store.NewFault:
    """The rules seed files follow (``docs/seed-files.md``), for a fault added at run time."""
    if body.job_type not in JOB_TYPES:
        raise InvalidRequest(f"jobType: {shown(body.job_type)} is not a job type")
    if body.never_ready and body.job_type != "WaitControlPlaneReady":
        raise InvalidRequest("neverReady: only with jobType WaitControlPlaneReady")
    if body.revision is not None and not body.never_ready:
        raise InvalidRequest("revision: only with neverReady")
    if body.workload is not None and body.job_type != "RestartWorkloads":
        raise InvalidRequest("workload: only with jobType RestartWorkloads")
    extra: dict[str, Any] = {}
    for key, value in (
        ("namespace", body.namespace),
        ("workload", body.workload),
        ("neverReady", body.never_ready or None),
        ("revision", body.revision),
    ):
        if value is not None:
            extra[key] = value
    return fault_store.NewFault(
        cluster=body.cluster,
        account=body.account,
        job_type=body.job_type,
        times=body.times,
        reason=body.reason or f"injected fault in {body.job_type}",
        extra=extra,
    )
