"""Retry delays for loops that may retry for hours (a long WAN or server outage).

``zhizao.backoff.Backoff.next`` computes ``initial * factor ** attempts``, which overflows a float
(``OverflowError``) after about a thousand attempts — 8 minutes of an outage at a 0.5 s cap.
:func:`next_delay` keeps the attempt count where the delay is long at the cap anyway.
"""

from __future__ import annotations

from zhizao.backoff import Backoff

_MAX_ATTEMPTS = 60  # factor ** 60 is far beyond any cap


def next_delay(backoff: Backoff) -> float:
    """``backoff.next()``, safe for any number of attempts (the delay stays at the cap)."""
    if backoff.attempts > _MAX_ATTEMPTS:
        backoff._attempt = _MAX_ATTEMPTS
    return backoff.next()
