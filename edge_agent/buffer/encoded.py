"""A batch as the buffer stores it: its samples' wire-format JSON rows, not decoded.

:meth:`EncodedBatch.body` is the batch document of zhizao's wire format (the same document
:func:`zhizao.wire.encode_batch` writes for the decoded batch), built by joining the rows: an
uplink that sends wire format (HTTP to ingest) forwards a backlog without touching each sample.
:meth:`EncodedBatch.decode` gives the :class:`~zhizao.model.Batch` for everything else.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import orjson

from edge_agent.buffer.codec import SampleDecoder
from zhizao import wire
from zhizao.model import Batch


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """``(producer, batch_id, seq)`` as in :class:`~zhizao.model.Batch`; ``rows`` one per sample."""

    producer: str
    batch_id: str
    seq: int
    rows: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def body(self, *, compress: bool = False) -> bytes:
        """The wire-format document (gzip when ``compress``)."""
        head = orjson.dumps(
            {
                "format": wire.FORMAT,
                "version": wire.VERSION,
                "producer": self.producer,
                "batch_id": self.batch_id,
                "seq": self.seq,
            }
        )
        raw = b"".join((head[:-1], b',"samples":[', b",".join(self.rows), b"]}"))
        return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw

    def decode(self, decoder: SampleDecoder | None = None) -> Batch:
        """The decoded batch (``ValueError`` if a row is damaged)."""
        dec = decoder or SampleDecoder()
        return Batch(self.producer, self.batch_id, self.seq, tuple(dec.decode(r) for r in self.rows))
