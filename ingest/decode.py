"""Fast, columnar decoding of wire-format batches, with exactly the rules of ``zhizao.wire``.

:class:`Decoder` checks a document with the same rules as
:func:`zhizao.wire.decode_batch_lenient` but writes straight into a
:class:`~ingest.storage.base.SampleFrame` instead of building a ``Sample`` per value: msgspec
checks the document's shape in C, then the columns are built by list comprehensions and the
rules checked once per distinct value (caching validated asset paths and signal names). A
column of canonical timestamps is read at once with numpy (:mod:`zhizao.stamps`), a short or
odd one per stamp from a cache of validated seconds; a timestamp shared by several signals of a
tick is read once. Values are converted only on their non-float rows. The fast path only ever
*accepts*: the moment anything looks wrong (envelope or any sample), the whole document is
decoded again by ``decode_batch_lenient`` itself, so every rejection — and its message — is the
reference one. A differential test (``tests/ingest/test_decode.py``) checks both agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import compress, count, repeat
from operator import is_
from typing import Final, cast

import msgspec

from ingest.storage.base import SampleFrame, to_us
from zhizao.errors import WireFormatError
from zhizao.model import MAX_STR_VALUE, AssetPath, valid_id, valid_signal
from zhizao.stamps import canonical_epoch_us
from zhizao.wire import FORMAT, VERSION, decode_batch_lenient, decompress, parse_ts

_QUALITIES: Final = frozenset({"good", "uncertain", "bad"})
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63
_FLOAT_ONLY: Final = frozenset({float})
_VTYPE: Final = {float: "f", int: "i", bool: "b", str: "s"}
_VECTOR_MIN: Final = 48
"""From this many timestamps on, numpy reads them faster than one cached parse each (measured)."""


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

    def _stamps_us(self, stamps: list[str]) -> list[int]:
        """Epoch microseconds of every stamp: all at once with numpy when every stamp is
        canonical (what zhizao's agents and gateways write), else one by one; raises ``_Slow``
        for what the reference refuses."""
        if len(set(stamps[:16])) * 2 <= min(len(stamps), 16):
            # several signals per tick (what agents send): each distinct timestamp read once
            distinct = list(set(stamps))
            us_of = dict(zip(distinct, self._read(distinct), strict=True))
            return list(map(us_of.__getitem__, stamps))
        return self._read(stamps)

    def _read(self, stamps: list[str]) -> list[int]:
        if len(stamps) >= _VECTOR_MIN:
            read = canonical_epoch_us(stamps)
            if read is not None:
                values: list[int] = read.tolist()
                return values
        return list(map(self._epoch_us, stamps))

    @staticmethod
    def _parse(text: str) -> int:
        try:
            return to_us(parse_ts(text))
        except ValueError:
            raise _Slow from None

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
        # Column by column: the columns are list comprehensions (C-level loops) and the rules are
        # checked once per distinct value — a batch repeats its assets, signals, units, qualities
        # and (several signals per tick) its timestamps.
        samples = doc.samples
        assets = [s.asset for s in samples]
        signals = [s.signal for s in samples]
        stamps = [s.ts for s in samples]
        values = [s.value for s in samples]
        units = [s.unit for s in samples]
        qualities = [s.quality for s in samples]
        for asset in set(assets) - self._assets:
            try:
                AssetPath.parse(asset)
            except ValueError:
                raise _Slow from None
            self._assets.add(asset)
        for signal in set(signals) - self._signals:
            if not valid_signal(signal):
                raise _Slow
            self._signals.add(signal)
        if not _QUALITIES.issuperset(qualities):
            raise _Slow
        for unit in set(units):
            if unit is not None and len(unit) > 32:
                raise _Slow
        ts_us = self._stamps_us(stamps)
        types = list(map(type, values))
        kinds = set(types)
        n = len(values)
        if kinds == _FLOAT_ONLY:
            if not all(map(math.isfinite, cast(list[float], values))):
                raise _Slow
            vtype: list[str] = ["f"] * n
            numbers = cast(list[float | None], values)
            texts: list[str | None] = [None] * n
        else:
            # the columns start as copies and only the non-float rows are visited (C-level
            # iterators pick them: ``compress`` over "is this row's type T")
            def of(kind: type) -> Iterator[int]:
                return compress(count(), map(is_, types, repeat(kind)))

            finite = map(math.isfinite, compress(cast(list[float], values), map(is_, types, repeat(float))))
            if float in kinds and not all(finite):
                raise _Slow
            vtype = list(map(_VTYPE.__getitem__, types))
            numbers = list(values)  # type: ignore[arg-type]
            texts = [None] * n
            for i in of(int):
                v = values[i]
                if not _INT_MIN <= v < _INT_MAX:  # type: ignore[operator]
                    raise _Slow
                numbers[i] = float(v)
            for i in of(bool):
                numbers[i] = float(values[i])
            for i in of(str):
                text = texts[i] = values[i]  # type: ignore[assignment]
                if len(text) > MAX_STR_VALUE:  # type: ignore[arg-type]
                    raise _Slow
                numbers[i] = None
        frame = SampleFrame(asset=assets, signal=signals, ts_us=ts_us, vtype=vtype, value=numbers,
                            value_str=texts, unit=units, quality=qualities)
        return DecodedBatch(producer, batch_id, seq, frame, {}, len(samples))


def _reference(raw: bytes, max_bytes: int) -> DecodedBatch:
    batch, rejected = decode_batch_lenient(raw, max_bytes=max_bytes)
    frame = SampleFrame.from_samples(batch.samples)
    return DecodedBatch(batch.producer, batch.batch_id, batch.seq, frame, rejected,
                        len(batch.samples) + len(rejected))
