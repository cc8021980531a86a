"""Machine state over time: zero-order hold of the ``state`` / ``state_reason`` samples.

The value of a sample holds until the next sample, clipped to the window, but for at most
``max_hold_s`` (the data-quality gap threshold): a machine that stops reporting is not assumed to
keep its last state through the silence, so the time beyond the threshold after a sample that no
other sample follows in time — a telemetry gap, the end of the data, the future — is *unknown*,
as is the time before the first sample (counted, flagged, never guessed). Because a sample older
than ``max_hold_s`` decides nothing, a window's states do not depend on how far before it the
data were read (as long as the reader's look-back is at least ``max_hold_s``). Outside planned
time the machine is ``off`` by definition, whatever it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from analytics.kpi.series import FloatArray, Series
from zhizao.signals import MachineState

STATE_NAMES: Final = tuple(s.value for s in MachineState)  # running idle setup down off
RUNNING, IDLE, SETUP, DOWN, OFF = range(5)
UNKNOWN: Final = 5
NAMES_WITH_UNKNOWN: Final = (*STATE_NAMES, "unknown")


def state_codes(series: Series) -> NDArray[np.int64]:
    """Codes 0..4 of the state names (``unknown`` for any other string)."""
    if len(series) == 0:
        return np.empty(0, np.int64)
    labels, inverse = np.unique(series.values.astype(str), return_inverse=True)
    lut = np.array([STATE_NAMES.index(x) if x in STATE_NAMES else UNKNOWN for x in labels], np.int64)
    return lut[inverse.reshape(-1)]


def hold(ts: FloatArray, at: FloatArray) -> NDArray[np.int64]:
    """Index of the sample in effect at each time of ``at`` (-1 before the first sample)."""
    return np.searchsorted(ts, at, "right").astype(np.int64) - 1


def planned_mask(starts: FloatArray, planned: list[tuple[float, float]]) -> NDArray[np.bool_]:
    """True where a segment starting at ``starts`` lies in planned time (segments never straddle
    a planned edge because the edges are cut points)."""
    if not planned:
        return np.zeros(starts.shape, bool)
    edges = np.array([x for iv in planned for x in iv], np.float64)
    inside: NDArray[np.bool_] = (np.searchsorted(edges, starts, "right") % 2) == 1
    return inside


@dataclass(frozen=True, slots=True)
class Segments:
    """Elementary intervals ``[edges[i], edges[i+1])`` of constant state, reason and planned flag."""

    edges: FloatArray
    state: NDArray[np.int64]
    """0..4 as :data:`STATE_NAMES`, 5 unknown; forced to ``off`` outside planned time."""
    reason: NDArray[np.object_]
    planned: NDArray[np.bool_]

    @property
    def durations(self) -> FloatArray:
        return np.diff(self.edges)


def segments(
    state: Series, reason: Series, start: float, end: float, *,
    planned: list[tuple[float, float]], cuts: FloatArray | None = None, max_hold_s: float | None = None,
) -> Segments:
    """Cut ``[start, end)`` at every state/reason change, planned edge and extra ``cuts``; with
    ``max_hold_s``, a state sample holds for at most that long (then *unknown* until the next)."""
    pts = [np.array([start, end]), state.ts, reason.ts, np.array([x for iv in planned for x in iv])]
    if cuts is not None:
        pts.append(cuts)
    expiry = _expiries(state.ts, max_hold_s)
    pts.append(expiry)
    edges = np.unique(np.concatenate(pts))
    edges = edges[(edges >= start) & (edges <= end)]
    starts = edges[:-1]
    codes = state_codes(state)
    i = hold(state.ts, starts)
    st = np.where(i >= 0, codes[np.maximum(i, 0)] if len(codes) else UNKNOWN, UNKNOWN)
    if max_hold_s is not None and len(codes):
        # Held longer than the gap threshold: the machine went silent, its state is unknown.
        stale = (i >= 0) & (starts - state.ts[np.maximum(i, 0)] >= max_hold_s)
        st = np.where(stale, UNKNOWN, st)
    j = hold(reason.ts, starts)
    rs = (reason.values[np.maximum(j, 0)].astype(str).astype(object) if len(reason)
          else np.full(starts.shape, "", object))
    rs = np.where(j >= 0, rs, "")
    pm = planned_mask(starts, planned)
    st = np.where(pm, st, OFF)
    return Segments(edges, st.astype(np.int64), rs.astype(object), pm)


def _expiries(ts: FloatArray, max_hold_s: float | None) -> FloatArray:
    """Times at which a state sample stops holding: ``max_hold_s`` after a sample that no other
    sample follows within that time."""
    if max_hold_s is None or len(ts) == 0:
        return np.empty(0, np.float64)
    nxt = np.concatenate((ts[1:], [np.inf]))
    out: FloatArray = ts[nxt - ts > max_hold_s] + max_hold_s
    return out


def down_entries(state: Series) -> FloatArray:
    """Times at which the machine entered ``down`` from another state (first sample included
    when it is ``down``: its previous state is unknown)."""
    codes = state_codes(state)
    if len(codes) == 0:
        return np.empty(0, np.float64)
    prev = np.concatenate(([-1], codes[:-1]))
    out: FloatArray = state.ts[(codes == DOWN) & (prev != DOWN)]
    return out
