"""Checking an agent's batch document strictly, without building a ``Sample`` per value.

:meth:`BatchChecker.check` applies exactly the rules of :func:`zhizao.wire.decode_batch_lenient`
to a message payload (JSON, gzip allowed) and says what the gateway stores:

- **fast path** (every sample valid, the normal case): the document itself — decompressed, and
  re-serialised only when it spans several lines (bulk requests are NDJSON) — as one buffer
  record under the agent's ``(producer, batch_id, seq)``. Valid asset paths and signal names are
  cached; nothing is decoded into objects.
- **slow path** (anything unusual): the reference decoder runs on the document. An invalid
  envelope raises :class:`~zhizao.errors.WireFormatError` (the gateway dead-letters the message
  whole); invalid samples are returned with their index and reason (the gateway dead-letters
  them) and the record holds the valid ones, re-encoded, under the same identity — so every
  copy of that batch (a republish, a redelivery) becomes the same record, and ingest stores it
  once.

The fast path only ever *accepts*: the moment anything looks wrong the reference decoder decides,
so every rejection and its message are the reference ones (``tests/gateway/test_wirecheck.py``
checks both agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import orjson

from edge_agent.buffer import EncodedBatch
from zhizao import wire
from zhizao.errors import WireFormatError
from zhizao.model import MAX_STR_VALUE, AssetPath, valid_id, valid_signal

_ENVELOPE: Final = frozenset({"format", "version", "producer", "batch_id", "seq", "samples"})
_SAMPLE_KEYS: Final = frozenset({"asset", "signal", "ts", "value", "unit", "quality"})
_QUALITIES: Final = frozenset({"good", "uncertain", "bad"})
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63
_GOOD: Final = frozenset({"good"})
_VALUE_TYPES: Final = frozenset({float, int, bool, str})


@dataclass(frozen=True, slots=True)
class Checked:
    """What to store for one agent batch: ``record`` (``None`` when no valid sample is left),
    and ``{index: reason}`` of the samples refused (empty on the fast path)."""

    producer: str
    batch_id: str
    record: EncodedBatch | None
    rejected: dict[int, str] = field(default_factory=dict)


class _Slow(Exception):
    """Internal: leave the fast path."""


class BatchChecker:
    """Reusable checker keeping (bounded) caches of valid asset paths and signal names."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._assets: set[str] = set()
        self._signals: set[str] = set()
        self._cache_size = cache_size
        self.fast = 0
        self.slow = 0

    def check(self, payload: bytes, *, max_bytes: int = wire.DEFAULT_MAX_BYTES) -> Checked:
        """See the module docstring; ``WireFormatError`` for an invalid envelope."""
        if len(payload) > max_bytes:
            raise WireFormatError("", f"document is larger than {max_bytes} bytes")
        raw = wire.decompress(payload, max_bytes=max_bytes)
        try:
            checked = self._fast(raw)
        except _Slow:
            checked = None
        if checked is not None:
            self.fast += 1
            return checked
        self.slow += 1
        batch, rejected = wire.decode_batch_lenient(raw, max_bytes=max_bytes)
        record = EncodedBatch.of_batch(batch) if batch.samples else None
        return Checked(batch.producer, batch.batch_id, record, rejected)

    def _fast(self, raw: bytes) -> Checked:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Slow from None
        if type(doc) is not dict or doc.keys() != _ENVELOPE:
            raise _Slow
        producer, batch_id, seq, samples = doc["producer"], doc["batch_id"], doc["seq"], doc["samples"]
        if (doc["format"] != wire.FORMAT or type(doc["version"]) is not int or doc["version"] != wire.VERSION
                or type(producer) is not str or not valid_id(producer)
                or type(batch_id) is not str or not valid_id(batch_id)
                or type(seq) is not int or seq < 0 or type(samples) is not list or not samples):
            raise _Slow
        if len(self._assets) > self._cache_size:
            self._assets.clear()
        if len(self._signals) > self._cache_size:
            self._signals.clear()
        # Column by column, over the distinct values (C-level comprehensions, no per-sample branch).
        try:
            keys = set().union(*samples)  # a sample that is not an object fails below if not here
            if not keys <= _SAMPLE_KEYS:
                raise _Slow
            assets = {x["asset"] for x in samples}
            signals = {x["signal"] for x in samples}
            stamps = {x["ts"] for x in samples}
            values = [x["value"] for x in samples]
            try:
                units = {x["unit"] for x in samples}  # agents give every sample its unit (maybe null)
            except KeyError:
                units = {x.get("unit") for x in samples}
            qualities = {x.get("quality", "good") for x in samples} if "quality" in keys else _GOOD
        except (KeyError, TypeError):  # a required key missing, a sample not an object, an unhashable
            raise _Slow from None
        if not qualities <= _QUALITIES:
            raise _Slow
        for unit in units:
            if unit is not None and (type(unit) is not str or len(unit) > 32):
                raise _Slow
        for asset in assets - self._assets:
            if type(asset) is not str:
                raise _Slow
            try:
                AssetPath.parse(asset)
            except ValueError:
                raise _Slow from None
            self._assets.add(asset)
        for signal in signals - self._signals:
            if type(signal) is not str or not valid_signal(signal):
                raise _Slow
            self._signals.add(signal)
        for text in stamps:
            if type(text) is not str:
                raise _Slow
            try:
                wire.parse_ts(text)
            except ValueError:
                raise _Slow from None
        kinds = {type(v) for v in values}
        if not kinds <= _VALUE_TYPES:
            raise _Slow
        if int in kinds:  # orjson reads integers up to 2**64 - 1; floats are always finite
            ints = [v for v in values if type(v) is int]
            if min(ints) < _INT_MIN or max(ints) >= _INT_MAX:
                raise _Slow
        if str in kinds and max(len(v) for v in values if type(v) is str) > MAX_STR_VALUE:
            raise _Slow
        line = raw if b"\n" not in raw else orjson.dumps(doc)
        return Checked(producer, batch_id, EncodedBatch.record(producer, batch_id, seq, len(samples), line))
