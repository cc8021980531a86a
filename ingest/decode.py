"""Fast, columnar decoding of wire-format batches (versions 1 and 2), with exactly the rules of
``zhizao.wire``.

:class:`Decoder` checks a document with the same rules as
:func:`zhizao.wire.decode_batch_lenient` but writes straight into a
:class:`~ingest.storage.base.SampleFrame` instead of building a ``Sample`` per value: msgspec
checks the document's shape in C, then the columns are built by list comprehensions and the
rules (:mod:`zhizao.wirerules`, which the gateway checks too) checked once per distinct value
(caching validated asset paths and signal names), values column by column. A column of
canonical timestamps is read at once with numpy (:mod:`zhizao.stamps`), a short or odd one per
stamp from a cache of validated seconds; a timestamp shared by several signals of a tick is
read once. Values are converted only on their non-float rows. The fast path only ever
*accepts*: the moment anything looks wrong (envelope or any sample), the whole document is
decoded again by ``decode_batch_lenient`` itself, so every rejection — and its message — is the
reference one (but one: a number beyond a double's range, which the reference calls invalid JSON
at a character offset, is refused the same, naming its field and sample — :class:`OutOfRange`).
A differential test (``tests/ingest/test_decode.py``) checks both agree.

Version 2 (samples grouped into series) is the cheaper one to read: msgspec decodes two flat
arrays per series, and asset, signal, unit and quality are checked once per series, not once
per sample.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, compress, count, repeat
from operator import is_
from typing import Final, cast

import msgspec

from ingest.storage.base import SampleFrame, to_us
from zhizao.errors import TooLarge, WireFormatError
from zhizao.model import valid_id
from zhizao.stamps import canonical_epoch_us
from zhizao.wire import FORMAT, decode_batch_lenient, decompress, parse_ts
from zhizao.wirerules import KindCache, uniform_values_ok

_FLOAT_ONLY: Final = frozenset({float})
_VTYPE: Final = {float: "f", int: "i", bool: "b", str: "s"}
_GZIP_MAGIC: Final = b"\x1f\x8b"
_SERIES_RUN: Final = 8
"""Values per series (on average) from which checking them series by series beats row by row."""
_VECTOR_MIN: Final = 48
"""From this many timestamps on, numpy reads them faster than one cached parse each (measured)."""


_Values = tuple[list[str], list[float | None], list[str | None]]
"""The ``vtype``, ``value`` and ``value_str`` columns of a frame."""


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


class _WireSeries(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A version-2 series: a :class:`_WireSample` whose ``ts`` and ``value`` are arrays."""

    asset: str
    signal: str
    ts: list[str]
    value: list[float | int | bool | str]
    unit: str | None = None
    quality: str = "good"


class _Envelope(msgspec.Struct, tag_field="version", forbid_unknown_fields=True, gc=False):
    format: str
    producer: str
    batch_id: str
    seq: int


class _WireBatch(_Envelope, tag=1):
    samples: list[_WireSample]


class _WireBatchV2(_Envelope, tag=2):
    series: list[_WireSeries]


_SHAPE: Final = msgspec.json.Decoder(_WireBatch | _WireBatchV2)
"""Checks the document's shape in C (fields, JSON types, the version as the tag of the two
layouts); values are checked in :meth:`Decoder._fast`."""


class Decoder:
    """Reusable decoder keeping caches of valid asset paths, signal names and the epoch
    microseconds of timestamp seconds (all bounded)."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._kinds = KindCache(cache_size)
        self._seconds: dict[str, int] = {}
        self._cache_size = cache_size

    def decode(self, data: bytes | memoryview, *, max_bytes: int) -> DecodedBatch:
        """Decode ``data`` (JSON, possibly gzip; a bulk request's line is a view of its body, read
        without a copy); raises ``WireFormatError`` for a bad envelope."""
        if len(data) > max_bytes:
            raise TooLarge(f"document is larger than {max_bytes} bytes")
        raw = data if type(data) is memoryview and data[:2].tobytes() != _GZIP_MAGIC else \
            decompress(bytes(data), max_bytes=max_bytes)
        try:
            return self._fast(raw)
        except _Slow:
            return _reference(bytes(raw), max_bytes)

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

    def _fast(self, raw: bytes | memoryview) -> DecodedBatch:
        try:
            doc = _SHAPE.decode(raw)
        except msgspec.DecodeError:
            raise _Slow from None
        producer, batch_id, seq = doc.producer, doc.batch_id, doc.seq
        if doc.format != FORMAT or not valid_id(producer) or not valid_id(batch_id) or seq < 0:
            raise _Slow
        if isinstance(doc, _WireBatchV2):
            frame = self._series_frame(doc.series)
        else:
            frame = self._samples_frame(doc.samples)
        return DecodedBatch(producer, batch_id, seq, frame, {}, len(frame))

    def _samples_frame(self, samples: list[_WireSample]) -> SampleFrame:
        """Version 1. Column by column: the columns are list comprehensions (C-level loops) and
        the rules are checked once per distinct value — a batch repeats its assets, signals,
        units, qualities and (several signals per tick) its timestamps."""
        assets = [s.asset for s in samples]
        signals = [s.signal for s in samples]
        stamps = [s.ts for s in samples]
        values = [s.value for s in samples]
        units = [s.unit for s in samples]
        qualities = [s.quality for s in samples]
        self._check_kinds(set(assets), set(signals), set(units), qualities)
        return self._frame(assets, signals, stamps, _values(values), units=units, qualities=qualities)

    def _series_frame(self, series: list[_WireSeries]) -> SampleFrame:
        """Version 2: asset, signal, unit and quality checked once per series, then repeated."""
        if any(len(s.ts) != len(s.value) for s in series):
            raise _Slow
        self._check_kinds({s.asset for s in series}, {s.signal for s in series}, {s.unit for s in series},
                          [s.quality for s in series])
        sizes = [len(s.ts) for s in series]
        assets = list(chain.from_iterable(map(repeat, [s.asset for s in series], sizes)))
        signals = list(chain.from_iterable(map(repeat, [s.signal for s in series], sizes)))
        units = list(chain.from_iterable(map(repeat, [s.unit for s in series], sizes)))
        qualities = list(chain.from_iterable(map(repeat, [s.quality for s in series], sizes)))
        stamps = list(chain.from_iterable([s.ts for s in series]))
        values = list(chain.from_iterable([s.value for s in series]))
        columns, uniform = _series_values(series, values)
        frame = self._frame(assets, signals, stamps, columns, units=units, qualities=qualities)
        if uniform:  # every series' values share one type: a series is one kind of point
            frame.runs = [n for n in sizes if n]
        return frame

    def _check_kinds(self, assets: set[str], signals: set[str], units: set[str | None],
                     qualities: list[str]) -> None:
        """Raises ``_Slow`` unless every asset, signal, unit and quality is valid
        (:class:`zhizao.wirerules.KindCache`)."""
        if not self._kinds.accepts(assets, signals, units, qualities):
            raise _Slow

    def _frame(self, assets: list[str], signals: list[str], stamps: list[str],
               values: _Values, *, units: list[str | None], qualities: list[str]) -> SampleFrame:
        """The frame of checked kinds and values: timestamps are read here."""
        vtype, numbers, texts = values
        return SampleFrame(asset=assets, signal=signals, ts_us=self._stamps_us(stamps), vtype=vtype,
                           value=numbers, value_str=texts, unit=units, quality=qualities)


def _values(values: list[float | int | bool | str]) -> _Values:
    """Columns of any mix of values; raises ``_Slow`` for a value the reference refuses."""
    types = list(map(type, values))
    kinds = set(types)
    n = len(values)
    if kinds == _FLOAT_ONLY:
        if not uniform_values_ok(values, float):
            raise _Slow
        return ["f"] * n, cast(list[float | None], values), [None] * n

    # the columns start as copies and only the non-float rows are visited (C-level iterators
    # pick them: ``compress`` over "is this row's type T"); each type's values are checked
    # together, before they are written
    def of(kind: type) -> tuple[list[int], list[float | int | bool | str]]:
        rows = list(compress(count(), map(is_, types, repeat(kind))))
        return rows, list(map(values.__getitem__, rows))

    floats = list(compress(values, map(is_, types, repeat(float)))) if float in kinds else []
    if not uniform_values_ok(floats, float):
        raise _Slow
    vtype = list(map(_VTYPE.__getitem__, types))
    numbers = cast(list[float | None], list(values))
    texts: list[str | None] = [None] * n
    for kind in (int, bool):
        if kind in kinds:
            rows, picked = of(kind)
            if not uniform_values_ok(picked, kind):
                raise _Slow
            for i, number in zip(rows, map(float, picked), strict=True):
                numbers[i] = number
    if str in kinds:
        rows, picked = of(str)
        if not uniform_values_ok(picked, str):
            raise _Slow
        for i, text in zip(rows, cast(list[str], picked), strict=True):
            texts[i] = text
            numbers[i] = None
    return vtype, numbers, texts


def _uniform(values: list[float | int | bool | str], kind: type) -> _Values:
    """Columns of values that are all of type ``kind``: checked and converted by C-level passes."""
    if not uniform_values_ok(values, kind):
        raise _Slow
    n = len(values)
    if kind is float:
        return ["f"] * n, cast(list[float | None], values), [None] * n
    if kind is int:
        return ["i"] * n, list(map(float, cast(list[int], values))), [None] * n
    if kind is str:
        return ["s"] * n, [None] * n, cast(list[str | None], values)
    return ["b"] * n, list(map(float, cast(list[bool], values))), [None] * n


def _series_values(series: list[_WireSeries], values: list[float | int | bool | str]) -> tuple[_Values, bool]:
    """Columns of ``values``, the values of every series in order: at once when they share one
    type; series by series when they are long enough for that to pay (a series' values usually
    share one type); else row by row. The flag tells whether each series' values share one type
    (known for the first two ways only)."""
    kinds = set(map(type, values))
    if len(kinds) == 1:
        return _uniform(values, kinds.pop()), True
    if len(values) < _SERIES_RUN * len(series):
        return _values(values), False
    vtype: list[str] = []
    numbers: list[float | None] = []
    texts: list[str | None] = []
    uniform = True
    for entry in series:
        kinds = set(map(type, entry.value))
        if len(kinds) == 1:
            part = _uniform(entry.value, kinds.pop())
        else:
            part = _values(entry.value)
            uniform = uniform and len(kinds) == 0
        vtype += part[0]
        numbers += part[1]
        texts += part[2]
    return (vtype, numbers, texts), uniform


class OutOfRange(WireFormatError):
    """A JSON number beyond a 64-bit float's range (``1e400``): JSON's grammar allows it, but it
    would read as infinity. The shared wire rules (``zhizao.wire``, the gateway) refuse the whole
    document as not valid JSON, so ingest does too — with the place named: ``path`` is the field
    (``samples[3].value``, ``series[1].value[4]``) and ``sample`` the sample's index in the batch
    (counting as rejections do), or ``None`` when the number is not in a sample."""

    def __init__(self, path: str, message: str, sample: int | None) -> None:
        super().__init__(path, message)
        self.sample = sample


class _Huge(str):
    """The literal text of a JSON number beyond a double's range."""


def _float(text: str) -> float | _Huge:
    value = float(text)
    return _Huge(text) if math.isinf(value) else value


def _int(text: str) -> int | _Huge:
    try:
        value = int(text)
        float(value)  # orjson reads an integer beyond 64 bits as a float: too large, it is infinity
    except (ValueError, OverflowError):  # ValueError: more digits than int() reads
        return _Huge(text)
    return value


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def out_of_range(raw: bytes) -> OutOfRange | None:
    """The first number in ``raw`` (a document JSON-wise valid but for numbers beyond a double's
    range) that would read as infinity, as an :class:`OutOfRange`; ``None`` when there is none or
    the document is not valid JSON for another reason. Slow (the standard library's parser): only
    for explaining a refusal."""
    try:
        doc = json.loads(raw, parse_float=_float, parse_int=_int, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    found = _first_huge(doc, [])
    if found is None:
        return None
    text, where = found
    path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(where))
    sample: int | None = None
    if len(where) >= 3 and where[0] == "samples" and isinstance(where[1], int):
        sample = where[1]
    elif len(where) >= 3 and where[0] == "series" and isinstance(where[1], int) and isinstance(doc, dict):
        before = sum(len(e["value"]) for e in doc["series"][:where[1]]
                     if isinstance(e, dict) and isinstance(e.get("value"), list))
        sample = before + where[3] if len(where) == 4 and where[2] in ("ts", "value") and \
            isinstance(where[3], int) else None
    which = f" (sample {sample} of the batch, counting from 0)" if sample is not None else ""
    return OutOfRange(path, f"the number {text[:40]} is beyond the range of a 64-bit float (about "
                            f"±1.8e308) and would read as infinity{which}. The batch is refused as a "
                            "whole: nothing of it was stored, and resending it unchanged cannot succeed",
                       sample)


def _first_huge(node: object, where: list[str | int]) -> tuple[str, list[str | int]] | None:
    """Depth first in document order: the first :class:`_Huge` under ``node`` and its path."""
    if isinstance(node, _Huge):
        return str(node), where
    items: Iterable[tuple[str | int, object]]
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for key, child in items:
        found = _first_huge(child, [*where, key])
        if found is not None:
            return found
    return None


def _reference(raw: bytes, max_bytes: int) -> DecodedBatch:
    try:
        batch, rejected = decode_batch_lenient(raw, max_bytes=max_bytes)
    except WireFormatError as exc:
        # the reference's words for it are orjson's ("number is infinity when parsed as double:
        # line 1 column 261"): name the field and the sample instead
        if not exc.path and exc.message.startswith("not valid JSON"):
            located = out_of_range(raw)
            if located is not None:
                raise located from None
        raise
    frame = SampleFrame.from_samples(batch.samples)
    return DecodedBatch(batch.producer, batch.batch_id, batch.seq, frame, rejected,
                        len(batch.samples) + len(rejected))
