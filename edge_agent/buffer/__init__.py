"""The durable store-and-forward buffer (SQLite, WAL): ``put`` / ``take`` / ``ack``.

Used by the edge agent and, unchanged, by the site gateway. See :mod:`edge_agent.buffer.store`
for the contract.
"""

from edge_agent.buffer.config import BufferConfig
from edge_agent.buffer.encoded import BulkLimits, EncodedBatch
from edge_agent.buffer.sqlite import BufferCorrupt
from edge_agent.buffer.store import BufferStats, Overflow, PutResult, SqliteBuffer

__all__ = [
    "BufferConfig",
    "BufferCorrupt",
    "BufferStats",
    "BulkLimits",
    "EncodedBatch",
    "Overflow",
    "PutResult",
    "SqliteBuffer",
]
