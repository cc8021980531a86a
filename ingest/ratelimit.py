"""Per-producer token buckets counting samples (not requests)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """``rate`` samples/s per key with bursts up to ``burst``. Not thread-safe (one event loop)."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, n: int) -> float:
        """Take ``n`` tokens for ``key``: 0.0 when granted, else the seconds to wait (nothing taken)."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        need = min(float(n), self.burst)
        if tokens >= need:
            self._buckets[key] = (tokens - need, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (need - tokens) / self.rate
