"""Small reads of one signal for the scoring service's watermark and carried values (:mod:`.machine`).

The catalogue gives each signal's newest timestamp only. The worker sometimes needs more, and
reads it here with bucketed queries (``bucket_s`` means, as :func:`~analytics.scoring.rows.aligned_rows`
reads rows, so a value found here is the value a row would carry):

* :func:`last_bucket` — the last bucket with data in a range: the progress of a signal whose
  newest data is stamped in the future (its data up to the horizon), and the value of a signal's
  last report older than the rows read (a value to carry forward);
* :func:`buckets` — the bucket means of a signal in a range (reports that arrived behind the cursor).

Each answer is bounded: at most :data:`PROBE_BUCKETS` buckets per request, wider buckets over a
longer range (epoch-aligned, as the stores align them), narrowed in a few more requests where
the exact bucket is needed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from analytics.scoring.service.source import ScoreIO
from ingest.storage.base import Agg, Series, SeriesQuery, from_us

US: Final = 1_000_000
PROBE_BUCKETS: Final = 10_000
"""Buckets per probe request at most (well under ingest's 1,000,000 points per series)."""
_NARROWINGS: Final = 4


def width_us(start_us: int, end_us: int, bucket_s: float) -> int:
    """The bucket width (µs) of a probe of ``[start_us, end_us)``: ``bucket_s``, or wider so that
    the range touches at most :data:`PROBE_BUCKETS` epoch-aligned buckets (one more than fit in
    it: the first and last may be partial) — the stores answer the *first* ``limit`` buckets, and
    the last one must be among them."""
    return max(int(bucket_s * US), -(-(end_us - start_us) // (PROBE_BUCKETS - 1)))


async def buckets(io: ScoreIO, asset: str, signal: str, *, start_us: int, end_us: int,
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


async def last_bucket(io: ScoreIO, asset: str, signal: str, *, start_us: int, end_us: int,
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
