"""The southbound side: messages from the plant broker into the durable buffer as frames.

:class:`UnsIntake` is a connector in the edge agent's sense (``name``, ``stats``,
``run(sink)``), so the agent's :func:`~edge_agent.supervisor.supervise` keeps it connected. Per
message (on the event loop, in arrival order):

- ``zhizao/v1/<site>/<area>/<line>/<machine>`` — a wire-format batch from an agent's MQTT uplink
  (:mod:`zhizao.wire`, optionally gzip). Invalid samples are dead-lettered (kind
  ``gateway_sample``), the valid ones framed under the agent's ``(producer, batch_id, seq)``.
  An invalid envelope is dead-lettered whole (``gateway_batch``).
- ``zhizao/v1/agents/<id>/status`` — birth / last will (:mod:`gateway.fleet`): fleet state
  updated, fleet samples framed under a deterministic id. Empty payloads (a cleared retained
  message) are only acknowledged.
- anything else — a raw vendor topic, mapped with the agent's :class:`~edge_agent.mapping.PayloadMapper`
  and framed under the gateway's own id (``<gateway id>``, ``<boot nonce>-<n>``). Unmappable
  payloads are dead-lettered (``mqtt_payload``).

Every message is acknowledged to the broker only once its frame is committed to the buffer
(``sink.submit`` resolved); a message whose frame could not be committed is not acknowledged
and comes back after the next connect. Dead-lettered messages are acknowledged after the
dead-letter line is written (they would fail the same way again).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.buffer import PutResult
from edge_agent.connectors.base import ConnectorStats, Sink
from edge_agent.deadletter import DeadLetter
from edge_agent.mapping import MappingError, PayloadMapper
from gateway import fleet
from gateway.config import GatewayConfig
from gateway.frames import frame_rows
from gateway.mqtt import BrokerSession, Message
from zhizao import topics, wire
from zhizao.errors import WireFormatError
from zhizao.model import Batch, Sample

log = logging.getLogger(__name__)
_STATUS_PREFIX = topics.ROOT + "/agents/"


@dataclass(slots=True)
class IntakeCounts:
    """Messages by kind, and frames the buffer failed to commit (left un-acknowledged)."""

    agent_batches: int = 0
    status_messages: int = 0
    raw_messages: int = 0
    uncommitted: int = 0


class UnsIntake:
    """See the module docstring."""

    name = "broker"

    def __init__(self, config: GatewayConfig, deadletter: DeadLetter, fleet_state: fleet.FleetState) -> None:
        self.config = config
        self.deadletter = deadletter
        self.fleet = fleet_state
        self.stats = ConnectorStats()
        self.counts = IntakeCounts()
        self.mapper = PayloadMapper(config.broker.mappings) if config.broker.mappings else None
        self.nonce = secrets.token_hex(4)
        self._counter = 0
        self._runs = 0
        self._sink: Sink | None = None
        b = config.broker
        shared = f"$share/{b.share_group}/" if b.share_group else ""
        self.filters = ([shared + topics.DATA_FILTER] if b.subscribe_data else []) + (
            [topics.STATUS_FILTER] if b.subscribe_status else []) + (
            [shared + f for f in self.mapper.filters] if self.mapper is not None else [])
        self.session = BrokerSession(b, b.client_id or config.id, self.filters)

    async def run(self, sink: Sink) -> None:
        """One connection (see :class:`gateway.mqtt.BrokerSession`); ``ConnectionLost`` when it drops."""
        self.bind(sink)
        try:
            await self.session.run(self.handle, self._connected)
        finally:
            self.stats.connected = False

    def _connected(self) -> None:
        self._runs += 1
        if self._runs > 1:
            self.stats.reconnects += 1
        self.stats.connected = True

    def bind(self, sink: Sink) -> None:
        """Where :meth:`handle` commits frames (``run`` binds the sink it is given)."""
        self._sink = sink

    def handle(self, msg: Message) -> None:
        """Route one message (see the module docstring); called on the event loop."""
        self.stats.messages += 1
        topic = msg.topic
        if topic.startswith(_STATUS_PREFIX) and topic.endswith("/status"):
            self._status(msg, topic[len(_STATUS_PREFIX):-len("/status")])
            return
        try:
            asset = topics.asset_of_data_topic(topic)
        except ValueError:
            asset = None
        if asset is not None and self.config.broker.subscribe_data:
            self._agent_batch(msg)
        else:
            self._raw(msg)

    def _agent_batch(self, msg: Message) -> None:
        try:
            batch, rejected = wire.decode_batch_lenient(msg.payload)
        except WireFormatError as exc:
            self._bad(msg, "gateway_batch", f"invalid batch: {exc}")
            return
        for index, reason in sorted(rejected.items()):
            self.deadletter.write("gateway_sample", reason, topic=msg.topic, index=index)
        if rejected:
            self.stats.bad_payloads += 1
            log.warning("batch %s/%s on %s: %d samples rejected, kept in %s", batch.producer,
                        batch.batch_id, msg.topic, len(rejected), self.deadletter.path)
        self.counts.agent_batches += 1
        self.fleet.seen(batch.producer)
        if not batch.samples:
            msg.ack()
            return
        self._commit(msg, frame_rows(batch), len(batch))

    def _status(self, msg: Message, agent_id: str) -> None:
        self.counts.status_messages += 1
        if not msg.payload:
            msg.ack()
            return
        try:
            st = fleet.parse_status(agent_id, msg.payload, self.config.site)
        except fleet.StatusError as exc:
            self._bad(msg, "gateway_status", str(exc))
            return
        now = time.time()
        self.fleet.status(st, now)
        log.info("agent %s is %s (status on %s)", agent_id, st.state, msg.topic)
        batch = fleet.status_batch(msg.topic, msg.payload, st, datetime.fromtimestamp(now, UTC))
        self._commit(msg, frame_rows(batch), len(batch))

    def _raw(self, msg: Message) -> None:
        self.counts.raw_messages += 1
        if self.mapper is None:
            self._bad(msg, "mqtt_payload", "no mapping for this topic")
            return
        try:
            result = self.mapper.map(msg.topic, msg.payload)
        except MappingError as exc:
            self._bad(msg, "mqtt_payload", exc.reason)
            return
        if result.problems:
            self.stats.bad_payloads += 1
            self.deadletter.write("mqtt_payload", "; ".join(result.problems), topic=msg.topic,
                                  payload=msg.payload)
        if not result.samples:
            msg.ack()
            return
        self._counter += 1
        batch = Batch(self.config.id, f"{self.nonce}-{self._counter:010d}", self._counter,
                      tuple(result.samples))
        self._commit(msg, frame_rows(batch), len(batch))

    def _commit(self, msg: Message, rows: Sequence[Sample], n: int) -> None:
        assert self._sink is not None
        self.stats.got(n)
        fut = self._sink.submit(rows)

        def done(f: asyncio.Future[PutResult]) -> None:
            if f.cancelled() or f.exception() is not None:
                self.counts.uncommitted += 1
                return  # no PUBACK: the broker redelivers after the next connect
            if f.result().rejected:
                log.error("buffer refused a frame of %d samples from %s (overflow policy reject_new)",
                          n, msg.topic)
            msg.ack()

        fut.add_done_callback(done)

    def _bad(self, msg: Message, kind: str, reason: str, **context: Any) -> None:
        self.stats.bad_payloads += 1
        self.deadletter.write(kind, reason, topic=msg.topic, payload=msg.payload, **context)
        log.warning("message on %s refused (%s): %s; kept in %s", msg.topic, kind, reason,
                    self.deadletter.path)
        msg.ack()
