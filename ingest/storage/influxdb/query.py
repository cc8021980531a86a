"""InfluxQL for series queries, and parsing ``/query`` answers into :class:`Series`."""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from ingest.storage.base import Agg, Series, SeriesQuery
from zhizao.model import LEVELS, check_asset_prefix

TAGS: Final = (*LEVELS, "signal")


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def prefix_condition(prefix: str) -> str:
    """InfluxQL tag conditions selecting an asset prefix (1-4 levels)."""
    parts = check_asset_prefix(prefix).split("/")
    return " AND ".join(f'"{level}" = {quote(p)}' for level, p in zip(LEVELS, parts, strict=False))


def series_where(q: SeriesQuery) -> str:
    """The ``WHERE`` condition of ``q`` (time range, asset prefix, signals)."""
    cond = [f"time >= {q.start_us * 1000}", f"time < {q.end_us * 1000}", prefix_condition(q.asset)]
    if q.signals:
        cond.append("(" + " OR ".join(f'"signal" = {quote(s)}' for s in q.signals) + ")")
    return " AND ".join(cond)


def series_sql(q: SeriesQuery, measurement: str, where: str | None = None) -> str:
    """The InfluxQL of ``q`` (one statement; grouped by every tag so each series comes apart);
    ``where`` replaces :func:`series_where`'s condition."""
    where = series_where(q) if where is None else where
    group = ", ".join(f'"{t}"' for t in TAGS)
    if q.agg is None:
        return (f'SELECT "value", "value_str", "vtype", "unit", "quality" FROM "{measurement}" '
                f"WHERE {where} GROUP BY {group} ORDER BY time ASC LIMIT {int(q.limit)}")
    agg = {Agg.MEAN: 'mean("value")', Agg.MIN: 'min("value")', Agg.MAX: 'max("value")',
           Agg.LAST: 'last("value")', Agg.COUNT: 'count("quality")'}[q.agg]
    return (f'SELECT {agg} AS "value", last("value_str") AS "value_str", last("vtype") AS "vtype", '
            f'last("unit") AS "unit" FROM "{measurement}" WHERE {where} '
            f"GROUP BY time({q.bucket_us()}u), {group} fill(none) LIMIT {int(q.limit)}")


def units_sql(q: SeriesQuery, measurement: str) -> str:
    """Two statements telling the units of each series of ``q``: the number of points and of points
    with a unit, then the distinct units (a point without a unit has no ``unit`` field, which no
    InfluxQL condition can select: they are the difference of the two counts)."""
    where, group = series_where(q), ", ".join(f'"{t}"' for t in TAGS)
    return (f'SELECT count("quality") AS "n", count("unit") AS "with_unit" FROM "{measurement}" '
            f"WHERE {where} GROUP BY {group}; "
            f'SELECT distinct("unit") AS "unit" FROM "{measurement}" WHERE {where} GROUP BY {group}')


def series_condition(tags: dict[str, str]) -> str:
    """The tag condition selecting exactly one series (a machine's signal)."""
    return " AND ".join(f'"{t}" = {quote(tags[t])}' for t in TAGS)


def aggregate_rows(rows: list[list[Any]], agg: Agg, bucket_us: int, limit: int) -> list[list[Any]]:
    """InfluxQL's answer to :func:`series_sql`'s bucketed statement, computed from raw rows
    ``[time, value, value_str, vtype, unit, quality]`` (in time order) of one series: for the points
    of a series that no condition can select (those without a unit). Each non-empty bucket gives
    ``[start, agg of value, last value_str, last vtype, last unit]``, each ``last`` the newest non-null
    one as InfluxQL's ``last()``; the first ``limit`` buckets."""
    out: list[list[Any]] = []
    i, n = 0, len(rows)
    while i < n and len(out) < limit:
        t = rows[i][0] // bucket_us * bucket_us
        j = i
        while j < n and rows[j][0] // bucket_us * bucket_us == t:
            j += 1
        points = rows[i:j]
        numbers = [r[1] for r in points if r[1] is not None]
        value: Any
        if agg is Agg.COUNT:
            value = sum(1 for r in points if r[5] is not None)
        elif not numbers:
            value = None
        elif agg is Agg.MEAN:
            value = sum(numbers) / len(numbers)
        elif agg is Agg.MIN:
            value = min(numbers)
        elif agg is Agg.MAX:
            value = max(numbers)
        else:
            value = numbers[-1]

        def last(col: int, pts: list[list[Any]] = points) -> Any:
            return next((r[col] for r in reversed(pts) if r[col] is not None), None)

        out.append([t, value, last(2), last(3), last(4)])
        i = j
    return out


def parse_series(s: dict[str, Any], agg: Agg | None) -> Series:
    tags = s["tags"]
    cols = {c: i for i, c in enumerate(s["columns"])}
    values = [r for r in s["values"] if r[cols["value"]] is not None or r[cols["value_str"]] is not None]
    n = len(values)
    ts = np.fromiter((r[0] for r in values), np.int64, n)
    vcol, scol, tcol = cols["value"], cols["value_str"], cols["vtype"]
    value = np.array([np.nan if r[vcol] is None else r[vcol] for r in values], dtype=np.float64)
    text = np.array([r[scol] for r in values], dtype=object)
    if agg is Agg.COUNT:
        vtype = np.full(n, "i")
        text = np.full(n, None, dtype=object)
    else:
        vt = [r[tcol] or ("s" if r[scol] is not None and r[vcol] is None else "f") for r in values]
        if agg is Agg.MEAN:
            vt = ["s" if t == "s" else "f" for t in vt]
        vtype = np.array(vt, dtype=str) if n else np.array([], dtype=str)
    quality = None
    if agg is None:
        qcol = cols["quality"]
        quality = np.array([r[qcol] or "good" for r in values], dtype=str) if n else np.array([], dtype=str)
    units = [r[cols["unit"]] for r in values if r[cols["unit"]] is not None]
    return Series("/".join(tags[level] for level in LEVELS), tags["signal"], units[-1] if units else None,
                  ts, value, text, vtype, quality)
