"""A batch as the buffer stores it, not decoded: its samples' wire-format rows, or one whole document.

Two shapes of :class:`EncodedBatch`, both sent by an uplink that speaks wire format (HTTP to
ingest) without decoding a sample into a ``Sample``:

- **sample rows** (``rows``, one wire-format v1 JSON object per sample): a batch the buffer
  formed from sample rows (the agent), each series' rows together. Its identity is the buffer's
  own ``(producer, batch_id, seq)``; :meth:`EncodedBatch.body` joins the rows into a v1 document,
  or regroups them into a v2 one (one msgspec pass over the rows: ~0.5 µs per sample here, for
  a document of ~40 % of the bytes that ingest decodes ~1.5× faster).
- **a record** (``document``): a whole batch someone else identified — an agent's batch received
  by the site gateway — stored as ONE buffer record holding its (uncompressed, validated)
  wire-format document, version 1 or 2, and its key ``(producer, batch_id, seq)``. ``n`` is its
  number of samples, ``record_id`` the buffer's row id (how it is acked). Create one with
  :meth:`EncodedBatch.record`. The document must be a single line (no ``\\n``: bulk requests
  are NDJSON); it is sent as it is, or as version 1 to a receiver limited to version 1
  (:meth:`EncodedBatch.line`).

:meth:`EncodedBatch.decode` gives the :class:`~zhizao.model.Batch` for everything else, and
:meth:`EncodedBatch.samples_json` the samples' JSON objects (for the dead-letter file).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from edge_agent.buffer.codec import SampleDecoder
from zhizao import wire
from zhizao.errors import WireFormatError
from zhizao.model import Batch

MIN_SERIES_RUN = 4
"""Samples per series entry (on average) from which a batch of rows goes as wire-format v2.
Below it a series entry costs more than it saves: ingest read 5,000 float samples at 1.27 µs
each in v2 against 0.68 in v1 with 2 samples per series, about the same with 3-4, and 0.37
against 0.56 with 10 (v2 is always smaller: 370 kB, 275 kB and 218 kB against 540 kB)."""


def v2_pays(samples: int, entries: int) -> bool:
    """Whether ``samples`` samples in ``entries`` series entries are worth sending as wire-format
    version 2: at least :data:`MIN_SERIES_RUN` samples per entry on average. The one rule of every
    uplink that chooses the version (the HTTP uplink's rows, the MQTT uplink's batches)."""
    return entries * MIN_SERIES_RUN <= samples


@dataclass(frozen=True, slots=True)
class BulkLimits:
    """How much one bulk take (and request) may hold: batches, samples and body bytes. A single
    batch larger than a limit is still taken (alone)."""

    max_batches: int = 500
    max_samples: int = 100_000
    max_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """``(producer, batch_id, seq)`` as in :class:`~zhizao.model.Batch`; ``rows`` one per sample,
    or (a record) ``document`` with ``n`` samples (see the module docstring)."""

    producer: str
    batch_id: str
    seq: int
    rows: tuple[bytes, ...] = ()
    document: bytes | None = None
    n: int = 0
    record_id: int | None = None
    series: int = 0
    """Distinct series among ``rows`` when the buffer knows it (0: not counted)."""

    @classmethod
    def record(cls, producer: str, batch_id: str, seq: int, n: int, document: bytes, *,
               record_id: int | None = None) -> EncodedBatch:
        """A whole-document record (``document``: one line of uncompressed wire-format JSON)."""
        if b"\n" in document:
            raise ValueError("a record's document must be one line (no newline)")
        return cls(producer, batch_id, seq, (), document, n, record_id)

    @classmethod
    def of_batch(cls, batch: Batch, *, version: int = wire.VERSION) -> EncodedBatch:
        """``batch`` as a record (its identity kept) in wire-format ``version`` (samples in their
        order either way: the same batch always gives the same bytes)."""
        return cls.record(batch.producer, batch.batch_id, batch.seq, len(batch),
                          wire.encode_batch(batch, version=version))

    @property
    def is_record(self) -> bool:
        return self.document is not None

    def __len__(self) -> int:
        return self.n if self.document is not None else len(self.rows)

    def line(self, version: int = wire.VERSION) -> bytes:
        """The uncompressed wire-format document, on one line, for a receiver reading versions up
        to ``version``. A record: its document as received (version 1 or 2) — except a version-2
        document when ``version`` is 1 (an ingest older than version 2), which goes as the
        version-1 document of the same samples in the same order. Sample rows: in wire-format
        ``version`` (1: the rows joined; 2: each run of consecutive rows of one series as one
        series entry — the buffer hands out a series' rows together). Samples keep their order
        in every case, so a rejection's index is the row's (the record's sample's) index.

        Rows go as version 2 only where it pays (:func:`v2_pays`): rows with fewer than
        :data:`MIN_SERIES_RUN` samples per series entry on average (many signals, each sampled
        rarely) and rows that are not plain sample objects go as version 1 — there a series
        entry costs more than it saves."""
        if self.document is not None:
            return self.document if version != 1 else _as_version_1(self.document)
        envelope = {"format": wire.FORMAT, "version": 2, "producer": self.producer,
                    "batch_id": self.batch_id, "seq": self.seq}
        if version == 2 and v2_pays(len(self.rows), self.series):
            series = _series_entries(self.rows)
            if series is not None and v2_pays(len(self.rows), len(series)):
                return orjson.dumps({**envelope, "series": series})
        envelope["version"] = 1
        head = orjson.dumps(envelope)
        return b"".join((head[:-1], b',"samples":[', b",".join(self.rows), b"]}"))

    def body(self, *, compress: bool = False, version: int = wire.VERSION) -> bytes:
        """The wire-format document (gzip when ``compress``)."""
        raw = self.line(version)
        return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw

    def samples_json(self) -> list[Any]:
        """The samples' JSON objects, in order (``None`` for one that cannot be decoded)."""
        if self.document is not None:
            try:
                doc = orjson.loads(self.document)
                samples = doc["series"] if "series" in doc else doc["samples"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return []
            if "series" in doc:
                try:
                    return wire.flatten_series(samples)[0]
                except WireFormatError:  # a reader refuses such a document as a whole
                    return []
            return samples if isinstance(samples, list) else []
        out: list[Any] = []
        for row in self.rows:
            try:
                out.append(orjson.loads(row))
            except orjson.JSONDecodeError:
                out.append(None)
        return out

    def decode(self, decoder: SampleDecoder | None = None) -> Batch:
        """The decoded batch (``ValueError`` if a row or the document is damaged)."""
        if self.document is not None:
            try:
                return wire.decode_batch(self.document)
            except WireFormatError as exc:
                raise ValueError(f"damaged record {self.producer}/{self.batch_id}: {exc}") from exc
        dec = decoder or SampleDecoder()
        return Batch(self.producer, self.batch_id, self.seq, tuple(dec.decode(r) for r in self.rows))


def _as_version_1(document: bytes) -> bytes:
    """``document`` (a record's) as version 1: a version-2 document becomes the version-1 document
    of the same samples in the same order (:func:`zhizao.wire.flatten_series`); anything else —
    version 1, or a document no reader accepts — is returned unchanged (ingest then names what is
    wrong with it)."""
    if b'"series"' not in document:
        return document
    try:
        doc = orjson.loads(document)
        if not isinstance(doc, dict) or doc.keys() != wire.ENVELOPE_KEYS_V2 or doc["version"] != 2:
            return document
        samples, _ = wire.flatten_series(doc["series"])
    except (orjson.JSONDecodeError, WireFormatError):
        return document
    return orjson.dumps({"format": doc["format"], "version": 1, "producer": doc["producer"],
                         "batch_id": doc["batch_id"], "seq": doc["seq"], "samples": samples})


class _Row(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A sample row as stored: exactly the keys of a wire-format v1 sample object (any values:
    ingest checks them)."""

    asset: Any
    signal: Any
    ts: Any
    value: Any
    unit: Any = None
    quality: Any = "good"


_ROWS = msgspec.json.Decoder(list[_Row])


def _series_entries(rows: tuple[bytes, ...]) -> list[dict[str, Any]] | None:
    """The version-2 ``series`` array of ``rows`` (wire-format v1 sample objects), one entry per
    run of consecutive rows sharing asset, signal, unit and quality; ``None`` when a row is not
    an object with exactly a sample's keys (such a row goes to ingest as it is, which then names
    what is wrong). All rows are read by one msgspec call (~0.5 µs per row here)."""
    try:
        objs = _ROWS.decode(b"".join((b"[", b",".join(rows), b"]")))
    except msgspec.DecodeError:
        return None
    if len(objs) != len(rows):  # a damaged row that reads as several values
        return None
    out: list[dict[str, Any]] = []
    last: tuple[Any, ...] | None = None
    stamps: list[Any] = []
    values: list[Any] = []
    for obj in objs:
        key = (obj.asset, obj.signal, obj.unit, obj.quality)
        if key != last:
            last = key
            entry: dict[str, Any] = {"asset": obj.asset, "signal": obj.signal}
            if obj.unit is not None:
                entry["unit"] = obj.unit
            if obj.quality != "good":
                entry["quality"] = obj.quality
            stamps, values = entry["ts"], entry["value"] = [], []
            out.append(entry)
        stamps.append(obj.ts)
        values.append(obj.value)
    return out
