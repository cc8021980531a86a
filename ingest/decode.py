"""Fast, columnar decoding of wire-format batches, with exactly the rules of ``zhizao.wire``.

:class:`Decoder` checks a document with the same rules as
:func:`zhizao.wire.decode_batch_lenient` but writes straight into a
:class:`~ingest.storage.base.SampleFrame` instead of building a ``Sample`` per value: msgspec
checks the document's shape in C, one Python pass checks the values (caching validated asset
paths, signal names and timestamp seconds). The fast path only ever *accepts*: the
moment anything looks wrong (envelope or any sample), the whole document is decoded again by
``decode_batch_lenient`` itself, so every rejection — and its message — is the reference one.
A differential test (``tests/ingest/test_decode.py``) checks both agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from ingest.storage.base import SampleFrame
from zhizao.errors import WireFormatError
from zhizao.model import MAX_STR_VALUE, AssetPath, valid_id, valid_signal
from zhizao.wire import FORMAT, VERSION, decode_batch_lenient, decompress

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_QUALITIES: Final = frozenset({"good", "uncertain", "bad"})
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63


@dataclass(slots=True)
class DecodedBatch:
    producer: str
    batch_id: str
    seq: int
    frame: SampleFrame
    rejected: dict[int, str]
    """``{index in the document's samples array: reason}``, as ``decode_batch_lenient`` gives it."""
    total: int
    """Number of samples in the document (accepted + rejected)."""


class _Slow(Exception):
    """Internal: leave the fast path."""


class _WireSample(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    asset: str
    signal: str
    ts: str
    value: float | int | bool | str
    unit: str | None = None
    quality: str = "good"


class _WireBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    format: str
    version: int
    producer: str
    batch_id: str
    seq: int
    samples: list[_WireSample]


_SHAPE: Final = msgspec.json.Decoder(_WireBatch)
"""Checks the document's shape in C (fields, JSON types); values are checked in :meth:`Decoder._fast`."""


class Decoder:
    """Reusable decoder keeping caches of valid asset paths, signal names and the epoch
    microseconds of timestamp seconds (all bounded)."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._assets: set[str] = set()
        self._signals: set[str] = set()
        self._seconds: dict[str, int] = {}
        self._cache_size = cache_size

    def decode(self, data: bytes, *, max_bytes: int) -> DecodedBatch:
        """Decode ``data`` (JSON, possibly gzip); raises ``WireFormatError`` for a bad envelope."""
        if len(data) > max_bytes:
            raise WireFormatError("", f"document is larger than {max_bytes} bytes")
        raw = decompress(data, max_bytes=max_bytes)
        try:
            return self._fast(raw)
        except _Slow:
            return _reference(raw, max_bytes)

    def _epoch_us(self, text: str) -> int:
        """Microseconds since the epoch of ``text``, exactly as ``zhizao.wire.parse_ts`` reads it.

        The canonical form ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (what ``zhizao.wire.format_ts``
        writes) is read from a cache of validated seconds plus six ASCII digits; anything else
        goes through ``datetime.fromisoformat``. Raises ``_Slow`` for what the reference refuses.
        """
        if len(text) == 27 and text[26] == "Z" and text[19] == ".":
            frac = text[20:26]
            if frac.isdigit() and frac.isascii():
                second = text[:19]
                base = self._seconds.get(second)
                if base is None:
                    base = self._parse(second + "Z")
                    if len(self._seconds) > self._cache_size:
                        self._seconds.clear()
                    self._seconds[second] = base
                return base + int(frac)
        return self._parse(text)

    @staticmethod
    def _parse(text: str) -> int:
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise _Slow from None
        if ts.tzinfo is None:
            raise _Slow
        return (ts - _EPOCH) // _US

    def _fast(self, raw: bytes) -> DecodedBatch:
        try:
            doc = _SHAPE.decode(raw)
        except msgspec.DecodeError:
            raise _Slow from None
        producer, batch_id, seq = doc.producer, doc.batch_id, doc.seq
        if (doc.format != FORMAT or doc.version != VERSION or not valid_id(producer) or not valid_id(batch_id)
                or seq < 0):
            raise _Slow
        if len(self._assets) > self._cache_size:
            self._assets.clear()
        if len(self._signals) > self._cache_size:
            self._signals.clear()
        f = SampleFrame()
        assets, signals = self._assets, self._signals
        a_asset, a_signal, a_ts, a_vtype = f.asset.append, f.signal.append, f.ts_us.append, f.vtype.append
        a_value, a_str = f.value.append, f.value_str.append
        a_unit, a_quality = f.unit.append, f.quality.append
        epoch_us, isfinite = self._epoch_us, math.isfinite
        for s in doc.samples:
            asset, signal, value, unit, quality = s.asset, s.signal, s.value, s.unit, s.quality
            if asset not in assets:
                try:
                    AssetPath.parse(asset)
                except ValueError:
                    raise _Slow from None
                assets.add(asset)
            if signal not in signals:
                if not valid_signal(signal):
                    raise _Slow
                signals.add(signal)
            if type(value) is float:
                if not isfinite(value):
                    raise _Slow
                a_vtype("f")
                a_value(value)
                a_str(None)
            elif type(value) is int:
                if not _INT_MIN <= value < _INT_MAX:
                    raise _Slow
                a_vtype("i")
                a_value(float(value))
                a_str(None)
            elif type(value) is bool:
                a_vtype("b")
                a_value(1.0 if value else 0.0)
                a_str(None)
            elif type(value) is str:
                if len(value) > MAX_STR_VALUE:
                    raise _Slow
                a_vtype("s")
                a_value(None)
                a_str(value)
            else:
                raise _Slow
            if (unit is not None and len(unit) > 32) or quality not in _QUALITIES:
                raise _Slow
            a_ts(epoch_us(s.ts))
            a_asset(asset)
            a_signal(signal)
            a_unit(unit)
            a_quality(quality)
        return DecodedBatch(producer, batch_id, seq, f, {}, len(doc.samples))


def _reference(raw: bytes, max_bytes: int) -> DecodedBatch:
    batch, rejected = decode_batch_lenient(raw, max_bytes=max_bytes)
    frame = SampleFrame.from_samples(batch.samples)
    return DecodedBatch(batch.producer, batch.batch_id, batch.seq, frame, rejected,
                        len(batch.samples) + len(rejected))
