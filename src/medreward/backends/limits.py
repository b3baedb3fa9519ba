"""Limits for calls to a model server: rate buckets, retry back-off, ``Retry-After`` and a circuit breaker.

Each piece is pure (an injectable clock and random source, no I/O) so it is tested without a
server; :mod:`medreward.backends.openai` wires them around its HTTP calls.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

__all__ = ["CircuitBreaker", "TokenBucket", "backoff_delay", "estimate_tokens", "parse_retry_after"]

Clock = Callable[[], float]


class TokenBucket:
    """A token bucket that hands out *reservations*: :meth:`reserve` takes ``amount`` now and
    returns how long the caller must wait before acting (0 when the bucket had enough).

    The level may go negative (a debt later callers wait out), so one request larger than the
    bucket is still served — it just waits for the refill — and callers are served in the order
    they reserved. ``rate`` is per second; ``capacity`` is the largest burst. Thread-safe.
    """

    def __init__(self, rate: float, capacity: float, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._last = clock()
        self._lock = threading.Lock()

    @classmethod
    def per_minute(cls, per_minute: float, *, clock: Clock = time.monotonic) -> TokenBucket:
        """A bucket for a per-minute limit that allows bursts of one second's worth (at least 1),
        so the limit also holds over windows much shorter than a minute."""
        rate = per_minute / 60.0
        return cls(rate, max(1.0, rate), clock=clock)

    def reserve(self, amount: float = 1.0) -> float:
        """Take ``amount``; return the seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            self._level = min(self.capacity, self._level + (now - self._last) * self.rate)
            self._last = now
            self._level -= amount
            return 0.0 if self._level >= 0 else -self._level / self.rate


def backoff_delay(attempt: int, *, base: float = 0.25, cap: float = 8.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): exponential with "equal jitter",
    i.e. uniformly in ``[d/2, d]`` where ``d = min(cap, base * 2**attempt)`` — never 0, so a
    storm of failures does not retry in lockstep."""
    d = min(cap, base * (2 ** max(0, attempt)))
    return d / 2 + (rng or random).uniform(0, d / 2)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delay-seconds (``"3"``, ``"1.5"``) or an HTTP date;
    ``None`` when absent or unreadable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def estimate_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of text, without a tokenizer (about 4 characters a token)."""
    return (chars + 3) // 4


class CircuitBreaker:
    """Fails fast while a server is unreachable.

    After ``failures`` consecutive connection failures the circuit *opens*: :meth:`allow` says no
    for ``reset_s`` seconds. Then one trial call is let through (*half-open*); its success closes
    the circuit, its failure opens it again for another ``reset_s``. Thread-safe.
    """

    def __init__(self, failures: int, reset_s: float, *, clock: Clock = time.monotonic) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_out = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (a trial call may go, or is out)."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial_out or self._clock() - self._opened_at >= self.reset_s:
                return "half_open"
            return "open"

    def allow(self) -> bool:
        """May a call go now? In the half-open state only the first caller gets ``True``."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial_out or self._clock() - self._opened_at < self.reset_s:
                return False
            self._trial_out = True
            return True

    def record_success(self) -> None:
        """The server answered (any HTTP response): close the circuit."""
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._trial_out = False

    def record_failure(self) -> None:
        """A connection failure: count it; open (or re-open) the circuit when due."""
        with self._lock:
            self._consecutive += 1
            if self._trial_out or self._consecutive >= self.failures:
                self._opened_at = self._clock()
                self._trial_out = False
