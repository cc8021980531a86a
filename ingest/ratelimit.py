"""Per-producer token buckets counting samples (not requests), with debt, refunds and a bounded table.

Contract of :class:`RateLimiter` (what the service charges and when: ``ingest/README.md``, "Rate
limit"):

* a bucket holds at most ``burst`` tokens and refills at ``rate`` tokens/s; a key never seen, or
  whose bucket is full, holds ``burst`` (an absent bucket and a full one are the same thing);
* :meth:`take_all` admits ``n`` samples of a key when its bucket holds ``min(n, burst)`` tokens
  now — so a batch larger than the burst is admitted when the bucket is full — and then takes all
  ``n``: every sample is paid, and the bucket may go below zero. That debt is repaid by the refill
  before the key is admitted again, so a key that sent ``n`` samples waits about ``n / rate``
  seconds and no key stores more than ``rate`` samples/s in the long run, whatever its batch size.
  All or nothing: a request over several producers (a bulk request) is refused whole, and then
  nothing is taken from any of them;
* :meth:`refund` gives back ``n`` samples, which must be (part of) what a take took from that key
  — the caller refunds each line exactly what it charged that line, so the refunds of a take never
  add up to more than it took — and never lifts a bucket above full (so a take followed by its
  whole refund is neutral);
* the table holds only buckets that are not full: a bucket found full again is dropped, on its
  next use and by a sweep of the whole table run when it has doubled since the last sweep or
  when a refill period (``burst / rate``, at least 1 s) has passed — so it holds at most about
  twice the producers active within the last refill period (more while some repay a debt, which
  no sweep forgives), however many producer names a long-running ingest sees.

Not thread-safe: one event loop. ``clock`` is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

_MIN_SWEEP = 64
"""Table size below which growth alone never triggers a sweep."""


@dataclass
class RateLimiter:
    """``rate`` samples/s per key with bursts up to ``burst``."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    """key -> (tokens, at): the level at ``at`` (clock seconds, negative for a debt); only buckets
    that are not full."""
    _sweep_size: int = _MIN_SWEEP
    _sweep_time: float = field(default=float("-inf"))

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError(f"rate ({self.rate}) and burst ({self.burst}) must be positive")
        self._period = max(self.burst / self.rate, 1.0)
        self._sweep_time = self.clock() + self._period

    def __len__(self) -> int:
        """Buckets held (producers whose bucket is not full, or not swept yet)."""
        return len(self._buckets)

    def _needed(self, n: int) -> float:
        """Tokens a bucket must hold to admit ``n`` samples: all of them, or a full bucket for a batch
        larger than the burst (which then takes all ``n``: a debt)."""
        return min(float(n), self.burst)

    def level(self, key: str, now: float | None = None) -> float:
        """Tokens in ``key``'s bucket at ``now`` (default: the clock's now); below zero: a debt."""
        entry = self._buckets.get(key)
        if entry is None:
            return self.burst
        tokens, at = entry
        return min(self.burst, tokens + ((self.clock() if now is None else now) - at) * self.rate)

    def _put(self, key: str, tokens: float, now: float) -> None:
        if tokens >= self.burst:
            self._buckets.pop(key, None)
        else:
            self._buckets[key] = (tokens, now)

    def take_all(self, counts: Mapping[str, int]) -> tuple[str, float] | None:
        """Take ``counts[key]`` samples from each key, all or nothing: ``None`` when granted (each
        key holding ``min(n, burst)`` tokens, from which all ``n`` are taken), else ``(key, seconds)``
        for the first key (in ``counts``' order) that cannot be admitted now and the seconds until
        it could — nothing is taken from any key then."""
        now = self.clock()
        after: list[tuple[str, float]] = []
        for key, n in counts.items():
            need, have = self._needed(n), self.level(key, now)
            if have < need:
                return key, (need - have) / self.rate
            after.append((key, have - n))
        for key, tokens in after:
            self._put(key, tokens, now)
        self._maybe_sweep(now)
        return None

    def take(self, key: str, n: int) -> float:
        """Take ``n`` samples from ``key``: 0.0 when granted, else the seconds to wait (nothing taken)."""
        refused = self.take_all({key: n})
        return 0.0 if refused is None else refused[1]

    def refund(self, key: str, n: int) -> None:
        """Give back ``n`` of the samples a take charged to ``key`` (never above a full bucket)."""
        now = self.clock()
        self._put(key, min(self.burst, self.level(key, now) + n), now)
        self._maybe_sweep(now)

    def _maybe_sweep(self, now: float) -> None:
        if len(self._buckets) < self._sweep_size and now < self._sweep_time:
            return
        full = [key for key, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        self._sweep_size = max(2 * len(self._buckets), _MIN_SWEEP)
        self._sweep_time = now + self._period
