"""Engine metrics on SQLite and PostgreSQL: workers store their counters with their heartbeats, the
sums over all rows never go down (retiring folds a row into ``retired``), the reaper's expiries
and the reclaims that follow are counted, and the backlog is read from the runnable leaves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from meshup.clock import FixedClock
from meshup.engine.outcome import Outcome, StepContext, Wait
from meshup.http.engine_metrics import read_figures
from meshup.store import engine as engine_store
from meshup.store import tables as t
from meshup.store import worker_stats
from meshup.store.db import Database
from tests.integration.test_engine import NOW, Recorder, engine_for, seed_mesh, write_tree

LIVE = 30.0


def test_heartbeats_carry_each_workers_counters_and_the_sums_add_up(db: Database) -> None:
    seed_mesh(db)
    write_tree(db, 3, parallel=True)
    clock = FixedClock(NOW)
    first, second = engine_for(db, Recorder(), clock), engine_for(db, Recorder(), clock)
    assert first.run_once() and first.run_once() and second.run_once()
    assert not second.run_once()
    figures = read_figures(db, clock.now(), LIVE)
    assert figures.workers == {"live": 0, "stale": 0}
    assert figures.totals.get("claims", {}) == {}  # nothing is reported before a heartbeat
    first.heartbeat()
    second.heartbeat()
    figures = read_figures(db, clock.now(), LIVE)
    assert figures.workers == {"live": 2, "stale": 0}
    assert figures.totals["claims"] == {"Work": 3}
    assert figures.totals["outcomes"] == {"Work": {"done": 3}}
    assert figures.totals["heartbeats"] == 2
    assert sum(figures.totals["run_seconds"]["Work"]["buckets"].values()) == 3
    assert ("Work", "Success", 3) in figures.jobs and ("Root", "Success", 1) in figures.jobs
    assert figures.waiting == 0 and figures.leased == 0
    with db.read() as conn:
        rows, retired = worker_stats.workers(conn)
    assert sorted(row.owner for row in rows) == sorted([first.owner, second.owner])
    assert retired == {}
    assert all(row.started_at == NOW and row.pid > 0 and row.host for row in rows)


def test_retiring_workers_keeps_the_sums_and_a_returning_worker_is_not_counted_twice(db: Database) -> None:
    seed_mesh(db)
    write_tree(db, 4, parallel=True)
    clock = FixedClock(NOW)
    first, second = engine_for(db, Recorder(), clock), engine_for(db, Recorder(), clock)
    first.run_once()
    first.run_once()
    second.run_once()
    first.heartbeat()
    second.heartbeat()
    before = read_figures(db, clock.now(), LIVE).totals
    assert first.retire(owners=[first.owner]) == 1  # a drained worker
    after = read_figures(db, clock.now(), LIVE)
    assert after.totals == before
    assert after.workers == {"live": 1, "stale": 0}
    clock.advance(LIVE + 1)
    assert read_figures(db, clock.now(), LIVE).workers == {"live": 0, "stale": 1}
    # Silent for longer than the retention: folded too (by any worker), the sums unchanged.
    assert first.retire(silent_since=clock.now() - timedelta(seconds=LIVE)) == 1
    assert first.retire(silent_since=clock.now() - timedelta(seconds=LIVE)) == 0
    gone = read_figures(db, clock.now(), LIVE)
    assert gone.totals == before and gone.workers == {"live": 0, "stale": 0}
    # The silent worker comes back and does one more leaf: only that leaf is added.
    assert second.run_once()
    second.heartbeat()
    back = read_figures(db, clock.now(), LIVE)
    assert back.totals["claims"] == {"Work": 4}
    assert back.totals["outcomes"] == {"Work": {"done": 4}}
    assert back.totals["heartbeats"] == before["heartbeats"] + 1
    assert back.workers == {"live": 1, "stale": 0}
    second.heartbeat()  # and the next heartbeats keep storing only what is new
    assert read_figures(db, clock.now(), LIVE).totals["claims"] == {"Work": 4}


def test_expired_leases_and_reclaims_are_counted(db: Database) -> None:
    seed_mesh(db)
    _root, (leaf,) = write_tree(db, 1, parallel=False)
    clock = FixedClock(NOW)
    lost = engine_for(db, Recorder(), clock, lease=timedelta(seconds=10))
    with db.write() as conn:  # claimed, then the worker dies before it finishes
        assert engine_store.claim(conn, lost.owner, clock.now(), timedelta(seconds=10)) is not None
    taker = engine_for(db, Recorder(), clock, lease=timedelta(seconds=10))
    clock.advance(11)
    assert taker.reap() == 1
    with db.read() as conn:
        assert conn.execute(select(t.jobs.c.lease_expired).where(t.jobs.c.id == leaf)).scalar_one()
    assert taker.run_once()
    with db.read() as conn:  # cleared when the leaf started again: a later claim is no reclaim
        assert not conn.execute(select(t.jobs.c.lease_expired).where(t.jobs.c.id == leaf)).scalar_one()
    taker.heartbeat()
    totals = read_figures(db, clock.now(), LIVE).totals
    assert totals["lease_expiries"] == 1
    assert totals["claims"] == {"Work": 1}  # the dead worker never reported its claim
    assert totals["reclaims"] == {"Work": 1}
    assert totals["outcomes"] == {"Work": {"done": 1}}


def test_an_expired_lease_taken_over_before_any_reaper_is_an_expiry_and_a_reclaim(db: Database) -> None:
    seed_mesh(db)
    write_tree(db, 1, parallel=False)
    clock = FixedClock(NOW)
    lost = engine_for(db, Recorder(), clock, lease=timedelta(seconds=10))
    with db.write() as conn:
        assert engine_store.claim(conn, lost.owner, clock.now(), timedelta(seconds=10)) is not None
    clock.advance(11)
    taker = engine_for(db, Recorder(), clock, lease=timedelta(seconds=10))
    assert taker.run_once()  # claims the expired lease directly
    assert taker.reap() == 0
    taker.heartbeat()
    totals = read_figures(db, clock.now(), LIVE).totals
    assert totals["lease_expiries"] == 1
    assert totals["reclaims"] == {"Work": 1}
    assert totals["claims"] == {"Work": 1}


def test_waiting_leased_and_oldest_age_of_the_backlog(db: Database) -> None:
    seed_mesh(db)
    write_tree(db, 3, parallel=True)
    clock = FixedClock(NOW)

    def slow(_context: StepContext, _driver: Any) -> Outcome:
        return Wait(60)

    engine = engine_for(db, Recorder(), clock, steps={"Work": slow})
    clock.advance(42)
    figures = read_figures(db, clock.now(), LIVE)
    assert (figures.waiting, figures.leased, figures.oldest_wait_seconds) == (3, 0, 42.0)
    with db.write() as conn:
        assert engine_store.claim(conn, engine.owner, clock.now(), timedelta(seconds=30)) is not None
    figures = read_figures(db, clock.now(), LIVE)
    assert (figures.waiting, figures.leased, figures.oldest_wait_seconds) == (2, 1, 42.0)
    assert engine.run_once() and engine.run_once()  # both others wait 60 s: not due any more
    figures = read_figures(db, clock.now(), LIVE)
    assert (figures.waiting, figures.leased, figures.oldest_wait_seconds) == (0, 1, 0.0)
    engine.heartbeat()
    assert read_figures(db, clock.now(), LIVE).totals["outcomes"] == {"Work": {"wait": 2}}
