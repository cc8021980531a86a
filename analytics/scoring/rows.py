"""Reading a machine's rows for live scoring: bucketed means of the model's signals and the
machine state, aligned as training aligns them, with the last known values carried across steps.

One function for every live scorer — the scoring service (``service/machine.py``) and the
one-box stack (``zhizao/stack/analytics.py``) — so what they score is the same rows.
"""

from __future__ import annotations

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
    for s in await query(q):
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
