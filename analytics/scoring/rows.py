"""Reading a machine's rows for live scoring: bucketed means of the model's signals and the
machine state, aligned as training aligns them, with the last known values carried across steps.

One function for every live scorer — the scoring service (``service/machine.py``) and the
one-box stack (``zhizao/stack/analytics.py``) — so what they score is the same rows.

A signal reported in several units is one signal to a model — the store reads it so
(``SeriesQuery.by_unit`` off), and so was the model trained — but ingest's API answers one series
per unit: :func:`merge_units` joins them again, in time order, and says so once per machine and
signal (a WARNING naming the units), never keeping one unit's series and dropping the others'.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analytics.scoring.context import design, signal_columns, state_labels
from ingest.storage.base import Agg, Series, SeriesQuery, from_us
from zhizao import signals as sig

US = 1_000_000
log = logging.getLogger(__name__)
_WARNED: dict[tuple[str, str], set[str | None]] = {}
"""Units already named in a warning, per (machine, signal): one WARNING each, again only for a new unit."""


def merge_units(series: Sequence[Series], agg: Agg | None) -> list[Series]:
    """``series`` with the several series of one (asset, signal) — one per unit, as ingest's
    ``GET /api/v1/series`` answers — merged into one, in time order: what ``Store.query`` answers
    without ``by_unit``. Raw points are interleaved; buckets of the same time (the unit changed
    within one) are combined by ``agg`` — ``mean`` the unweighted mean of the units' means, ``min``,
    ``max``, ``count`` summed, ``last`` the last unit's. The merged series carries the unit of its
    newest point. Logs a WARNING naming the units, once per (asset, signal) and unit set."""
    groups: dict[tuple[str, str], list[Series]] = {}
    for s in series:
        groups.setdefault((s.asset, s.signal), []).append(s)
    out: list[Series] = []
    for (asset, signal), found in groups.items():
        parts = [p for p in found if len(p)]
        if len(parts) <= 1:
            out.extend(parts or found[:1])
            continue
        units = [p.unit for p in parts]
        warned = _WARNED.setdefault((asset, signal), set())
        if not set(units) <= warned:
            warned.update(units)
            named = ", ".join("(none)" if u is None else repr(u) for u in units)
            log.warning("%s: signal %s comes in %d units (%s); scored as one signal, its points merged in "
                        "time order — if the units differ in meaning, fix the unit where it is reported",
                        asset, signal, len(units), named)
        out.append(_merge(parts, agg))
    return out


def _merge(parts: list[Series], agg: Agg | None) -> Series:
    ts = np.concatenate([p.ts_us for p in parts])
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    value = np.concatenate([p.value for p in parts])[order]
    text = np.concatenate([p.value_str for p in parts])[order]
    vtype = np.concatenate([p.vtype for p in parts])[order]
    quality = (None if any(p.quality is None for p in parts)
               else np.concatenate([p.quality for p in parts if p.quality is not None])[order])
    newest = max(parts, key=lambda p: int(p.ts_us[-1]))
    if agg is not None and len(ts) > 1 and bool((ts[1:] == ts[:-1]).any()):
        starts = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]])
        ends = np.r_[starts[1:], len(ts)]
        merged = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            merged.append(_combine(value[a:b], agg))
        ts, value = ts[starts], np.asarray(merged, dtype=np.float64)
        text, vtype = text[ends - 1], vtype[ends - 1]
        quality = None if quality is None else quality[ends - 1]
    return Series(newest.asset, newest.signal, newest.unit, ts, value, text, vtype, quality)


def _combine(values: NDArray[np.float64], agg: Agg) -> float:
    """One bucket's aggregate from the units' aggregates of it (NaN: a unit's bucket of strings)."""
    known = values[~np.isnan(values)]
    if len(values) == 1 or not len(known) or agg is Agg.LAST:
        return float(values[-1])
    if agg is Agg.MIN:
        return float(known.min())
    if agg is Agg.MAX:
        return float(known.max())
    if agg is Agg.COUNT:
        return float(known.sum())
    return float(known.mean())


@dataclass
class Rows:
    """One step's rows: ``ts`` (n,) µs, ``values`` (n, columns), ``running`` (n,) or ``None`` (the
    machine publishes no state: every row counts), ``state`` (n,) the machine state per row
    (``None`` where unknown, or no array when it never reported one), and what to carry into the
    next step."""

    ts: NDArray[np.int64]
    values: NDArray[np.float64]
    running: NDArray[np.bool_] | None
    carry: dict[str, float] | None
    carry_state: str | None
    state: NDArray[np.object_] | None = None


async def aligned_rows(query: Callable[[SeriesQuery], Awaitable[Sequence[Series]]], asset: str,
                       columns: Sequence[str], *, start_us: int, end_us: int, read_from_us: int,
                       bucket_s: float, carry: dict[str, float] | None, carry_state: str | None,
                       max_buckets: int = 1_000_000) -> Rows:
    """Rows with ``start_us <= ts < end_us``, every model column known.

    ``columns`` are a model's columns: stored signals, and ``state=<s>`` one-hot columns built from
    the forward-filled state (:func:`analytics.scoring.context.design`). Reads
    ``[read_from_us, end_us)`` as ``bucket_s`` means (at most ``max_buckets`` of them) with
    ``query``, forward-fills each signal — from ``carry`` (each signal's last value of the
    previous step) where nothing was read before a row — and drops rows a signal is still
    unknown in. ``running`` and ``state`` follow the state reports, forward-filled from
    ``carry_state``; ``running`` is ``None`` when the machine never reported a state. The returned
    ``carry``/``carry_state`` are the values to hand to the next step.
    """
    signals = signal_columns(columns)
    q = SeriesQuery(asset=asset, start=from_us(read_from_us), end=from_us(end_us),
                    signals=(*signals, sig.STATE), agg=Agg.MEAN, bucket=timedelta(seconds=bucket_s),
                    limit=min(max_buckets, (end_us - read_from_us) // int(bucket_s * US) + 1))
    numeric: dict[str, pd.Series] = {}
    state: pd.Series | None = None
    for s in merge_units(await query(q), q.agg):
        if s.signal == sig.STATE:
            state = s.to_pandas()
        elif s.signal in signals and not s.is_string:
            numeric[s.signal] = s.to_pandas().astype(float)
    out = Rows(ts=np.empty(0, dtype=np.int64), values=np.empty((0, len(columns))), running=None,
               carry=carry, carry_state=carry_state)
    if state is not None and len(state):
        out.carry_state = str(state.iloc[-1])
    if not numeric:
        return out
    df = pd.concat(numeric, axis=1).reindex(columns=signals).sort_index().ffill()
    if carry is not None:
        df = df.fillna(pd.Series({c: carry[c] for c in signals if c in carry}, dtype=np.float64))
    df = df.dropna()
    if df.empty:
        return out
    out.carry = {c: float(v) for c, v in zip(signals, df.iloc[-1].tolist(), strict=True)}
    df = df[df.index >= pd.Timestamp(start_us, unit="us", tz="UTC")]
    if df.empty:
        return out
    if state is not None and len(state):
        known = state.sort_index().reindex(df.index, method="ffill")
        if carry_state is not None:
            known = known.fillna(carry_state)
        out.state = state_labels(known)
    elif carry_state is not None:
        out.state = np.full(len(df), carry_state, dtype=object)
    if out.state is not None:
        out.running = out.state == sig.MachineState.RUNNING.value
    out.ts = df.index.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    out.values = design(columns, signals, df.to_numpy(dtype=np.float64), out.state)
    return out
