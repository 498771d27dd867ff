"""The job engine: workers claim runnable leaves with a lease, run their step, and record it.

One leaf = a claim (a lease) and a start (the leaf shows Running together with its re-derived
ancestors, so a reader never sees a running leaf under an Initializing parent), committed together,
the step, run through ``drivers.for_account(account)`` with **no database transaction open** (the
driver commits its own short transactions), and a finish: one transaction that locks the tree,
checks the lease is still ours, stores the outcome, re-derives the ancestors, makes the next leaves
runnable and, when the root is done, tells its owner (upgrade task, mesh). A busy worker claims and
starts its next leaf in that same finishing transaction, so besides its step a leaf costs one
commit. A crash anywhere loses nothing: a step whose outcome was not recorded runs again, and
drivers make that repeated request converge; a claim dies with its transaction, or its lease expires.

Lock order is the tree (its root row) before its leaves. A claim never waits for a lock: it takes
a due leaf whose tree is free together with the tree lock, and only when every due leaf is in a
busy tree one of those; then it commits alone and the leaf is started by a transaction of its own
that waits for the tree as every other writer does.

Each engine counts what it does (``engine.stats``) and stores the figures with its heartbeat, so
that /metrics of any API process can report the work of every worker process.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection

from meshup.clock import Clock, jumpable
from meshup.drivers.base import ClusterDriver, ClusterDrivers
from meshup.engine.outcome import Done, Fail, Outcome, StepContext, Wait
from meshup.engine.stats import EngineStats, combine, empty
from meshup.errors import Unavailable
from meshup.jobs.model import JobNode, Phase, assemble
from meshup.jobs.scheduling import rederive_ancestors, runnable_leaves
from meshup.store import engine as engine_store
from meshup.store import worker_stats
from meshup.timefmt import as_utc

log = logging.getLogger("meshup.engine")

StepFn = Callable[[StepContext, ClusterDriver], Outcome]


class RootFinished(Protocol):
    """Told in the finishing transaction when a tree's root reaches Success or Failed."""

    def __call__(
        self, conn: Connection, root: JobNode, payloads: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    lease: timedelta = timedelta(seconds=30)
    poll_interval: float = 0.2
    max_attempts: int = 5
    retry_backoff: float = 1.0
    reap_interval: float = 5.0
    # A worker silent this long is folded into the retired figures (it then no longer shows as stale).
    worker_retention: timedelta = timedelta(minutes=15)


def new_owner_id() -> str:
    return f"{socket.gethostname()[:32]}-{secrets.token_hex(6)}"


def parallel_ids(payloads: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    return frozenset(job_id for job_id, payload in payloads.items() if payload.get("parallel"))


def schedule(conn: Connection, root_id: str, now: datetime) -> None:
    """Make the leaves whose turn has come runnable; called when a tree is written and after each leaf."""
    stored = engine_store.load_tree_with_payloads(conn, root_id)
    nodes = assemble(stored.nodes)
    root = nodes[root_id]
    ready = runnable_leaves(root, parallel_ids(stored.payloads))
    engine_store.make_runnable(conn, (leaf.id for leaf in ready if leaf.id not in stored.runnable), now)


class Engine:
    def __init__(
        self,
        db: Any,
        clock: Clock,
        config: EngineConfig,
        *,
        steps: Mapping[str, StepFn],
        drivers: ClusterDrivers,
        on_root_finished: RootFinished,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.steps = steps
        self.drivers = drivers
        self.on_root_finished = on_root_finished
        self.owner = owner or new_owner_id()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self.stats = EngineStats()
        self._started: datetime | None = None
        self._stored: dict[str, Any] | None = None  # the figures of the last heartbeat written
        self._baseline: dict[str, Any] = empty()  # figures already folded into the retired row
        self.gate = WorkerGate()

    # -- one leaf ------------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Claim and run one leaf; False when there was nothing to do."""
        return self.run_chain(lambda: False) > 0

    def run_chain(self, more: Callable[[], bool]) -> int:
        """Claim and run leaves one after another: while ``more()`` says so, the transaction that
        records a leaf's outcome also claims (and starts) the next one, so a busy worker commits
        once per leaf besides its step. Returns how many leaves were claimed."""
        with self.db.write() as conn:
            claimed = self._claim(conn, self.clock.now(), held_root=None)
        count = 0
        while claimed is not None:
            count += 1
            claimed = self._run_claimed(*claimed, more)
        return count

    def _claim(
        self, conn: Connection, now: datetime, held_root: str | None
    ) -> tuple[engine_store.ClaimedLeaf, bool] | None:
        """Lease the next leaf and, when its tree is free (or already ours: ``held_root``), start
        it in the same transaction. The second value says whether it was started."""
        leaf = engine_store.claim(conn, self.owner, now, self.config.lease)
        if leaf is None:
            return None
        # Unless the claim took the tree lock with the leaf, the tree lock may only be tried here,
        # never waited for: the claim holds the leaf's row.
        started = (
            leaf.tree_locked or leaf.root_id == held_root or engine_store.try_lock_tree(conn, leaf.root_id)
        )
        if started:
            self._start(conn, leaf, now)
        return leaf, started

    def _start(self, conn: Connection, leaf: engine_store.ClaimedLeaf, now: datetime) -> None:
        clock_went_back = leaf.updated_at is not None and leaf.updated_at > now
        if leaf.ancestors is None or clock_went_back:
            engine_store.start_leaf(conn, leaf.id, now)
            self._refresh_ancestors(conn, leaf.root_id, leaf.id, now)
        else:  # without reading the tree (see store.engine.start_with_ancestors)
            engine_store.start_with_ancestors(conn, leaf.id, leaf.ancestors, leaf.started_at or now, now)

    def _run_claimed(
        self, leaf: engine_store.ClaimedLeaf, started: bool, more: Callable[[], bool]
    ) -> tuple[engine_store.ClaimedLeaf, bool] | None:
        """Run a claimed leaf and record its outcome; returns the next leaf if the finish claimed one."""
        self.stats.claimed(leaf.type, after_expiry=leaf.after_expiry)
        if leaf.took_expired_lease:  # taken over before any reaper released it: counted here
            self.stats.leases_expired(1)
        if not started:  # its tree was busy at the claim: start it now, tree lock first
            with self.db.write() as conn:
                if not engine_store.lock_tree_and_leaf(conn, leaf.root_id, leaf.id, self.owner):
                    return None  # cancelled since the claim (a sibling failed), or the lease was lost
                now = self.clock.now()
                engine_store.start_leaf(conn, leaf.id, now)
                self._refresh_ancestors(conn, leaf.root_id, leaf.id, now)
        with self._lock:
            self._in_flight.add(leaf.id)
        try:
            began = time.monotonic()
            try:
                outcome = self._run_step(leaf)  # no connection held: the driver opens its own
            except Unavailable:
                self._count_run(leaf.type, began, "error")
                log.warning("database unavailable while running job %s; its lease will expire", leaf.id)
                return None
            except Exception as exc:
                self._count_run(leaf.type, began, "error")
                log.exception("step %s of job %s raised", leaf.type, leaf.id)
                self._record_crash(leaf, exc)
                return None
            self.stats.ran(leaf.type, time.monotonic() - began)
            return self._finish(leaf, outcome, claim_next=more())
        finally:
            with self._lock:
                self._in_flight.discard(leaf.id)

    def _count_run(self, job_type: str, began: float, outcome: str) -> None:
        self.stats.ran(job_type, time.monotonic() - began)
        self.stats.outcome(job_type, outcome)

    def _run_step(self, leaf: engine_store.ClaimedLeaf) -> Outcome:
        step = self.steps.get(leaf.type)
        if step is None:
            return Fail(f"meshup has no implementation for job type {leaf.type}")
        context = StepContext(
            job_id=leaf.id,
            job_type=leaf.type,
            target=leaf.target,
            payload=leaf.payload,
            now=self.clock.now(),
        )
        return step(context, self.drivers.for_account(leaf.account_id))

    def _finish(
        self, leaf: engine_store.ClaimedLeaf, outcome: Outcome, *, claim_next: bool = False
    ) -> tuple[engine_store.ClaimedLeaf, bool] | None:
        """Record a step's outcome, if the leaf is still ours (one transaction), and with
        ``claim_next`` claim the next leaf in it."""
        claimed = None
        try:
            with self.db.write() as conn:
                if not engine_store.lock_tree_and_leaf(conn, leaf.root_id, leaf.id, self.owner):
                    log.warning("lease on job %s was lost; another worker has it", leaf.id)
                    self.stats.outcome(leaf.type, "lost")
                    return None
                now = self.clock.now()
                self._record(conn, leaf, outcome, now)
                if claim_next:
                    claimed = self._claim(conn, now, held_root=leaf.root_id)
            self.stats.outcome(leaf.type, _outcome_name(outcome))
        except Unavailable:
            log.warning("database unavailable while finishing job %s; its lease will expire", leaf.id)
        except Exception as exc:
            log.exception("recording the outcome of job %s failed", leaf.id)
            self._record_crash(leaf, exc)
        return claimed

    def _record(
        self, conn: Connection, leaf: engine_store.ClaimedLeaf, outcome: Outcome, now: datetime
    ) -> None:
        if isinstance(outcome, Wait):
            payload = {**leaf.payload, **outcome.state}
            due = now + timedelta(seconds=max(0.0, outcome.seconds))
            engine_store.reschedule_leaf(conn, leaf.id, due, payload, now)
            self._refresh_ancestors(conn, leaf.root_id, leaf.id, now)  # their updateTimestamp follows
            return
        stored = engine_store.load_tree_with_payloads(conn, leaf.root_id)
        payloads = stored.payloads
        nodes = assemble(stored.nodes)
        node = nodes[leaf.id]
        node.phase = Phase.SUCCESS if isinstance(outcome, Done) else Phase.FAILED
        node.reason = outcome.reason if isinstance(outcome, Fail) else ""
        node.completed_at = now
        node.started_at = node.started_at or now
        node.updated_at = now
        engine_store.finish_leaf(conn, node, outcome.result if isinstance(outcome, Done) else None)
        root = nodes[leaf.root_id]
        was_terminal = root.phase.terminal
        for changed in rederive_ancestors(nodes, leaf.id):
            engine_store.write_node_state(conn, changed)
        if node.phase is Phase.FAILED:
            engine_store.cancel_tree(conn, leaf.root_id)
        else:
            ready = runnable_leaves(root, parallel_ids(payloads))
            # Leaves of a parallel parent have been runnable since the tree was written.
            engine_store.make_runnable(conn, (r.id for r in ready if r.id not in stored.runnable), now)
        if root.phase.terminal and not was_terminal:
            self.on_root_finished(conn, root, payloads, now)

    def _record_crash(self, leaf: engine_store.ClaimedLeaf, exc: Exception) -> None:
        """A step that raised: retry with backoff, then fail the leaf with the error's kind."""
        try:
            with self.db.write() as conn:
                if not engine_store.lock_tree_and_leaf(conn, leaf.root_id, leaf.id, self.owner):
                    return
                now = self.clock.now()
                if leaf.attempt >= self.config.max_attempts:
                    reason = f"internal error after {leaf.attempt} attempts ({type(exc).__name__})"
                    self._record(conn, leaf, Fail(reason), now)
                else:
                    delay = self.config.retry_backoff * (2 ** (leaf.attempt - 1))
                    engine_store.reschedule_leaf(
                        conn, leaf.id, now + timedelta(seconds=delay), leaf.payload, now
                    )
        except Exception:
            log.exception("could not record the failure of job %s; its lease will expire", leaf.id)

    def _refresh_ancestors(self, conn: Connection, root_id: str, leaf_id: str, now: datetime) -> None:
        nodes = assemble(engine_store.load_tree(conn, root_id))
        for changed in rederive_ancestors(nodes, leaf_id):
            engine_store.write_node_state(conn, changed)

    # -- housekeeping --------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Extend the leases of the leaves in flight, and store this worker's figures with its
        heartbeat (what every API process's /metrics adds up)."""
        with self._lock:
            in_flight = list(self._in_flight)
        now = self.clock.now()
        if in_flight:
            with self.db.write() as conn:
                engine_store.extend_leases(conn, self.owner, in_flight, now + self.config.lease)
        self.stats.heartbeat()
        self._started = self._started or now
        with self.db.write() as conn:
            stored = combine(self.stats.snapshot(), self._baseline, -1)
            if not self._beat(conn, stored, now) and self._stored is not None:
                # Our row was retired while we were silent: what it held is in the retired figures.
                self._baseline = combine(self._baseline, self._stored)
                stored = combine(self.stats.snapshot(), self._baseline, -1)
                self._beat(conn, stored, now)
        self._stored = stored

    def _beat(self, conn: Connection, stored: dict[str, Any], now: datetime) -> bool:
        assert self._started is not None
        return worker_stats.beat(
            conn,
            self.owner,
            stored,
            now,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            started=self._started,
        )

    def retire(self, *, owners: list[str] | None = None, silent_since: datetime | None = None) -> int:
        """Fold workers' rows into the retired figures (one transaction; the sums stay the same):
        this worker's own when it stops, and those of workers silent since ``silent_since``."""
        with self.db.write() as conn:
            retired = worker_stats.lock_retired(conn, empty())
            gone = worker_stats.lock_retiring(conn, owners=owners or [], silent_since=silent_since)
            for _owner, figures in gone:
                retired = combine(retired, figures)
            if gone:
                worker_stats.replace_retired(conn, retired, [owner for owner, _ in gone])
        return len(gone)

    def reap(self) -> int:
        """Release expired leases, one tree per transaction, taking the tree lock first like
        every other writer of a tree (so reaping never deadlocks with a finishing step)."""
        now = self.clock.now()
        with self.db.read() as conn:
            expired = engine_store.expired_leases(conn, now)
        released = 0
        for job_id, root_id in expired:
            with self.db.write() as conn:
                engine_store.lock_tree(conn, root_id)
                count = engine_store.release_expired(conn, job_id, now)
            released += count
            self.stats.leases_expired(count)
        return released

    def run_until_idle(self, max_leaves: int = 100_000) -> int:
        """Run everything to the end without sleeping: a manual clock jumps to the next due leaf."""
        processed = 0
        while processed < max_leaves:
            if self.run_once():
                processed += 1
                continue
            with self.db.read() as conn:
                wake = engine_store.next_wake(conn)
            if wake is None:
                return processed
            clock = jumpable(self.clock)
            if clock is None:
                raise RuntimeError("run_until_idle with pending timed work needs a manual clock")
            due = as_utc(wake)
            if due > clock.now():
                clock.set(due)
            else:
                # Due but not claimable: leased by another owner; let the lease run out.
                clock.advance(self.config.lease.total_seconds())
        raise RuntimeError(f"engine did not go idle within {max_leaves} leaves")


class WorkerGate:
    """Lets the control API hold this process's workers: while held they claim nothing, and
    :meth:`held` waits for the steps in flight to be recorded before its block runs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders = 0
        self._active = 0

    def enter(self) -> bool:
        """A worker may start a round; False while held (then it must not call :meth:`leave`)."""
        with self._cond:
            if self._holders:
                return False
            self._active += 1
            return True

    def wanted(self) -> bool:
        """Someone holds, or waits to hold, the gate: a worker should end its round."""
        with self._cond:
            return self._holders > 0

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._cond:
            self._holders += 1
            try:
                self._cond.wait_for(lambda: self._active == 0)
            except BaseException:
                self._holders -= 1
                raise
        try:
            yield
        finally:
            with self._cond:
                self._holders -= 1
                self._cond.notify_all()


class WorkerPool:
    """``threads`` workers of one engine in this process, plus heartbeat and reaper; drains on stop."""

    def __init__(self, engine: Engine, threads: int, *, chores: Sequence[Callable[[], object]] = ()) -> None:
        self.engine = engine
        self.threads = max(1, threads)
        self.chores = tuple(chores)  # periodic work of other parts (the audit trail's retention)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        try:
            self.engine.heartbeat()  # shows as a live worker at once
        except Exception:
            log.warning("could not write the first worker heartbeat; retrying with the next", exc_info=True)
        for index in range(self.threads):
            thread = threading.Thread(target=self._work, name=f"meshup-worker-{index}", daemon=True)
            thread.start()
            self._workers.append(thread)
        keeper = threading.Thread(target=self._housekeeping, name="meshup-worker-housekeeping", daemon=True)
        keeper.start()
        self._workers.append(keeper)

    def _work(self) -> None:
        gate = self.engine.gate
        while not self._stop.is_set():
            busy = False
            if gate.enter():
                try:
                    # Runs leaves back to back until there is none, the pool stops or the gate is wanted.
                    busy = self.engine.run_chain(lambda: not self._stop.is_set() and not gate.wanted()) > 0
                except Unavailable:
                    busy = False
                except Exception:
                    log.exception("worker loop error")
                    busy = False
                finally:
                    gate.leave()
            if not busy:
                self._stop.wait(self.engine.config.poll_interval)

    def _housekeeping(self) -> None:
        beat = max(0.5, self.engine.config.lease.total_seconds() / 3)
        interval = min(beat, self.engine.config.reap_interval)
        last_reap = 0.0
        elapsed = 0.0
        while not self._stop.wait(interval):
            elapsed += interval
            if not self.engine.gate.enter():
                continue
            try:
                self.engine.heartbeat()
                if elapsed - last_reap >= self.engine.config.reap_interval:
                    reaped = self.engine.reap()
                    if reaped:
                        log.info("reaped %d expired leases", reaped)
                    silent_since = self.engine.clock.now() - self.engine.config.worker_retention
                    self.engine.retire(silent_since=silent_since)
                    last_reap = elapsed
                    for chore in self.chores:
                        chore()
            except Exception:
                log.exception("worker housekeeping error")
            finally:
                self.engine.gate.leave()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; steps in flight finish (their leases are released by finishing)."""
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout)
        try:  # a drained worker's figures go to the retired row at once (it is not "stale")
            self.engine.heartbeat()
            self.engine.retire(owners=[self.engine.owner])
        except Exception:
            log.warning("could not retire this worker's figures; they retire after a silence", exc_info=True)


def _outcome_name(outcome: Outcome) -> str:
    if isinstance(outcome, Done):
        return "done"
    return "failed" if isinstance(outcome, Fail) else "wait"
