"""Times given on the command line, read one way by every ``zhizao analytics`` command (and the
read API's plain dates).

``train --from/--to`` and ``kpi --from/--to/--baseline-from/--baseline-to/--at`` all accept
ISO-8601 dates and date-times, with or without an offset: ``2026-11-23`` (midnight),
``2026-11-23T06:00``, ``2026-11-23 06:00:00``, ``2026-11-23T06:00:00Z``, ``...+08:00``. Without an
offset the time is UTC. The result is always a UTC-aware ``datetime``. (The HTTP read API is
stricter: it takes RFC 3339 with an offset, or a plain date read by :func:`parse_time`, and refuses a
date-time without an offset, because a URL is usually written by a program: ``ingest/api/times.py``.)
"""

from __future__ import annotations

from datetime import UTC, datetime

TIME_HELP = "ISO-8601 date or date-time, e.g. 2026-11-23 or 2026-11-23T06:00+08:00 (UTC if no offset)"
"""The option help shared by the commands that take times."""


def parse_time(text: str) -> datetime:
    """``text`` as a UTC-aware datetime (module docstring); ``ValueError`` saying why otherwise."""
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO-8601 date or date-time: {text!r} "
                         "(e.g. 2026-11-23, 2026-11-23T06:00, 2026-11-23T06:00:00Z)") from None
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1-9999 in UTC") from None
