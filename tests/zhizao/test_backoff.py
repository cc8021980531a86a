"""Backoff: capped, jittered, and safe for outages of any length."""

from __future__ import annotations

import random

from zhizao.backoff import Backoff


def test_delays_grow_to_the_cap_with_half_jitter_and_reset() -> None:
    b = Backoff(initial=0.5, cap=30.0, rng=random.Random(1))
    delays = [b.next() for _ in range(12)]
    for attempt, d in enumerate(delays):
        base = min(30.0, 0.5 * 2**attempt)
        assert base / 2 <= d <= base
    b.reset()
    assert b.attempts == 0 and 0.25 <= b.next() <= 0.5


def test_days_of_retries_never_overflow() -> None:
    b = Backoff(initial=0.5, cap=30.0, rng=random.Random(2))
    for _ in range(100_000):  # ~35 days of retries at the cap
        d = b.next()
    assert 15.0 <= d <= 30.0 and b.attempts == 100_000
