"""The storage seam: the :class:`Store` protocol every backend implements, and its data types.

Samples travel to a store as a columnar :class:`SampleFrame` (plain Python lists, one per
column) so the write path never builds one object per sample; query results come back as
:class:`Series` holding numpy arrays, convertible to pandas without copying per point.

Value encoding (identical in every backend): ``vtype`` is ``"f"`` (float), ``"i"`` (int),
``"b"`` (bool) or ``"s"`` (str). Numbers and booleans are stored as a float64 ``value``
(booleans 0/1; integers beyond 2**53 lose precision), strings in ``value_str``.
Timestamps are integer microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator

from zhizao.events import Event, EventSource, EventState
from zhizao.model import AssetPath, Quality, Sample, Value, check_asset_prefix, valid_signal

if TYPE_CHECKING:
    import pandas as pd

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
VTYPES: Final = ("f", "i", "b", "s")


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive is taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


AssetPrefix = Annotated[str, AfterValidator(check_asset_prefix)]
"""A validated 1-4 level asset prefix, for config fields (``scopes: list[AssetPrefix]``)."""


def encode_value(value: Value) -> tuple[str, float | None, str | None]:
    """``(vtype, value, value_str)`` of one sample value."""
    if isinstance(value, bool):
        return "b", 1.0 if value else 0.0, None
    if isinstance(value, int):
        return "i", float(value), None
    if isinstance(value, float):
        return "f", value, None
    return "s", None, value


def decode_value(vtype: str, value: float | None, value_str: str | None) -> Value | None:
    """Inverse of :func:`encode_value` (``None`` when the stored value is missing)."""
    if vtype == "s":
        return value_str
    if value is None or math.isnan(value):  # NaN marks a missing aggregate
        return None
    if vtype == "b":
        return value != 0.0
    if vtype == "i" and float(value).is_integer():
        return int(value)
    return float(value)


@dataclass(slots=True)
class SampleFrame:
    """Samples as columns; all lists have the same length. Build with :meth:`from_samples`."""

    asset: list[str] = field(default_factory=list)
    signal: list[str] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)
    vtype: list[str] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    value_str: list[str | None] = field(default_factory=list)
    unit: list[str | None] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)
    runs: list[int] | None = field(default=None, compare=False)
    """Optional hint, for writers that handle a kind of point at once (line protocol heads): the
    lengths, in order, of runs of consecutive samples sharing asset, signal, vtype, unit and
    quality (not necessarily maximal; summing to ``len(self)``), or ``None`` when not known.
    Whoever changes the columns in place must drop it; :meth:`append` and :meth:`append_raw`
    do, :meth:`extend` joins two hints. Read it through :meth:`kind_runs`."""

    def __len__(self) -> int:
        return len(self.ts_us)

    def kind_runs(self) -> list[int] | None:
        """:attr:`runs` if it covers exactly the frame's samples, else ``None``."""
        runs = self.runs
        return runs if runs is not None and sum(runs) == len(self.ts_us) else None

    def append(self, s: Sample) -> None:
        vtype, num, text = encode_value(s.value)
        self.runs = None
        self.asset.append(str(s.asset))
        self.signal.append(s.signal)
        self.ts_us.append(to_us(s.ts))
        self.vtype.append(vtype)
        self.value.append(num)
        self.value_str.append(text)
        self.unit.append(s.unit)
        self.quality.append(s.quality.value)

    def append_raw(self, asset: str, signal: str, ts_us: int, value: Value, *, unit: str | None,
                   quality: str) -> None:
        """Append one already-validated value."""
        vtype, num, text = encode_value(value)
        self.runs = None
        self.asset.append(asset)
        self.signal.append(signal)
        self.ts_us.append(ts_us)
        self.vtype.append(vtype)
        self.value.append(num)
        self.value_str.append(text)
        self.unit.append(unit)
        self.quality.append(quality)

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> Self:
        frame = cls()
        for s in samples:
            frame.append(s)
        return frame

    def extend(self, other: SampleFrame) -> None:
        mine, theirs = (self.kind_runs() if len(self) else []), other.kind_runs()
        self.runs = mine + theirs if mine is not None and theirs is not None else None
        self.asset += other.asset
        self.signal += other.signal
        self.ts_us += other.ts_us
        self.vtype += other.vtype
        self.value += other.value
        self.value_str += other.value_str
        self.unit += other.unit
        self.quality += other.quality

    def take(self, positions: Sequence[int]) -> SampleFrame:
        """A new frame of the samples at ``positions`` (in that order); no run hint."""
        return SampleFrame([self.asset[i] for i in positions], [self.signal[i] for i in positions],
                           [self.ts_us[i] for i in positions], [self.vtype[i] for i in positions],
                           [self.value[i] for i in positions], [self.value_str[i] for i in positions],
                           [self.unit[i] for i in positions], [self.quality[i] for i in positions])

    def to_samples(self) -> list[Sample]:
        """Back to :class:`Sample` objects (slow; for tests and small frames)."""
        out: list[Sample] = []
        for i in range(len(self)):
            value = decode_value(self.vtype[i], self.value[i], self.value_str[i])
            assert value is not None
            out.append(Sample(AssetPath.parse(self.asset[i]), self.signal[i], from_us(self.ts_us[i]),
                              value, self.unit[i], Quality(self.quality[i])))
        return out


@dataclass(frozen=True, slots=True)
class BatchKey:
    """Identity of a batch for deduplication."""

    producer: str
    batch_id: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    """``accepted`` samples stored; ``duplicate`` when the batch was stored before (nothing written now,
    ``accepted`` is then the count recorded the first time).

    ``dropped``: ``(position in the frame, reason)`` of each sample the backend did not store
    although it stored the others (InfluxDB: its partial writes of points beyond its retention
    policy and of field type conflicts, and samples outside the time range it can store, never
    sent to it), in position
    order; ``accepted`` + ``len(dropped)`` is the frame's length. A duplicate's ``dropped`` is what
    was recorded the first time. Empty for DuckDB."""

    accepted: int
    duplicate: bool = False
    dropped: tuple[tuple[int, str], ...] = ()


class DataRefused(Exception):
    """The backend refused the data itself (InfluxDB answered 400: a point it cannot parse, or a field
    type conflict whose dropped points could not be proven): a permanent refusal — resending the
    same data can never succeed, unlike ``StoreUnavailable``. ``write`` raises it only for the
    frame at fault (a grouped write is split so that the other frames of its group are stored); the
    API answers 422 naming the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Agg(StrEnum):
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """Samples of ``asset`` (1-4 level prefix) and ``signals`` (empty = all) over ``[start, end)``.

    Raw (``agg is None``): points in time order, at most ``limit`` per series (the earliest).
    Bucketed: one point per non-empty bucket aligned to the epoch, timestamped with the bucket
    start; ``bucket`` defaults to, and is widened to, ``ceil((end - start) / limit)`` so a series
    never has more than ``limit`` points. ``mean``/``min``/``max`` apply to numbers and booleans;
    string series are aggregated with ``last`` whatever ``agg`` says (``count`` counts them).

    ``by_unit``: one series per (asset, signal, unit) — samples without a unit form their own —
    so a signal reported in two units, or whose unit changed, never mixes them (each series has
    its unit, ``limit`` applies to each); sorted by (asset, signal, unit), no unit first. Without
    it (the default, what KPIs and models read) a signal is one series whatever its units.
    """

    asset: str
    start: datetime
    end: datetime
    signals: tuple[str, ...] = ()
    agg: Agg | None = None
    bucket: timedelta | None = None
    limit: int = 100_000
    by_unit: bool = False

    def __post_init__(self) -> None:
        check_asset_prefix(self.asset)
        if self.limit < 1:
            raise ValueError("limit must be >= 1")
        bad = next((s for s in self.signals if not valid_signal(s)), None)
        if bad is not None:
            raise ValueError(f"signal: {bad!r} is not a valid signal name (letters, digits, _ . -; "
                             "starting with a letter or _; at most 128 characters)")
        if to_us(self.end) <= to_us(self.start):
            raise ValueError("end must be after start")
        if self.bucket is not None and self.bucket <= timedelta(0):
            raise ValueError("bucket must be positive")

    @property
    def start_us(self) -> int:
        return to_us(self.start)

    @property
    def end_us(self) -> int:
        return to_us(self.end)

    def bucket_us(self) -> int:
        """The effective bucket width in microseconds (bucketed queries only)."""
        span = self.end_us - self.start_us
        minimum = -(-span // self.limit)
        asked = self.bucket // timedelta(microseconds=1) if self.bucket is not None else 0
        return max(asked, minimum, 1)


@dataclass(slots=True)
class Series:
    """Points of one signal of one machine, in time order.

    ``ts_us`` int64 microseconds; ``value`` float64 (NaN where the point is a string);
    ``value_str`` object array (``None`` where numeric); ``vtype`` per point (``"f"/"i"/"b"/"s"``);
    ``quality`` per point for raw queries (``None`` for bucketed ones).
    """

    asset: str
    signal: str
    unit: str | None
    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    value_str: npt.NDArray[np.object_]
    vtype: npt.NDArray[np.str_]
    quality: npt.NDArray[np.str_] | None = None

    def __len__(self) -> int:
        return len(self.ts_us)

    @property
    def is_string(self) -> bool:
        return len(self.vtype) > 0 and bool(self.vtype[-1] == "s")

    def values(self) -> list[Value | None]:
        """Values as Python objects (bool/int/float/str) per point (as :func:`decode_value`)."""
        if len(self):
            kinds = np.unique(self.vtype)
            if len(kinds) == 1:  # one type: convert the whole array at once
                kind = str(kinds[0])
                if kind == "s":
                    out: list[Value | None] = self.value_str.tolist()
                    return out
                if not np.isnan(self.value).any():
                    if kind == "f":
                        out = self.value.tolist()
                        return out
                    if kind == "b":
                        out = (self.value != 0.0).tolist()
                        return out
                    if np.all(np.abs(self.value) < 2.0**62) and np.all(self.value == np.floor(self.value)):
                        out = self.value.astype(np.int64).tolist()
                        return out
        return [decode_value(t, v, s) for t, v, s in
                zip(self.vtype.tolist(), self.value.tolist(), self.value_str.tolist(), strict=True)]

    def timestamps(self) -> list[datetime]:
        return [from_us(u) for u in self.ts_us.tolist()]

    def iso_timestamps(self) -> list[str]:
        """RFC 3339 UTC strings like ``zhizao.wire.format_ts`` (``2026-11-23T08:00:00.250000Z``)."""
        texts = np.datetime_as_string(self.ts_us.astype("datetime64[us]"), unit="us").tolist()
        return [t + "Z" for t in texts]

    def to_pandas(self) -> pd.Series:
        """A pandas Series indexed by UTC timestamps (strings for string series, floats else)."""
        import pandas as pd

        index = pd.DatetimeIndex(self.ts_us.astype("datetime64[us]")).tz_localize("UTC")
        data: Any = self.value_str if self.is_string else self.value
        return pd.Series(data, index=index, name=self.signal)


@dataclass(frozen=True, slots=True)
class LatestValue:
    signal: str
    ts: datetime
    value: Value
    unit: str | None
    quality: Quality


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One signal of one machine: its last unit, value type and the last time a sample was seen."""

    asset: str
    signal: str
    unit: str | None
    vtype: str
    last_seen: datetime

    @property
    def path(self) -> AssetPath:
        return AssetPath.parse(self.asset)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Events whose asset is ``asset`` or below it, overlapping ``[start, end)`` (an open event
    overlaps every range after its start), filtered by ``state``/``source``, newest first."""

    asset: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    state: EventState | None = None
    source: EventSource | None = None
    limit: int = 1000


def series_order(s: Series) -> tuple[str, str, bool, str]:
    """The order of query results: asset, signal, then unit (no unit first; by code point)."""
    return s.asset, s.signal, s.unit is not None, s.unit or ""


def asset_matches(asset: str, prefix: str) -> bool:
    return asset == prefix or asset.startswith(prefix + "/")


class Store(Protocol):
    """A storage backend. One instance per process; safe to call from one event loop concurrently.

    Use as an async context manager (``async with store:``) — it opens connections and creates the
    schema on enter, flushes and closes on exit. Every method raises ``StoreUnavailable`` when the
    backend cannot be reached or is too slow; nothing is committed then.
    """

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the backend answers."""

    async def write(self, frame: SampleFrame, key: BatchKey | None = None) -> WriteResult:
        """Store ``frame``; with ``key``, at most once per key while its dedup record lives.

        Returns only after the data is durable in the backend (committed / answered 204), with
        the samples the backend stored and, in ``dropped``, those it did not store while storing
        the others (InfluxDB: points beyond its retention policy, and samples with a time it cannot
        store, never sent to it) — the exact split, never a
        guess. Raises ``StoreUnavailable`` (nothing committed, retry) or ``DataRefused`` (this
        frame's data refused for good).
        """

    async def seen(self, key: BatchKey) -> WriteResult | None:
        """The result recorded for ``key`` if that batch was stored before."""

    async def query(self, q: SeriesQuery) -> list[Series]:
        """Series matching ``q``, sorted by (asset, signal) — and unit (:func:`series_order`) with
        ``q.by_unit``."""

    async def latest(self, asset: str) -> list[LatestValue]:
        """The most recent value of each signal of machine ``asset`` (4-level path), by signal."""

    async def catalogue(self, prefix: str | None = None) -> list[CatalogueEntry]:
        """Every (asset, signal) seen (under ``prefix`` if given), sorted."""

    async def delete_before(self, cutoff: datetime) -> None:
        """Retention: delete samples with ``ts < cutoff``."""

    async def prune_dedup(self, max_age: timedelta, max_entries: int) -> None:
        """Drop dedup records older than ``max_age`` and keep at most ``max_entries`` newest."""

    async def upsert_events(self, events: Sequence[Event]) -> None:
        """Insert or replace events by ``id``."""

    async def query_events(self, q: EventQuery) -> list[Event]: ...


@runtime_checkable
class Abortable(Protocol):
    """A store that can stop a write it has not committed yet (DuckDB: its queue, and
    ``connection.interrupt()`` with a rollback for the transaction running). The service stops a
    write without a batch id (line protocol: a resend is not deduplicated) at
    ``storage.write_timeout_s`` so that its 503 "nothing was stored" is true."""

    def abort_writes(self, frames: Sequence[SampleFrame]) -> None:
        """Stop the writes of ``frames`` (the very objects passed to ``write``) where still
        possible; returns at once. Each such ``write`` call still answers its real outcome: its
        ``WriteResult`` when it committed anyway (the stop came too late), ``StoreUnavailable``
        when nothing of it was committed. Other writes that shared its transaction are not
        failed by the stop (a store retries them)."""
