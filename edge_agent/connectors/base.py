"""The connector contract and the counters every connector keeps.

A connector reads one southbound source and hands samples to a :class:`Sink` (the buffer).
``await connector.run(sink)`` connects, reads until cancelled, and raises
:class:`~zhizao.errors.ConnectionLost` when the source goes away; the supervisor then calls
``run`` again after a capped, jittered backoff (the connector re-creates every subscription on
each ``run``). Connection problems that will not heal by retrying (bad credentials, untrusted
certificate) raise :class:`~zhizao.errors.SecurityError` or :class:`~zhizao.errors.ConfigError`;
the supervisor logs them and retries slowly, never with weaker settings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.buffer import PutResult
from zhizao.model import Sample


class Sink(Protocol):
    """Where connectors put samples: ``submit`` returns a future resolved once they are durable;
    ``marks`` given with samples are committed with them and read back with ``marks(prefix)``."""

    def submit(
        self, samples: Sequence[Sample], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]: ...

    async def marks(self, prefix: str) -> dict[str, str]: ...


@dataclass(slots=True)
class ConnectorStats:
    """Counters of one connector (exported as metrics, labelled with the connector name)."""

    samples_read: int = 0
    messages: int = 0
    bad_payloads: int = 0
    bad_by_mapping: dict[str, int] = field(default_factory=dict)
    """MQTT: ``bad_payloads`` by payload mapping (``""``: no mapping matched the topic)."""
    duplicates_skipped: int = 0
    """Redelivered messages recognised as already committed (acknowledged, not stored again)."""
    reconnects: int = 0
    resubscribes: int = 0
    commit_failures: int = 0
    """Buffer commits of this connector's data that failed (disk full, I/O error). Nothing is
    acknowledged for them: OPC UA keeps the samples in memory and submits them again; MQTT sends
    no PUBACK and ends the session, so the broker redelivers after the reconnect."""
    dropped: dict[str, int] = field(default_factory=lambda: {"commit_failed": 0})
    """Samples read and then dropped under a named policy, by reason: ``commit_failed`` — OPC UA
    samples beyond the connector's bound of samples held while commits fail (the oldest), MQTT
    samples of QoS 0 messages whose commit failed (the broker cannot redeliver those);
    ``stopped_uncommitted`` — OPC UA samples still held when the agent stopped (the last commit,
    tried at the stop, failed too); ``connection_lost`` — MQTT samples read on a connection that
    dropped before they were submitted, that the broker cannot redeliver (QoS 0, or a session that
    is not persistent)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Source values not made into samples, by reason (OPC UA: ``repeat`` — the same source
    timestamp, value and status as the last one collected; ``no_value`` — a Bad value without a
    value and no earlier one to repeat; ``unsupported_type`` — an array, a structure or a ByteString,
    which has no zhizao form)."""
    vanished_nodes: int = 0
    connected: bool = False
    """True while the connector collects: connected *and* ready (OPC UA: its monitored items
    created; MQTT: subscribed). A value the source serves while this is true is collected."""
    last_data: float | None = None

    def got(self, n: int) -> None:
        self.samples_read += n
        if n:
            self.last_data = time.monotonic()


class Connector(Protocol):
    """A southbound source (see the module docstring)."""

    name: str
    stats: ConnectorStats

    async def run(self, sink: Sink) -> None: ...

    async def settle_at_stop(self, sink: Sink) -> int:
        """Called once at the agent's stop, after ``run`` ended and the buffer was flushed: wait for
        this connector's commits in flight and try once more to commit what it still holds into
        ``sink``; count and log what read data is lost because it could not be committed (a named
        policy in ``stats.dropped``); return how many samples."""
        ...
