"""The pure limit pieces: token buckets, back-off, Retry-After parsing, the circuit breaker."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from medreward.backends.limits import CircuitBreaker, TokenBucket, backoff_delay, estimate_tokens, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_allows_a_burst_then_spaces_reservations_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket.per_minute(120, clock=clock)  # 2/s, burst 2
    waits = [bucket.reserve() for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    clock.t += 10  # refilled, but never above capacity
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


def test_token_bucket_serves_a_request_larger_than_the_bucket_after_the_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100.0, capacity=100.0, clock=clock)
    assert bucket.reserve(300) == pytest.approx(2.0)  # a debt of 200 tokens at 100/s
    assert bucket.reserve(10) == pytest.approx(2.1)


def test_token_bucket_rejects_nonpositive_rates() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(0)
    for attempt, full in [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (10, 8.0)]:
        delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # jittered, not lockstep


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("1.5", 1.5), (" 0 ", 0.0), ("-4", 0.0), ("", None), (None, None), ("soon", None), ("nan", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == pytest.approx(7.0)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now) == 0.0


def test_estimate_tokens_is_four_characters_a_token_rounded_up() -> None:
    assert [estimate_tokens(n) for n in (0, 1, 4, 5, 400)] == [0, 1, 1, 2, 100]


def test_circuit_opens_after_consecutive_failures_and_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, reset_s=30, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # not consecutive any more
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.t += 29.9
    assert not breaker.allow()
    clock.t += 0.2
    assert breaker.allow()  # the one trial
    assert not breaker.allow() and breaker.state == "half_open"
    breaker.record_failure()  # trial failed: open again for reset_s
    assert breaker.state == "open" and not breaker.allow()
    clock.t += 30
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
