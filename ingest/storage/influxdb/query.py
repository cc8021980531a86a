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


def series_sql(q: SeriesQuery, measurement: str) -> str:
    """The InfluxQL of ``q`` (one statement; grouped by every tag so each series comes apart)."""
    cond = [f"time >= {q.start_us * 1000}", f"time < {q.end_us * 1000}", prefix_condition(q.asset)]
    if q.signals:
        cond.append("(" + " OR ".join(f'"signal" = {quote(s)}' for s in q.signals) + ")")
    where = " AND ".join(cond)
    group = ", ".join(f'"{t}"' for t in TAGS)
    if q.agg is None:
        return (f'SELECT "value", "value_str", "vtype", "unit", "quality" FROM "{measurement}" '
                f"WHERE {where} GROUP BY {group} ORDER BY time ASC LIMIT {int(q.limit)}")
    agg = {Agg.MEAN: 'mean("value")', Agg.MIN: 'min("value")', Agg.MAX: 'max("value")',
           Agg.LAST: 'last("value")', Agg.COUNT: 'count("quality")'}[q.agg]
    return (f'SELECT {agg} AS "value", last("value_str") AS "value_str", last("vtype") AS "vtype", '
            f'last("unit") AS "unit" FROM "{measurement}" WHERE {where} '
            f"GROUP BY time({q.bucket_us()}u), {group} fill(none) LIMIT {int(q.limit)}")


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
