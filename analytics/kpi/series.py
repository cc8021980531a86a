"""Columnar telemetry of one machine, as the KPI engine consumes it.

A :class:`Series` is one signal's samples in time order: ``ts`` in float epoch seconds (UTC) and
``values`` (float64 for numbers, object for strings). Samples whose quality is ``bad`` are not
in ``values`` (they carry no trustworthy value); their times are kept in ``bad_ts`` so the KPI
that used the signal can say so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zhizao.model import Quality, Sample

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Series:
    """One signal's samples, sorted by ``ts`` (float epoch seconds)."""

    ts: FloatArray
    values: NDArray[Any]
    bad_ts: FloatArray = field(default_factory=lambda: np.empty(0, np.float64))
    """Times of the bad-quality samples left out of ``ts``/``values``."""

    @classmethod
    def empty(cls, *, text: bool = False) -> Series:
        return cls(np.empty(0, np.float64), np.empty(0, object if text else np.float64))

    @classmethod
    def of(cls, ts: Iterable[float], values: Iterable[Any], bad_ts: Iterable[float] = ()) -> Series:
        """Build from Python sequences; sorts by time (stable, so same-ts order is kept)."""
        t = np.asarray(list(ts), dtype=np.float64)
        vals = list(values)
        v = np.asarray(vals, dtype=object if any(isinstance(x, str) for x in vals) else np.float64)
        order = np.argsort(t, kind="stable")
        return cls(t[order], v[order], np.sort(np.asarray(list(bad_ts), np.float64)))

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def shifted(self, offset_s: float) -> Series:
        """The same samples with every timestamp moved by ``offset_s``."""
        return Series(self.ts + offset_s, self.values, self.bad_ts + offset_s)


@dataclass(slots=True)
class MachineData:
    """Every fetched signal of one machine (missing signals read as empty series)."""

    asset: str
    signals: dict[str, Series] = field(default_factory=dict)
    coverage: dict[str, FloatArray] = field(default_factory=dict)
    """Other signals of the machine: start times of the buckets (``coverage_bucket_s``) holding at
    least one sample, so a dropout of any signal is flagged without reading every point."""

    def get(self, signal: str, *, text: bool = False) -> Series:
        return self.signals.get(signal) or Series.empty(text=text)

    def shifted(self, offset_s: float) -> MachineData:
        return MachineData(self.asset, {k: s.shifted(offset_s) for k, s in self.signals.items()},
                           {k: t + offset_s for k, t in self.coverage.items()})


def epoch(ts: datetime) -> float:
    """Float epoch seconds of an aware datetime."""
    return ts.timestamp()


def from_samples(samples: Iterable[Sample], signals: Iterable[str] | None = None) -> dict[str, MachineData]:
    """Group samples by machine and signal into columnar series (bad-quality samples counted, not kept)."""
    wanted = None if signals is None else set(signals)
    cols: dict[tuple[str, str], tuple[list[float], list[Any]]] = defaultdict(lambda: ([], []))
    bad: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in samples:
        if wanted is not None and s.signal not in wanted:
            continue
        key = (str(s.asset), s.signal)
        if s.quality is Quality.BAD:
            bad[key].append(s.ts.timestamp())
            cols[key]
            continue
        ts, vals = cols[key]
        ts.append(s.ts.timestamp())
        vals.append(s.value)
    out: dict[str, MachineData] = {}
    for (asset, signal), (ts, vals) in cols.items():
        out.setdefault(asset, MachineData(asset)).signals[signal] = Series.of(ts, vals, bad[(asset, signal)])
    return out


def merge(parts: Mapping[str, MachineData], more: Mapping[str, MachineData]) -> dict[str, MachineData]:
    """Union of two fetch results (used when signals are fetched in several queries)."""
    out = {k: MachineData(k, dict(v.signals)) for k, v in parts.items()}
    for k, v in more.items():
        out.setdefault(k, MachineData(k)).signals.update(v.signals)
    return out
