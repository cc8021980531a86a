"""InfluxDB's partial write of points beyond a retention policy: which points it dropped.

InfluxDB 1.x answers a write holding points older than its retention policy keeps with 400
``partial write: points beyond retention policy dropped=N`` (2.x: 422 with the same words) after
storing every other point. It names no point, but which ones it drops follows from how it maps
points to shard groups (``coordinator.PointsWriter.MapShards``): a point older than ``now - the
policy's duration`` is dropped unless a shard group created or found for a *newer* point of the
same write covers its time. A covering group starts at or before the dropped point's time, so
every stored point is newer than every dropped one, and points of the same time share their
fate: **the dropped points are exactly the N oldest points of the write** — a time cut that falls
between two distinct timestamps. :func:`split_dropped` applies that rule and refuses to guess
(``None``) when the answer does not fit it (N larger than the write, or a cut between points of
the same time).

Points InfluxDB cannot store at all — a timestamp outside its range, 1677-09-21 to 2262-04-11,
which a valid batch may carry (years 1-9999) — are never sent to it: :func:`storable` takes them
out of a frame before its lines are built, and the store reports each with :data:`RANGE_REASON`
while the rest of the frame is stored and acknowledged. (Sent, such a line is skipped by influxd,
which stores the write's other points and answers ``400 partial write: unable to parse ...: time
outside range`` — or, when it also dropped points for retention, reports only those: a point
stored or not without a word.) :func:`split_dropped` still counts any such point as dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import orjson

from ingest.storage.base import DataRefused, SampleFrame

MIN_US: Final = -9_223_372_036_854_775
"""The earliest timestamp (µs) InfluxDB stores (``models.MinNanoTime``, int64 min + 2 ns)."""
MAX_US: Final = 9_223_372_036_854_775
"""The latest timestamp (µs) InfluxDB stores (``models.MaxNanoTime``, int64 max - 1 ns)."""
RETENTION_REASON: Final = ("retention: not stored — older than the store's retention policy keeps "
                           "(InfluxDB: partial write, points beyond retention policy); the batch's "
                           "other samples were stored")
RANGE_REASON: Final = ("ts: not stored — outside the time range InfluxDB stores (1677-09-21 to "
                       "2262-04-11); the batch's other samples were stored")
_PARTIAL: Final = re.compile(r"(?:[\w ]+: )?partial write: (.+?) dropped=(\d+)"
                             r"(?: for database: .* for retention policy: .*)?\s*", re.DOTALL)
"""InfluxDB's whole error for a partial write: ``partial write: <reason> dropped=N`` (influxd 1.x up
to 1.8; ``tsdb.PartialWriteError``), with `` for database: D for retention policy: R`` appended by
later 1.x releases, and after ``failure writing points to database: `` (2.x, the JSON ``message``
of its 422; ``unexpected error writing points to database: `` in early 2.0)."""

Dropped = tuple[tuple[int, str], ...]
"""``(position in the frame, reason)`` of each sample not stored, in position order."""


class BeyondRetention(DataRefused):
    """InfluxDB stored a write but ``dropped`` of its points, beyond its retention policy. A
    :class:`DataRefused` for callers that write no samples (events, dedup records): they keep
    treating it as a refusal; the sample path reads it as a partial write."""

    def __init__(self, reason: str, dropped: int) -> None:
        super().__init__(reason)
        self.dropped = dropped


def storable(frame: SampleFrame) -> tuple[SampleFrame, list[int] | None, Dropped]:
    """``frame`` without the samples InfluxDB cannot store (timestamps outside ``MIN_US``..``MAX_US``):
    ``(the frame to write, the positions in ``frame`` of its samples, the samples taken out with
    their reason)``; ``(frame, None, ())`` when every sample can be stored — the usual case, found
    by two C-level passes (``min``, ``max``)."""
    stamps = frame.ts_us
    if not stamps or (min(stamps) >= MIN_US and max(stamps) <= MAX_US):
        return frame, None, ()
    kept = [pos for pos, ts in enumerate(stamps) if MIN_US <= ts <= MAX_US]
    inside = set(kept)
    outside = tuple((pos, RANGE_REASON) for pos in range(len(stamps)) if pos not in inside)
    return frame.take(kept), kept, outside


def partial_write(message: str) -> tuple[str, int] | None:
    """``(reason, dropped)`` when ``message`` (InfluxDB's whole error) is a partial write
    (:data:`_PARTIAL`), else ``None`` — never read from inside another error (an unparsable line
    InfluxDB quotes may hold any text)."""
    found = _PARTIAL.fullmatch(message)
    return None if found is None else (found.group(1), int(found.group(2)))


def beyond_retention(message: str) -> int | None:
    """The number of points dropped when ``message`` (InfluxDB's whole error) is a partial write of
    points beyond the retention policy, else ``None``."""
    found = partial_write(message)
    return None if found is None or found[0] != "points beyond retention policy" else found[1]


def split_dropped(frames: Sequence[Sequence[int]], dropped: int) -> list[Dropped] | None:
    """Per frame (its timestamps in µs, the frames in the order their lines were written), the
    samples InfluxDB did not store when it answered ``dropped`` points beyond retention for the
    write of all of them: every point outside InfluxDB's time range, and the ``dropped`` oldest
    of the others (module docstring). ``None`` when ``dropped`` cannot be such a cut."""
    valid: list[tuple[int, int, int]] = []
    out: list[dict[int, str]] = [{} for _ in frames]
    for f, stamps in enumerate(frames):
        for pos, ts in enumerate(stamps):
            if MIN_US <= ts <= MAX_US:
                valid.append((ts, f, pos))
            else:
                out[f][pos] = RANGE_REASON
    if dropped > len(valid):
        return None
    valid.sort()
    if 0 < dropped < len(valid) and valid[dropped - 1][0] == valid[dropped][0]:
        return None
    for _, f, pos in valid[:dropped]:
        out[f][pos] = RETENTION_REASON
    return [tuple(sorted(d.items())) for d in out]


def encode_dropped(dropped: Dropped) -> str:
    """A compact text of ``dropped`` for a dedup record: JSON ``[[reason, "0-4,7"], ...]`` (the
    positions of each reason as ranges; a batch's dropped points are runs of its series)."""
    by_reason: dict[str, list[int]] = {}
    for pos, reason in dropped:
        by_reason.setdefault(reason, []).append(pos)
    doc = []
    for reason, positions in by_reason.items():
        runs: list[list[int]] = []
        for pos in positions:
            if runs and pos == runs[-1][1] + 1:
                runs[-1][1] = pos
            else:
                runs.append([pos, pos])
        doc.append([reason, ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)])
    return orjson.dumps(doc).decode()


def decode_dropped(text: str | None) -> Dropped:
    """Inverse of :func:`encode_dropped`; ``()`` for ``None`` (a record without dropped points, or
    from before they were recorded) or a text it cannot read."""
    if not text:
        return ()
    out: dict[int, str] = {}
    try:
        for reason, ranges in orjson.loads(text):
            for part in str(ranges).split(","):
                first, _, last = part.partition("-")
                for pos in range(int(first), int(last or first) + 1):
                    out[pos] = str(reason)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return ()
    return tuple(sorted(out.items()))
