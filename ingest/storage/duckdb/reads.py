"""Series queries on the DuckDB file: SQL and the split of one ordered result into :class:`Series`.

Raw queries first count the points per (asset, signal) — in the same read transaction, so both
statements see one snapshot — which gives the series boundaries without fetching the asset and
signal of every row, and skips the per-series ``row_number()`` window unless a series is longer
than ``limit``. Value types and qualities travel as small integer codes and are mapped back to
strings with one numpy indexing step.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, Final

import duckdb
import numpy as np
import pyarrow as pa

from ingest.storage.base import Agg, Series, SeriesQuery

_VT: Final = "(CASE vtype WHEN 'f' THEN 0 WHEN 'i' THEN 1 WHEN 'b' THEN 2 ELSE 3 END)::UTINYINT"
_QC: Final = "(CASE quality WHEN 'good' THEN 0 WHEN 'uncertain' THEN 1 ELSE 2 END)::UTINYINT"
_VT_NAMES: Final = np.array(["f", "i", "b", "s"])
_Q_NAMES: Final = np.array(["good", "uncertain", "bad"])


def naive(ts: datetime) -> datetime:
    """``ts`` as naive UTC (the ``TIMESTAMP`` columns hold UTC)."""
    return ts.astimezone(UTC).replace(tzinfo=None)


def _where(q: SeriesQuery) -> tuple[str, list[Any]]:
    where = ["ts >= ?", "ts < ?", "(asset = ? OR starts_with(asset, ?))"]
    params: list[Any] = [naive(q.start), naive(q.end), q.asset, q.asset + "/"]
    if q.signals:
        where.append(f"signal IN ({', '.join('?' for _ in q.signals)})")
        params += list(q.signals)
    return " AND ".join(where), params


def _key(q: SeriesQuery) -> tuple[str, str]:
    """What makes one series (``GROUP BY``/``PARTITION BY``) and its order (``ORDER BY``)."""
    if q.by_unit:
        return "asset, signal, unit", "asset, signal, unit NULLS FIRST"
    return "asset, signal", "asset, signal"


def _bucket_sql(q: SeriesQuery, cond: str) -> str:
    assert q.agg is not None
    key, order = _key(q)
    b = q.bucket_us()
    # a bucket's "last" columns all from its newest row, its NULLs kept (``arg_max`` would skip
    # them: an older sample's unit for a newest one without, an older number for a newest string);
    # on equal timestamps every arg_max_null of the GROUP BY keeps the same row (schema.UPSERT_SIGNALS)
    agg = {
        Agg.MEAN: "avg(value)", Agg.MIN: "min(value)", Agg.MAX: "max(value)",
        Agg.LAST: "arg_max_null(value, ts)", Agg.COUNT: "count(*)",
    }[q.agg]
    last_vt = f"arg_max_null({_VT}, ts)"
    if q.agg is Agg.COUNT:
        vtype, vstr = "1::UTINYINT", "NULL"
    elif q.agg is Agg.MEAN:
        vtype, vstr = f"(CASE WHEN {last_vt} = 3 THEN 3 ELSE 0 END)::UTINYINT", "arg_max_null(value_str, ts)"
    else:
        vtype, vstr = last_vt, "arg_max_null(value_str, ts)"
    unit = "unit" if q.by_unit else "arg_max_null(unit, ts)"
    return (
        f"SELECT asset, signal, (epoch_us(ts) // {b}) * {b} AS t, {vtype} AS vt, {agg}::DOUBLE AS value, "
        f"{vstr} AS value_str, {unit} AS unit FROM samples WHERE {cond} "
        f"GROUP BY {key}, t "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY t) <= {int(q.limit)} "
        f"ORDER BY {order}, t")


def run_query(cur: duckdb.DuckDBPyConnection, q: SeriesQuery) -> list[Series]:
    """Run ``q`` on ``cur`` (a cursor of its own, in a worker thread); series sorted by (asset, signal)."""
    cond, params = _where(q)
    if q.agg is not None:
        table = cur.sql(_bucket_sql(q, cond), params=params).to_arrow_table()
        if table.num_rows == 0:
            return []
        assets = table.column("asset").to_numpy(zero_copy_only=False)
        signals = table.column("signal").to_numpy(zero_copy_only=False)
        new = (assets[1:] != assets[:-1]) | (signals[1:] != signals[:-1])
        if q.by_unit:
            units = table.column("unit").to_numpy(zero_copy_only=False)
            new |= units[1:] != units[:-1]
        change = np.flatnonzero(new) + 1
        starts = [0, *change.tolist()]
        groups = [(str(assets[i]), str(signals[i])) for i in starts]
        sizes = np.diff([*starts, table.num_rows]).tolist()
        return _build(table, groups, sizes, with_quality=False)
    key, order = _key(q)
    cur.execute("BEGIN TRANSACTION")  # one snapshot for the counts and the rows
    try:
        counts = cur.execute(
            f"SELECT asset, signal, count(*) FROM samples WHERE {cond} GROUP BY {key} "
            f"ORDER BY {order}", params).fetchall()
        if not counts:
            return []
        limited = any(n > q.limit for _, _, n in counts)
        qualify = (f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY ts) <= {int(q.limit)} "
                   if limited else "")
        table = cur.sql(
            f"SELECT epoch_us(ts) AS t, {_VT} AS vt, value, value_str, unit, {_QC} AS qc FROM samples "
            f"WHERE {cond} {qualify}ORDER BY {order}, t", params=params).to_arrow_table()
    finally:
        cur.execute("COMMIT")
    return _build(table, [(a, s) for a, s, _ in counts], [min(n, q.limit) for _, _, n in counts],
                  with_quality=True)


def _build(table: pa.Table, groups: list[tuple[str, str]], sizes: list[int], *, with_quality: bool
           ) -> list[Series]:
    ts = table.column("t").to_numpy().astype(np.int64)
    value = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    value_str = table.column("value_str").to_numpy(zero_copy_only=False).astype(object)
    vtype = _VT_NAMES[table.column("vt").to_numpy()]
    quality = _Q_NAMES[table.column("qc").to_numpy()] if with_quality else None
    units = table.column("unit")
    bounds = [0, *itertools.accumulate(sizes)]
    assert bounds[-1] == table.num_rows, (bounds[-1], table.num_rows)
    return [Series(asset, signal, units[hi - 1].as_py(), ts[lo:hi], value[lo:hi], value_str[lo:hi],
                   vtype[lo:hi], None if quality is None else quality[lo:hi])
            for (asset, signal), (lo, hi) in zip(groups, itertools.pairwise(bounds), strict=True)]
