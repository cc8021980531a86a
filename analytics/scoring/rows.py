"""Reading a machine's rows for live scoring: bucketed means of the model's signals and the
machine state, aligned as training aligns them, with the last known values carried across steps.

One function for every live scorer — the scoring service (``service/machine.py``) and the
one-box stack (``zhizao/stack/analytics.py``) — so what they score is the same rows:
:func:`aligned_rows` reads and aligns a step's rows; :func:`carried` corrects the values carried
into them where the catalogue shows a report the rows read do not contain (a value reported before
them, a report that arrived stamped behind them), with the small one-signal reads
:func:`buckets` and :func:`last_bucket`.

A signal reported in several units is one signal to a model — the store reads it so
(``SeriesQuery.by_unit`` off), and so was the model trained — but ingest's API answers one series
per unit: :func:`merge_units` joins them again, in time order, and says so once per machine and
signal (a WARNING naming the units), never keeping one unit's series and dropping the others'.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analytics.scoring.context import design, signal_columns, state_labels
from ingest.storage.base import Agg, Series, SeriesQuery, from_us
from zhizao import signals as sig

US: Final = 1_000_000
PROBE_BUCKETS: Final = 10_000
"""Buckets per probe request at most (well under ingest's 1,000,000 points per series)."""
_NARROWINGS: Final = 4
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
    df = pd.concat(numeric, axis=1, sort=True).reindex(columns=signals).sort_index().ffill()
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


# ---- values carried into the rows: reports the rows read do not contain ------------------------


class Reader(Protocol):
    """Where the one-signal probes read: a ``Store``, or the scoring service's ``ScoreIO``."""

    async def query(self, q: SeriesQuery) -> Sequence[Series]:
        """As ``Store.query``."""
        ...


def width_us(start_us: int, end_us: int, bucket_s: float) -> int:
    """The bucket width (µs) of a probe of ``[start_us, end_us)``: ``bucket_s``, or wider so that
    the range touches at most :data:`PROBE_BUCKETS` epoch-aligned buckets (one more than fit in
    it: the first and last may be partial) — the stores answer the *first* ``limit`` buckets, and
    the last one must be among them."""
    return max(int(bucket_s * US), -(-(end_us - start_us) // (PROBE_BUCKETS - 1)))


async def buckets(io: Reader, asset: str, signal: str, *, start_us: int, end_us: int,
                  bucket_s: float) -> Series | None:
    """The non-empty buckets (means; the last string for a string signal) of ``signal`` in
    ``[start_us, end_us)`` — ``bucket_s`` wide, or wider over a long range (:func:`width_us`);
    ``None`` when it has no data there."""
    if end_us <= start_us:
        return None
    q = SeriesQuery(asset=asset, start=from_us(start_us), end=from_us(end_us), signals=(signal,),
                    agg=Agg.MEAN, bucket=timedelta(microseconds=width_us(start_us, end_us, bucket_s)),
                    limit=PROBE_BUCKETS)
    found = [s for s in await io.query(q) if s.signal == signal and len(s)]
    return found[0] if found else None


def value_of(series: Series, i: int) -> float | str:
    """Point ``i`` of a probe answer: the string of a string series, else the number."""
    return str(series.value_str[i]) if series.is_string else float(series.value[i])


async def last_bucket(io: Reader, asset: str, signal: str, *, start_us: int, end_us: int,
                      bucket_s: float) -> tuple[int, float | str] | None:
    """The last ``bucket_s`` bucket of ``signal`` with data in ``[start_us, end_us)``: its start
    (µs; ``start_us`` when the bucket begins before it — the signal has data at or after the
    returned time, so it is a safe lower bound of its progress) and its value (:func:`value_of`).
    ``None`` when the signal has no data in the range. A long range is narrowed down to the exact
    bucket in at most four requests."""
    lo, hi = start_us, end_us
    found: tuple[int, float | str] | None = None
    for _ in range(_NARROWINGS):
        got = await buckets(io, asset, signal, start_us=lo, end_us=hi, bucket_s=bucket_s)
        if got is None:
            break
        ts = int(got.ts_us[-1])
        found = (max(lo, ts), value_of(got, -1))
        width = width_us(lo, hi, bucket_s)
        if width <= int(bucket_s * US):
            break
        lo, hi = max(lo, ts), min(hi, ts + width)
    return found


@dataclass(frozen=True)
class LateReport:
    """Reports of ``signal`` stamped behind the cursor, found by :func:`carried`: the first at
    ``first_us``, their last value ``value``; the rows already scored after them used ``carried``."""

    signal: str
    first_us: int
    carried: float | str | None
    value: float | str
    cursor_us: int


def differs(a: float | str | None, b: float | str) -> bool:
    """``b`` is another value than ``a`` (floats: beyond a relative 1e-9 — a bucket mean read
    again may differ in the last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        return not bool(np.isclose(a, b, rtol=1e-9, atol=0.0))
    return a != b


@dataclass
class Carried:
    """What :func:`carried` found: the values to hand to :func:`aligned_rows` (``carry``,
    ``carry_state``) and the late reports among them that contradict what scored rows used."""

    carry: dict[str, float] | None
    carry_state: str | None
    late: list[LateReport] = field(default_factory=list)


async def carried(io: Reader, asset: str, wanted: Sequence[str], *, last_seen: Mapping[str, int],
                  seen_before: Mapping[str, int] | None, carry: dict[str, float] | None,
                  carry_state: str | None, cursor_us: int, read_from_us: int, bucket_s: float) -> Carried:
    """The values to carry into a step's rows (:func:`aligned_rows` from ``read_from_us``): the
    previous step's ``carry`` and ``carry_state``, corrected from the store where the catalogue
    says they miss a report the rows read will not contain — what lies before ``read_from_us`` is
    read here or never.

    ``wanted``: the model signals (and ``state`` when the model uses it); ``last_seen``: their
    last-seen times (µs) in the catalogue now, ``seen_before`` the same when ``carry`` was taken
    (``None``: unknown); ``cursor_us``: where the rows already scored end (reports stamped behind
    it were not in them). Corrections:

    * a signal (or ``state``) whose last report is before ``read_from_us`` and not carried yet
      (a new machine; a value set once long ago): the value of that report;
    * one carried past its last report whose last-seen time moved since ``seen_before``: the
      reports stamped behind ``cursor_us`` that came meanwhile — the newest is carried from the
      cursor on; when one differs from the carried value it is a :class:`LateReport`.

    Values are ``bucket_s`` bucket means, as the rows read them. A signal whose last-seen time did
    not move costs no read. Raises what ``io.query`` raises.
    """
    carry = dict(carry) if carry is not None else None
    late: list[LateReport] = []
    b = int(bucket_s * US)
    for c in wanted:
        seen = last_seen.get(c)
        if seen is None:
            continue
        old: float | str | None = carry_state if c == sig.STATE else (carry or {}).get(c)
        prev = None if seen_before is None else seen_before.get(c)
        value: float | str | None = None
        if old is not None and prev is not None and seen != prev and prev < cursor_us:
            found = await buckets(io, asset, c, start_us=prev + 1, end_us=cursor_us, bucket_s=bucket_s)
            if found is None:
                continue  # every new report is at or after the cursor: read with the rows
            value = value_of(found, -1)
            if width_us(prev + 1, cursor_us, bucket_s) > b:  # a wide bucket: narrow it
                newest = await last_bucket(io, asset, c, start_us=int(found.ts_us[-1]), end_us=cursor_us,
                                           bucket_s=bucket_s)
                value = newest[1] if newest is not None else value
            contradicting = [i for i in range(len(found)) if differs(old, value_of(found, i))]
            if contradicting:
                late.append(LateReport(c, max(prev + 1, int(found.ts_us[contradicting[0]])), old, value,
                                       cursor_us))
        elif seen < read_from_us and (old is None or prev is None or seen != prev):
            got = await last_bucket(io, asset, c, start_us=seen // b * b, end_us=seen // b * b + b,
                                    bucket_s=bucket_s)
            value = None if got is None else got[1]
        if value is None:
            continue
        if c == sig.STATE:
            carry_state = str(value)
        elif isinstance(value, float):
            carry = {**(carry or {}), c: value}
    return Carried(carry, carry_state, late)
