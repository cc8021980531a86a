"""The running gateway: broker intake → durable buffer (one record per agent batch) → forwarder → ingest.

``async with Gateway(config) as gw: await gw.run()`` — runs until cancelled. Parts, all reused
from the edge agent except the MQTT intake:

- :class:`~gateway.intake.UnsIntake` kept connected by the agent's
  :func:`~edge_agent.supervisor.supervise`; it commits each message as one record (the agent's
  batch document, its identity kept) to the agent's :class:`~edge_agent.buffer.SqliteBuffer` and
  acknowledges it to the broker after the (group) commit;
- the agent's :class:`~edge_agent.forwarder.Forwarder` takes those records straight from the
  buffer and sends them through the agent's :class:`~edge_agent.uplinks.http.HttpUplink` —
  in bulk (``[uplink.http] bulk = true``): many agent batches per ``POST /api/v1/batches/bulk``,
  each deduplicated by ingest on its own ``(producer, batch_id)`` and acked in the buffer on its
  own outcome; ``uplink.concurrency`` requests in flight (same retry, dead-letter and ack rules);
- frames left by an older gateway are moved into records at start (:func:`~gateway.frames.migrate_frames`);
- every ``fleet_report_s`` the gateway's own health samples (:mod:`zhizao.fleet`,
  ``<site>/fleet/gateways/<id>``) go through the same buffer;
- the health/metrics server of :mod:`gateway.health`.

Shutdown (cancel / SIGTERM): pending commits are flushed, messages not yet committed stay
un-acknowledged at the broker, records not yet delivered stay in the buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from edge_agent.buffer import EncodedBatch
from edge_agent.deadletter import DeadLetter
from edge_agent.fleet import health_report
from edge_agent.forwarder import Forwarder
from edge_agent.supervisor import supervise
from edge_agent.uplinks.http import HttpUplink
from gateway import health
from gateway.config import GatewayConfig
from gateway.fleet import FleetState
from gateway.frames import migrate_frames
from gateway.intake import UnsIntake
from zhizao.backoff import Backoff
from zhizao.model import Batch

log = logging.getLogger(__name__)


class Gateway:
    """See the module docstring. ``health_port`` is the bound port once entered."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.started = time.time()
        self.fleet = FleetState()
        self.deadletter = DeadLetter(config.deadletter_path)
        self.buffer = config.buffer.build(config.id)
        self.uplink = HttpUplink(config.uplink.http)
        self.intake = UnsIntake(config, self.deadletter, self.fleet)
        http = config.uplink.http
        self.forwarders = [
            # The buffer holds the agents' own batches as records (ids kept); the HTTP uplink sends
            # their documents as they are, many per request in bulk mode.
            Forwarder(self.buffer, self.uplink, self.deadletter,
                      max_items=http.max_batch_samples, linger=http.linger_s,
                      backoff=Backoff(initial=http.backoff_initial_s, cap=http.backoff_cap_s),
                      window=config.uplink.concurrency)
        ]
        self.migrated_frames = 0
        self.broker_down_since: float | None = time.time()
        self.health_port = 0
        self._stack = contextlib.AsyncExitStack()
        self._reports = 0

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            await self._stack.enter_async_context(self.buffer)
            self.migrated_frames = await migrate_frames(self.buffer, window=self.config.window_samples)
            await self._stack.enter_async_context(self.uplink)
            h = self.config.health
            self.health_port = await self._stack.enter_async_context(health.serve(self, h.host, h.port))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def run(self) -> None:
        """Run every part until cancelled; a crashing part (a bug) stops the gateway loudly."""
        log.info("gateway %s: %s:%d -> %s (buffer %s)", self.config.id, self.config.broker.host,
                 self.config.broker.port, self.uplink.endpoint, self.buffer.path)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(supervise(self.intake, self.buffer), name="intake")
            for i, fw in enumerate(self.forwarders):
                tg.create_task(fw.run(), name=f"forwarder-{i}")
            tg.create_task(self._report_loop(), name="fleet-report")
            tg.create_task(self._watch_broker(), name="broker-watch")

    async def _watch_broker(self) -> None:
        while True:
            if self.intake.stats.connected:
                self.broker_down_since = None
            elif self.broker_down_since is None:
                self.broker_down_since = time.time()
            await asyncio.sleep(0.5)

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.fleet_report_s)
            await self.report()

    async def report(self) -> None:
        """Commit one fleet-health report of this gateway to the buffer (forwarded like data)."""
        rep = health_report(self.config.site, self.config.id, self.buffer.stats,
                            [f.stats for f in self.forwarders], [self.intake.stats], kind="gateways")
        self._reports += 1
        samples = rep.samples(datetime.now(UTC))
        batch = Batch(self.config.id, f"report-{self.intake.nonce}-{self._reports:08d}", self._reports,
                      tuple(samples))
        await self.buffer.put_records([EncodedBatch.of_batch(batch)])
