"""The CSV scorer's time column: which one, and its text as seconds (:mod:`analytics.scoring.csv_scorer`).

A time column holds one form of time throughout, decided by its first value: **numbers** (seconds:
epoch or any numeric clock), **ISO-8601** date/times (``2026-01-01T06:00:00Z``, ``2026-01-01
06:00:00+08:00``, ``2026-01-01``; no offset = UTC), or, with ``time_format``, that strftime format
(``%d/%m/%Y %H:%M:%S``; no ``%z`` = UTC). Nothing is guessed value by value: ``01/02/2026`` is not
read as January or February by the look of its neighbours; a value that is not of the column's
form is an error naming the column, the file line, the value and ``--time-format``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analytics.detectors.base import FloatArray
from analytics.errors import DataError

TIME_NAMES = ("timestamp", "time", "datetime", "date", "ts", "_time")


def time_columns(option: str | None, header: Sequence[str]) -> list[str] | None:
    """The columns ``--time-col`` names (``Date,Time``: several, joined by a space), checked
    against the header; None without the option."""
    if option is None:
        return None
    names = [option] if option in header else [c.strip() for c in option.split(",")]
    missing = [c for c in names if c not in header]
    if missing or not names:
        raise DataError("--time-col", f"no column {', '.join(map(repr, missing)) or repr(option)}; "
                                      f"columns are {list(header)}")
    if len(set(names)) != len(names):
        raise DataError("--time-col", f"names a column twice: {option!r}")
    return names


def pick_time_column(header: Sequence[str], first: pd.DataFrame, where: str) -> str:
    """Without ``--time-col``: the column named as in :data:`TIME_NAMES`, else the first column
    if its first values are ISO-8601 date/times (a leading column of numbers is never taken)."""
    for c in header:
        if c.strip().lower() in TIME_NAMES:
            return c
    name = header[0]
    text = first[name].str.strip()
    head = text[text != ""].head(5)
    numeric = pd.to_numeric(head, errors="coerce").notna().any()
    if len(head) and not numeric and pd.to_datetime(head, errors="coerce", utc=True,
                                                    format="ISO8601").notna().all():
        return name
    sample = head.iloc[0] if len(head) else ""
    raise DataError(where, f"no time column: none is named {'/'.join(TIME_NAMES)} and the first column "
                           f"{name!r} does not hold ISO-8601 date/times (first value {sample!r}); "
                           "name the time column with --time-col C (numbers there are read as "
                           "seconds), or pass --no-time to score the rows in file order with the "
                           "row index as time")


def other_time_names(header: Sequence[str], chosen: Sequence[str]) -> list[str]:
    """Columns besides ``chosen`` named like a time column (``Time`` beside ``Date``)."""
    return [c for c in header if c not in chosen and c.strip().lower() in TIME_NAMES]


class TimeParser:
    """Seconds from a time column's text, in one form decided by the column's first value."""

    def __init__(self, columns: Sequence[str], time_format: str | None = None) -> None:
        self.columns = list(columns)
        self.name = ",".join(self.columns)
        self.time_format = time_format
        self.kind: str | None = "format" if time_format else None
        """``number``, ``iso`` or ``format``; None until the first value is seen."""
        self.date_only = True
        """No value so far had a time of day (no ``:``) — a date column beside a time column."""

    def text(self, frame: pd.DataFrame) -> pd.Series:
        """The time text of each row (several columns joined by a space)."""
        text = frame[self.columns[0]]
        for c in self.columns[1:]:
            text = text + " " + frame[c]
        return text

    def seconds(self, text: pd.Series, lines: NDArray[np.int64]) -> FloatArray:
        """Seconds since the epoch (numbers as they are); an error names the first bad value."""
        stripped = text.str.strip()
        if self.kind is None:
            first = stripped.iloc[0]
            self.kind = "number" if first and pd.notna(pd.to_numeric(first, errors="coerce")) else "iso"
        if self.kind == "number":
            num = pd.to_numeric(stripped, errors="coerce")
            self._check(num.isna().to_numpy(), text, lines)
            return np.asarray(num.to_numpy(dtype=np.float64), dtype=np.float64)
        if self.date_only:
            self.date_only = not stripped.str.contains(":", regex=False).any()
        fmt = "ISO8601" if self.kind == "iso" else self.time_format
        parsed = pd.to_datetime(stripped, errors="coerce", utc=True, format=fmt)
        self._check(parsed.isna().to_numpy(), text, lines)
        secs = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64) / 1e6
        return np.asarray(secs, dtype=np.float64)

    def _check(self, bad: NDArray[np.bool_], text: pd.Series, lines: NDArray[np.int64]) -> None:
        if not bad.any():
            return
        i = int(np.flatnonzero(bad)[0])
        value, line = text.iloc[i], int(lines[i])
        where = f"column {self.name!r}"
        if not value.strip():
            raise DataError(where, f"empty timestamp on line {line}")
        if self.kind == "number":
            raise DataError(where, f"timestamp {value!r} on line {line} is not a number, as the column's "
                                   "first value is (seconds)")
        if self.kind == "format":
            raise DataError(where, f"timestamp {value!r} on line {line} does not match --time-format "
                                   f"{self.time_format!r}")
        raise DataError(where, f"timestamp {value!r} on line {line} is neither ISO-8601 "
                               f"(2026-01-01T06:00:00Z) nor a number; other forms need --time-format, "
                               f"a strftime format{_suggest(value.strip())}")


def _suggest(value: str) -> str:
    """``, e.g. --time-format '%d/%m/%Y %H:%M:%S' (day first) or ...`` when pandas can guess the
    value's layout; both readings when day and month could be either."""
    from pandas.tseries.api import guess_datetime_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        day, month = (guess_datetime_format(value, dayfirst=d) for d in (True, False))
    if day and month and day != month:
        return f", e.g. --time-format '{day}' (day first) or '{month}' (month first)"
    if day or month:
        return f", e.g. --time-format '{day or month}'"
    return ""
