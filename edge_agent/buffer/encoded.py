"""A batch as the buffer stores it, not decoded: its samples' wire-format rows, or one whole document.

Two shapes of :class:`EncodedBatch`, both sent as they are by an uplink that speaks wire format
(HTTP to ingest) — nothing is decoded or re-encoded per sample between the buffer and ingest:

- **sample rows** (``rows``, one wire-format JSON object per sample): a batch the buffer formed
  from sample rows (the agent). Its identity is the buffer's own ``(producer, batch_id, seq)``;
  :meth:`EncodedBatch.body` joins the rows into the batch document.
- **a record** (``document``): a whole batch someone else identified — an agent's batch received
  by the site gateway — stored as ONE buffer record holding its (uncompressed, validated)
  wire-format document and its key ``(producer, batch_id, seq)``. ``n`` is its number of samples,
  ``record_id`` the buffer's row id (how it is acked). Create one with :meth:`EncodedBatch.record`.
  The document must be a single line (no ``\\n``: bulk requests are NDJSON).

:meth:`EncodedBatch.decode` gives the :class:`~zhizao.model.Batch` for everything else, and
:meth:`EncodedBatch.samples_json` the samples' JSON objects (for the dead-letter file).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

import orjson

from edge_agent.buffer.codec import SampleDecoder
from zhizao import wire
from zhizao.errors import WireFormatError
from zhizao.model import Batch


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

    @classmethod
    def record(cls, producer: str, batch_id: str, seq: int, n: int, document: bytes, *,
               record_id: int | None = None) -> EncodedBatch:
        """A whole-document record (``document``: one line of uncompressed wire-format JSON)."""
        if b"\n" in document:
            raise ValueError("a record's document must be one line (no newline)")
        return cls(producer, batch_id, seq, (), document, n, record_id)

    @classmethod
    def of_batch(cls, batch: Batch) -> EncodedBatch:
        """``batch`` as a record (its identity kept)."""
        return cls.record(batch.producer, batch.batch_id, batch.seq, len(batch), wire.encode_batch(batch))

    @property
    def is_record(self) -> bool:
        return self.document is not None

    def __len__(self) -> int:
        return self.n if self.document is not None else len(self.rows)

    def line(self) -> bytes:
        """The uncompressed wire-format document, on one line."""
        if self.document is not None:
            return self.document
        head = orjson.dumps(
            {
                "format": wire.FORMAT,
                "version": wire.VERSION,
                "producer": self.producer,
                "batch_id": self.batch_id,
                "seq": self.seq,
            }
        )
        return b"".join((head[:-1], b',"samples":[', b",".join(self.rows), b"]}"))

    def body(self, *, compress: bool = False) -> bytes:
        """The wire-format document (gzip when ``compress``)."""
        raw = self.line()
        return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw

    def samples_json(self) -> list[Any]:
        """The samples' JSON objects, in order (``None`` for one that cannot be decoded)."""
        if self.document is not None:
            try:
                samples = orjson.loads(self.document)["samples"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
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
