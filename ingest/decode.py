"""Fast, columnar decoding of wire-format batches, with exactly the rules of ``zhizao.wire``.

:func:`decode_frame` checks a document with the same rules as
:func:`zhizao.wire.decode_batch_lenient` but writes straight into a
:class:`~ingest.storage.base.SampleFrame` instead of building a ``Sample`` per value
(caching validated asset paths and signal names). The fast path only ever *accepts*: the
moment anything looks wrong (envelope or any sample), the whole document is decoded again by
``decode_batch_lenient`` itself, so every rejection — and its message — is the reference one.
A differential test (``tests/ingest/test_decode.py``) checks both agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from ingest.storage.base import SampleFrame
from zhizao.errors import WireFormatError
from zhizao.model import MAX_STR_VALUE, AssetPath, valid_id, valid_signal
from zhizao.wire import FORMAT, VERSION, decode_batch_lenient, decompress

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_ENVELOPE: Final = frozenset({"format", "version", "producer", "batch_id", "seq", "samples"})
_SAMPLE_KEYS: Final = frozenset({"asset", "signal", "ts", "value", "unit", "quality"})
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


class Decoder:
    """Reusable decoder keeping caches of valid asset paths and signal names (bounded)."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._assets: set[str] = set()
        self._signals: set[str] = set()
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

    def _fast(self, raw: bytes) -> DecodedBatch:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Slow from None
        if type(doc) is not dict or doc.keys() != _ENVELOPE:
            raise _Slow
        producer, batch_id, seq, samples = doc["producer"], doc["batch_id"], doc["seq"], doc["samples"]
        if (doc["format"] != FORMAT or type(doc["version"]) is not int or doc["version"] != VERSION
                or type(producer) is not str or not valid_id(producer)
                or type(batch_id) is not str or not valid_id(batch_id)
                or type(seq) is not int or seq < 0 or type(samples) is not list):
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
        fromiso, isfinite = datetime.fromisoformat, math.isfinite
        for s in samples:
            if type(s) is not dict or not s.keys() <= _SAMPLE_KEYS:
                raise _Slow
            try:
                asset, signal, ts_text, value = s["asset"], s["signal"], s["ts"], s["value"]
            except KeyError:
                raise _Slow from None
            if type(asset) is not str or type(signal) is not str:
                raise _Slow
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
            if type(ts_text) is not str:
                raise _Slow
            try:
                ts = fromiso(ts_text)
            except ValueError:
                raise _Slow from None
            if ts.tzinfo is None:
                raise _Slow
            vt = type(value)
            if vt is float:
                if not isfinite(value):
                    raise _Slow
                a_vtype("f")
                a_value(value)
                a_str(None)
            elif vt is int:
                if not _INT_MIN <= value < _INT_MAX:
                    raise _Slow
                a_vtype("i")
                a_value(float(value))
                a_str(None)
            elif vt is bool:
                a_vtype("b")
                a_value(1.0 if value else 0.0)
                a_str(None)
            elif vt is str:
                if len(value) > MAX_STR_VALUE:
                    raise _Slow
                a_vtype("s")
                a_value(None)
                a_str(value)
            else:
                raise _Slow
            unit = s.get("unit")
            if unit is not None and (type(unit) is not str or len(unit) > 32):
                raise _Slow
            quality = s.get("quality", "good")
            if type(quality) is not str or quality not in _QUALITIES:
                raise _Slow
            a_asset(asset)
            a_signal(signal)
            a_ts((ts - _EPOCH) // _US)
            a_unit(unit)
            a_quality(quality)
        return DecodedBatch(producer, batch_id, seq, f, {}, len(samples))


def _reference(raw: bytes, max_bytes: int) -> DecodedBatch:
    batch, rejected = decode_batch_lenient(raw, max_bytes=max_bytes)
    frame = SampleFrame.from_samples(batch.samples)
    return DecodedBatch(batch.producer, batch.batch_id, batch.seq, frame, rejected,
                        len(batch.samples) + len(rejected))
