"""Capped exponential backoff with full jitter, for every reconnect and retry loop."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``next()`` returns the next delay in seconds: uniform in [base/2, base], where base
    doubles from ``initial`` up to ``cap``; ``reset()`` after a success.

    Half-jitter keeps reconnect storms spread out while guaranteeing progress.
    """

    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    _attempt: int = 0

    def next(self) -> float:
        """The next delay; safe for any number of attempts (an outage may last days)."""
        base = self.cap
        # Grow only while below the cap: factor ** attempt would overflow a float after ~1,000
        # attempts, and the delay is at the cap long before that anyway.
        if self._attempt < 64:
            base = min(self.cap, self.initial * self.factor**self._attempt)
        self._attempt += 1
        return self.rng.uniform(base / 2, base)

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt
