"""Checking an agent's batch document strictly, without building a ``Sample`` per value.

:meth:`BatchChecker.check` applies exactly the rules of :func:`zhizao.wire.decode_batch_lenient`
to a message payload (JSON, gzip allowed; wire-format version 1 or 2) and says what the gateway
stores:

- **fast path** (every sample valid, the normal case): the document itself, in the version it
  came in — decompressed, and re-serialised only when it spans several lines (bulk requests are
  NDJSON) — as one buffer record under the agent's ``(producer, batch_id, seq)``. Valid asset
  paths and signal names are cached; nothing is decoded into objects. The rules are those of
  :mod:`zhizao.wirerules`, which ingest's fast decoder checks too. Version 2 is the cheaper
  one: asset, signal, unit and quality are checked once per series, not once per sample.
- **slow path** (anything unusual): the reference decoder runs on the payload. An invalid
  envelope raises :class:`~zhizao.errors.WireFormatError` (the gateway dead-letters the message
  whole); invalid samples are returned with their index and reason (the gateway dead-letters
  them) and the record holds the valid ones, re-encoded in the version the document came in,
  order kept, under the same identity — a deterministic function of the payload, so every copy of
  that batch (a republish, a redelivery) becomes the same record, and ingest stores it once.

The fast path only ever *accepts*: the moment anything looks wrong the reference decoder decides,
so every rejection and its message are the reference ones (``tests/gateway/test_wirecheck.py``
checks both agree, for both versions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import Any, Final

import orjson

from edge_agent.buffer import EncodedBatch
from zhizao import wire
from zhizao.errors import TooLarge
from zhizao.model import valid_id
from zhizao.wirerules import KindCache, stamps_ok, values_ok

_REQUIRED: Final = frozenset(wire.REQUIRED_KEYS)
_GOOD: Final = frozenset({"good"})
_NO_UNIT: Final = frozenset({None})
_REQUIRED_FIELDS: Final = itemgetter("asset", "signal", "ts", "value")
"""A version-1 sample's required fields (:data:`zhizao.wire.REQUIRED_KEYS`), in one C-level call."""
_LIST: Final = frozenset({list})
_DICT: Final = frozenset({dict})
_NOT_JSON: Final = object()


@dataclass(frozen=True, slots=True)
class Checked:
    """What to store for one agent batch: ``record`` (``None`` when no valid sample is left),
    and ``{index: reason}`` of the samples refused (empty on the fast path). An index counts the
    document's samples in order (in version 2: series after series), as the reference does.
    ``assets``: the distinct asset paths of the samples stored (of ``record``)."""

    producer: str
    batch_id: str
    record: EncodedBatch | None
    rejected: dict[int, str] = field(default_factory=dict)
    assets: frozenset[str] = frozenset()


class _Slow(Exception):
    """Internal: leave the fast path."""


class BatchChecker:
    """Reusable checker keeping (bounded) caches of valid asset paths and signal names.

    ``fast`` / ``slow`` count the batches checked by each path; ``fast_v2`` those of ``fast``
    that were version 2."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._kinds = KindCache(cache_size)
        self.fast = 0
        self.fast_v2 = 0
        self.slow = 0

    def check(self, payload: bytes, *, max_bytes: int = wire.DEFAULT_MAX_BYTES) -> Checked:
        """See the module docstring; ``WireFormatError`` (the reference one) for an invalid envelope."""
        if len(payload) > max_bytes:
            raise TooLarge(f"document is larger than {max_bytes} bytes")
        raw = wire.decompress(payload, max_bytes=max_bytes)
        try:
            doc: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = _NOT_JSON
        try:
            checked = self._fast(raw, doc)
        except _Slow:
            checked = None
        if checked is not None:
            self.fast += 1
            return checked
        self.slow += 1
        # the payload itself (not ``raw``): a body gzip-compressed twice must fail as in the reference
        batch, rejected = wire.decode_batch_lenient(payload, max_bytes=max_bytes)
        # the envelope is valid, so the version is 1 or 2 (``2.0`` is 2 to the reference too)
        version = 2 if doc["version"] == 2 else 1
        record = EncodedBatch.of_batch(batch, version=version) if batch.samples else None
        return Checked(batch.producer, batch.batch_id, record, rejected,
                       frozenset({str(s.asset) for s in batch.samples}))

    def _fast(self, raw: bytes, doc: Any) -> Checked:
        if type(doc) is not dict:
            raise _Slow
        keys = doc.keys()
        if keys == wire.ENVELOPE_KEYS:
            version, body = 1, "samples"
        elif keys == wire.ENVELOPE_KEYS_V2:
            version, body = 2, "series"
        else:
            raise _Slow
        producer, batch_id, seq = doc["producer"], doc["batch_id"], doc["seq"]
        if (doc["format"] != wire.FORMAT or type(doc["version"]) is not int or doc["version"] != version
                or type(producer) is not str or not valid_id(producer)
                or type(batch_id) is not str or not valid_id(batch_id)
                or type(seq) is not int or seq < 0):
            raise _Slow
        n, assets = self._samples(doc[body]) if version == 1 else self._series(doc[body])
        line = raw if b"\n" not in raw else orjson.dumps(doc)
        if version == 2:
            self.fast_v2 += 1
        return Checked(producer, batch_id, EncodedBatch.record(producer, batch_id, seq, n, line),
                       assets=frozenset(assets))

    def _samples(self, samples: object) -> tuple[int, set[str]]:
        """Version 1: the number of samples and their assets when every one is valid, else
        ``_Slow``. Column by column, over the distinct values, with C-level passes only: one
        ``itemgetter`` pass takes the four required fields of every sample (and fails for a
        sample that is not an object, or lacks one), ``zip`` turns those rows into columns."""
        if type(samples) is not list or not samples:
            raise _Slow
        try:
            keys = set().union(*samples)  # a sample that is not an object fails below if not here
            if not keys <= wire.SAMPLE_KEYS:
                raise _Slow
            asset_col, signal_col, stamp_col, values = zip(*map(_REQUIRED_FIELDS, samples), strict=True)
            assets = set(asset_col)
            signals = set(signal_col)
            stamps = set(stamp_col)
            # every sample is an object here (a list or a string has no "asset" key above)
            units = set(map(dict.get, samples, repeat("unit"))) if "unit" in keys else _NO_UNIT
            qualities = (set(map(dict.get, samples, repeat("quality"), repeat("good")))
                         if "quality" in keys else _GOOD)
        except (KeyError, TypeError):  # a required key missing, a sample not an object, an unhashable
            raise _Slow from None
        if not (self._kinds.accepts(assets, signals, units, qualities) and stamps_ok(stamps)
                and values_ok(values, finite_floats=True)):  # orjson reads only finite floats
            raise _Slow
        return len(samples), assets

    def _series(self, series: object) -> tuple[int, set[str]]:
        """Version 2: the number of samples and their assets when every series is well formed and
        every sample valid, else ``_Slow``. The structure of every series is checked (as
        :func:`zhizao.wire.flatten_series` does); asset, signal, unit and quality once per series
        that holds samples (an empty series adds nothing, whatever its fields — as in the
        reference); timestamps and values over the whole batch, once per distinct timestamp."""
        if type(series) is not list or not series:
            raise _Slow
        if set(map(type, series)) != _DICT:
            raise _Slow
        # exactly a series' keys: none unknown, every required one (a dict iterates its keys)
        if not (all(map(wire.SAMPLE_KEYS.issuperset, series)) and all(map(_REQUIRED.issubset, series))):
            raise _Slow
        stamp_lists = [e["ts"] for e in series]
        value_lists = [e["value"] for e in series]
        if set(map(type, stamp_lists)) != _LIST or set(map(type, value_lists)) != _LIST:
            raise _Slow
        sizes = list(map(len, stamp_lists))
        if sizes != list(map(len, value_lists)):
            raise _Slow
        n = sum(sizes)
        if n == 0:  # no sample at all: the reference says what to store (nothing)
            raise _Slow
        live = series if all(sizes) else list(compress(series, sizes))
        try:
            assets = {e["asset"] for e in live}
            signals = {e["signal"] for e in live}
            units = {e.get("unit") for e in live}
            qualities = {e.get("quality", "good") for e in live}
            stamps = set(chain.from_iterable(stamp_lists))
        except TypeError:  # an unhashable field or timestamp
            raise _Slow from None
        values = list(chain.from_iterable(value_lists))
        if not (self._kinds.accepts(assets, signals, units, qualities) and stamps_ok(stamps)
                and values_ok(values, finite_floats=True)):  # orjson reads only finite floats
            raise _Slow
        return n, assets
