"""Times in the read API's query strings (``start``/``end`` of ``/api/v1/series`` and
``/api/v1/events``), read as the command line reads them where the two can agree.

Accepted: RFC 3339 with an offset (``2026-11-23T08:00:00Z``, ``2026-11-23T08:00+08:00``), what
pydantic reads as such (epoch seconds too), and a **plain date** ``2026-11-23``, which is midnight
UTC — exactly what ``zhizao analytics ... --from 2026-11-23`` means (the date goes through the
CLI's own parser, :func:`zhizao.timeargs.parse_time`, not a copy). A date-time without an offset
(``2026-11-23T08:00``) is refused, 422: in a URL it is usually a program's mistake, and the hint
says what works (``Z`` appended, or the plain date).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import BeforeValidator

from ingest.problems import Problem
from zhizao.timeargs import parse_time

_PLAIN_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
NAIVE_HINT: Final = ("timestamp has no UTC offset; append 'Z' for UTC (2026-11-23T08:00:00Z) or give a "
                     "plain date (2026-11-23, midnight UTC)")
"""The answer to a date-time without an offset: both forms it names are accepted."""


def _plain_date(value: object) -> object:
    """A plain ``YYYY-MM-DD`` string as midnight UTC (the CLI's reading); anything else unchanged,
    for pydantic's datetime parsing."""
    if isinstance(value, str) and _PLAIN_DATE.fullmatch(value.strip()):
        try:
            return parse_time(value)
        except ValueError:
            return value  # 2026-13-45: pydantic's own message names what is wrong
    return value


QueryTime = Annotated[datetime, BeforeValidator(_plain_date)]
"""A query-string time (module docstring); check it with :func:`aware`."""


def aware(ts: datetime, name: str) -> datetime:
    """``ts`` in UTC; 422 naming ``name`` when it has no offset or lies outside 1970-2262 (what
    the stores can hold)."""
    if ts.tzinfo is None:
        raise Problem(422, f"{name}: {NAIVE_HINT}", reason="bad_query")
    if not datetime(1970, 1, 1, tzinfo=UTC) <= ts <= datetime(2262, 1, 1, tzinfo=UTC):
        raise Problem(422, f"{name}: must be between 1970 and 2262", reason="bad_query")
    return ts.astimezone(UTC)
