"""The per-address budget, the bounded hashing pool and how a login attempt uses them (fake clocks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from meshup.clock import FixedClock
from meshup.errors import AuthenticationFailed
from meshup.iam.bounded_pool import BoundedPool, PoolBusy
from meshup.iam.login import LoginPolicy, LoginRequest, LoginService, LoginThrottled
from meshup.iam.throttle import AddressThrottle, address_key
from meshup.iam.tokens import TokenCodec


class Ticks:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- AddressThrottle ----------------------------------------------------------------------------


def test_an_address_may_fail_its_budget_then_waits_for_the_refill() -> None:
    ticks = Ticks()
    throttle = AddressThrottle(3, 30.0, monotonic=ticks)  # 3 failures, one more every 10 s
    assert [throttle.take("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.take("10.0.0.1") == pytest.approx(10.0)
    ticks.now += 4
    assert throttle.take("10.0.0.1") == pytest.approx(6.0)  # refused attempts are not charged
    ticks.now += 6
    assert throttle.take("10.0.0.1") == 0.0
    assert throttle.take("10.0.0.1") == pytest.approx(10.0)
    ticks.now += 1000  # the budget refills up to its size, not beyond
    assert [throttle.take("10.0.0.1") for _ in range(4)][-1] == pytest.approx(10.0)


def test_addresses_have_budgets_of_their_own() -> None:
    throttle = AddressThrottle(1, 60.0, monotonic=Ticks())
    assert throttle.take("10.0.0.1") == 0.0
    assert throttle.take("10.0.0.1") > 0
    assert throttle.take("10.0.0.2") == 0.0


def test_a_refund_gives_the_charge_back_and_never_more_than_the_budget() -> None:
    throttle = AddressThrottle(2, 60.0, monotonic=Ticks())
    for _ in range(10):  # successful logins: charged, then refunded
        assert throttle.take("10.0.0.1") == 0.0
        throttle.refund("10.0.0.1")
    throttle.refund("10.0.0.1")
    assert [throttle.take("10.0.0.1") for _ in range(3)][:2] == [0.0, 0.0]
    assert throttle.take("10.0.0.1") > 0


def test_a_budget_of_zero_turns_the_throttle_off() -> None:
    throttle = AddressThrottle(0, 60.0, monotonic=Ticks())
    assert not throttle.enabled
    assert all(throttle.take("10.0.0.1") == 0.0 for _ in range(1000))
    assert throttle.tracked() == 0


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),  # one /64: one host
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:10.0.0.1", "10.0.0.1", True),
        ("10.0.0.1", "10.0.0.2", False),
        ("not-an-address", "not-an-address", True),
    ],
)
def test_address_keys(one: str, other: str, same: bool) -> None:
    assert (address_key(one) == address_key(other)) is same


def test_sources_back_to_a_full_budget_are_forgotten() -> None:
    ticks = Ticks()
    throttle = AddressThrottle(2, 60.0, monotonic=ticks)
    throttle.take("10.0.0.1")
    throttle.take("10.0.0.2")
    assert throttle.tracked() == 2
    ticks.now += 60
    throttle.take("10.0.0.3")
    assert throttle.tracked() == 1


def test_the_number_of_tracked_sources_is_bounded() -> None:
    throttle = AddressThrottle(1, 3600.0, monotonic=Ticks(), max_addresses=100)
    for number in range(1000):
        throttle.take(f"10.0.{number // 250}.{number % 250}")
    assert throttle.tracked() == 100
    assert throttle.take("10.0.3.249") > 0  # the most recent ones are still remembered


# --- BoundedPool ----------------------------------------------------------------------------------


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_the_pool_refuses_beyond_workers_and_queue(gate: threading.Event) -> None:
    pool = BoundedPool(1, 1)
    try:
        futures = []
        for _ in range(2):
            pool.admit()
            futures.append(pool.submit(gate.wait))
        with pytest.raises(PoolBusy) as busy:
            pool.admit()
        assert busy.value.retry_after >= 1
        assert pool.admitted == 2
        gate.set()
        for future in futures:
            future.result(timeout=5)
        _wait_for(lambda: pool.admitted == 0)
        pool.admit()
        pool.release()
    finally:
        pool.shutdown()


def test_retry_after_estimates_when_the_tasks_ahead_will_have_drained(gate: threading.Event) -> None:
    ticks = Ticks()
    pool = BoundedPool(2, 2, monotonic=ticks)

    def three_seconds() -> None:
        ticks.now += 3

    try:
        pool.admit()
        pool.submit(three_seconds).result(timeout=5)
        _wait_for(lambda: pool.admitted == 0)
        for _ in range(4):
            pool.admit()
            pool.submit(gate.wait)
        with pytest.raises(PoolBusy) as busy:
            pool.admit()
        assert busy.value.retry_after == pytest.approx(6.0)  # 4 tasks, 2 at a time, 3 s each
    finally:
        gate.set()
        pool.shutdown()


def test_a_cancelled_wait_gives_its_place_back(gate: threading.Event) -> None:
    pool = BoundedPool(1, 1)

    async def scenario() -> None:
        running = asyncio.ensure_future(pool.run(gate.wait))
        waiting = asyncio.ensure_future(pool.run(lambda: "never"))
        await asyncio.sleep(0.05)
        assert pool.admitted == 2
        waiting.cancel()  # the client went away while queued
        await asyncio.sleep(0.05)
        assert pool.admitted == 1
        gate.set()
        await running
        assert await pool.run(lambda: "again") == "again"

    try:
        asyncio.run(scenario())
        _wait_for(lambda: pool.admitted == 0)
    finally:
        pool.shutdown()


def _wait_for(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition not reached")


# --- LoginService.attempt -------------------------------------------------------------------------


REQUEST = LoginRequest(
    user_id=None,
    user_name="alice",
    user_domain_id=None,
    user_domain_name="acme",
    password="x",
    scope="unscoped",
    project_id=None,
    project_name=None,
    project_domain_id=None,
    project_domain_name=None,
    domain_id=None,
    domain_name=None,
)


def service(ticks: Ticks, outcome: Any, **policy: Any) -> LoginService:
    clock = FixedClock(datetime(2026, 11, 27, tzinfo=UTC))
    login = LoginService(TokenCodec(b"k" * 32), clock, LoginPolicy(**policy), monotonic=ticks)

    def fake_login(_db: Any, _request: LoginRequest) -> Any:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome() if callable(outcome) else outcome

    login.login = fake_login  # type: ignore[method-assign]
    return login


def attempt(login: LoginService, source: str = "10.0.0.1") -> Any:
    return asyncio.run(login.attempt(None, REQUEST, source))  # type: ignore[arg-type]


def test_failed_attempts_spend_the_address_budget() -> None:
    ticks = Ticks()
    login = service(
        ticks, AuthenticationFailed("no"), address_max_failures=2, address_window=timedelta(minutes=1)
    )
    try:
        for _ in range(2):
            with pytest.raises(AuthenticationFailed):
                attempt(login)
        with pytest.raises(LoginThrottled) as throttled:
            attempt(login)
        assert throttled.value.retry_after == 30
        assert throttled.value.message == "Too many failed logins from this address; retry later."
        with pytest.raises(AuthenticationFailed):
            attempt(login, "10.0.0.2")
        ticks.now += 30
        with pytest.raises(AuthenticationFailed):
            attempt(login)
    finally:
        login.close()


def test_successful_attempts_cost_nothing() -> None:
    login = service(Ticks(), "token", address_max_failures=1)
    try:
        assert [attempt(login) for _ in range(5)] == ["token"] * 5
    finally:
        login.close()


def test_a_full_pool_refuses_without_charging_the_address(gate: threading.Event) -> None:
    login = service(Ticks(), gate.wait, address_max_failures=1, workers=1, queue=0)

    async def scenario() -> None:
        first = asyncio.ensure_future(login.attempt(None, REQUEST, "10.0.0.9"))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        with pytest.raises(LoginThrottled) as busy:
            await login.attempt(None, REQUEST, "10.0.0.1")  # type: ignore[arg-type]
        assert busy.value.message == "Too many logins in progress; retry later."
        assert busy.value.retry_after >= 1
        gate.set()
        await first

    try:
        asyncio.run(scenario())
        assert attempt(login, "10.0.0.1") is True  # its budget is intact
    finally:
        login.close()


def test_pool_and_queue_sizes_default_to_the_cores() -> None:
    policy = LoginPolicy()
    assert policy.pool_workers() >= 1
    assert policy.pool_queue() == 8 * policy.pool_workers()
    assert LoginPolicy(workers=3, queue=0).pool_queue() == 0


def test_no_task_is_queued_that_would_wait_longer_than_max_wait(gate: threading.Event) -> None:
    ticks = Ticks()
    pool = BoundedPool(1, 10, max_wait=5.0, monotonic=ticks)

    def two_seconds() -> None:
        ticks.now += 2

    try:
        pool.admit()
        pool.submit(two_seconds).result(timeout=5)
        _wait_for(lambda: pool.admitted == 0)
        for _ in range(3):  # one runs, two wait: the last one starts after about 4 s
            pool.admit()
            pool.submit(gate.wait)
        with pytest.raises(PoolBusy) as busy:
            pool.admit()  # it would start after about 6 s
        assert busy.value.retry_after == pytest.approx(6.0)
    finally:
        gate.set()
        pool.shutdown()
