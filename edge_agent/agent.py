"""The running agent: connectors → durable buffer → forwarder → uplink, with health and metrics.

``await Agent(config, config_hash).run(stop)`` runs until ``stop`` is set, then shuts down in
the order that loses nothing: connectors stop and hand over what they read, the buffer commits
it (what it cannot commit — disk full — is counted and logged by its connector, see
``Connector.settle_at_stop``), the forwarder stops (a batch in flight stays in the buffer,
resent under the same id on the next start), the uplink closes, the buffer closes. With
``agent.site`` set it also commits its own health every ``agent.fleet_report_s`` to the buffer,
forwarded like data: the fleet convention's samples on ``<site>/fleet/agents/<id>`` (:mod:`zhizao.fleet`),
with this process's ``fleet.instance`` (:mod:`edge_agent.fleet`). At a clean stop, once the
connectors' data is committed, it commits a last report with ``fleet.up = 0`` and — if the uplink's
last send succeeded — gives the forwarder up to :data:`STOP_DELIVERY_S` to deliver the backlog
(that report last), so ingest's fleet view shows the agent offline at once; what is not delivered
by then stays in the buffer for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any, Final

from edge_agent.buffer import SqliteBuffer
from edge_agent.config import AgentConfig
from edge_agent.connectors.base import Connector
from edge_agent.connectors.registry import build_connector
from edge_agent.deadletter import DeadLetter
from edge_agent.fleet import agent_samples, health_report, new_instance_id
from edge_agent.forwarder import Forwarder
from edge_agent.health import Health, HealthServer
from edge_agent.metrics import AgentCollector, AgentMetrics
from edge_agent.supervisor import supervise
from edge_agent.uplinks.registry import build_uplink
from zhizao import __version__
from zhizao.backoff import Backoff
from zhizao.fleet import FleetReport
from zhizao.model import Sample

log = logging.getLogger(__name__)

STOP_DELIVERY_S: Final = 5.0
"""At a clean stop with ``agent.site`` set: how long the forwarder may go on delivering the backlog
and the last fleet report (``fleet.up = 0``) when the uplink's last send succeeded."""


class Agent:
    """See the module docstring. Components are built in ``__init__`` (nothing connects)."""

    def __init__(self, config: AgentConfig, config_hash: str) -> None:
        self.config = config
        self.config_hash = config_hash
        a = config.agent
        assert config.deadletter.path is not None
        self.deadletter = DeadLetter(config.deadletter.path, config.deadletter.max_bytes)
        self.buffer: SqliteBuffer = config.buffer.build(a.id, group_series=True)
        self.connectors: list[Connector] = [
            build_connector(c, a.id, a.state_dir, self.deadletter) for c in config.connectors
        ]
        up = config.uplink
        self.uplink = build_uplink(up, a.id, self.status)
        self.forwarder = Forwarder(
            self.buffer,
            self.uplink,
            self.deadletter,
            max_items=up.max_batch_samples,
            linger=up.linger_s,
            backoff=Backoff(initial=up.backoff_initial_s, cap=up.backoff_cap_s),
        )
        info = {"version": __version__, "config_hash": config_hash, "agent": a.id}
        self.metrics = AgentMetrics(
            AgentCollector(self.buffer, self.forwarder, self.connectors, self.deadletter, info,
                           kinds={c.name: c.type for c in config.connectors})
        )
        h = config.health
        self.health = Health(
            self.connectors,
            self.buffer,
            self.forwarder,
            interval_s=h.interval_s,
            stale_intervals=h.stale_intervals,
            connector_stale_after_s=h.connector_stale_after_s,
        )
        self.health_port: int | None = None
        self.instance = new_instance_id()
        """This process's ``fleet.instance`` (see :mod:`edge_agent.fleet`)."""

    def status(self) -> dict[str, Any]:
        """Fields of the agent's status message (MQTT uplink birth/refresh)."""
        return {
            "version": __version__,
            "config_hash": self.config_hash,
            "backlog": self.buffer.stats.backlog_samples,
            "backlog_age_s": round(self.buffer.stats.backlog_age(), 3),
        }

    async def _forward(self) -> None:
        """The forwarder, restarted if it ever fails (a bug or a buffer error must not stop delivery)."""
        while True:
            try:
                await self.forwarder.run()
            except Exception:  # supervisor loop: log, back off, go on
                log.exception("forwarder failed; restarting it in 1 s")
                await asyncio.sleep(1.0)

    def fleet_report(self, site: str) -> FleetReport:
        """This agent's health now, as the fleet convention's figures (:mod:`zhizao.fleet`)."""
        return health_report(site, self.config.agent.id, self.buffer.stats, [self.forwarder.stats],
                             [c.stats for c in self.connectors])

    def fleet_samples(self, site: str, *, up: bool = True) -> list[Sample]:
        """This agent's fleet report now as samples (``up=False``: the last one, ``fleet.up = 0``)."""
        return agent_samples(self.fleet_report(site), datetime.now(UTC), self.instance, up=up)

    async def _report_loop(self, site: str) -> None:
        """Every ``fleet_report_s``: the agent's health into its own buffer, forwarded like data."""
        while True:
            await asyncio.sleep(self.config.agent.fleet_report_s)
            try:
                await self.buffer.submit(self.fleet_samples(site))
            except Exception:
                log.warning("fleet-health report not stored", exc_info=True)

    async def _report_down(self, site: str) -> None:
        """At a clean stop: commit the last fleet report (``fleet.up = 0``) and, if the uplink's
        last send succeeded, let the forwarder deliver the backlog for up to ``STOP_DELIVERY_S``."""
        try:
            await self.buffer.submit(self.fleet_samples(site, up=False))
        except Exception:
            log.warning("last fleet-health report (fleet.up = 0) not stored", exc_info=True)
            return
        if not self.forwarder.stats.up:
            log.info("uplink down: the last fleet report (fleet.up = 0) waits in the buffer")
            return
        deadline = time.monotonic() + STOP_DELIVERY_S
        while self.buffer.stats.backlog_samples and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.05)
        if self.buffer.stats.backlog_samples:
            log.info("stopping with %d samples not delivered (the last fleet report among them)",
                     self.buffer.stats.backlog_samples)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (see the module docstring)."""
        cfg = self.config
        log.info(
            "agent %s %s starting (config %s): %d connectors, uplink %s",
            cfg.agent.id,
            __version__,
            self.config_hash,
            len(self.connectors),
            cfg.uplink.type,
        )
        async with self.buffer, contextlib.AsyncExitStack() as stack:
            if cfg.health.enabled:
                server = HealthServer(self.health, self.metrics.render, cfg.health.host, cfg.health.port)
                await stack.enter_async_context(server)
                self.health_port = server.port
            await stack.enter_async_context(self.uplink)
            forwarder = asyncio.create_task(self._forward(), name="forwarder")
            readers = [
                asyncio.create_task(supervise(c, self.buffer), name=f"connector-{c.name}")
                for c in self.connectors
            ]
            if cfg.agent.site is not None:
                readers.append(asyncio.create_task(self._report_loop(cfg.agent.site), name="fleet-report"))
            else:
                log.info("agent.site not set: no fleet-health samples (the Edge fleet dashboard will not "
                         "list this agent; /metrics has the same figures)")
            try:
                await stop.wait()
            finally:
                log.info("agent %s stopping", cfg.agent.id)
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                await self.buffer.flush()
                for connector in self.connectors:
                    await connector.settle_at_stop(self.buffer)
                if cfg.agent.site is not None:
                    await self._report_down(cfg.agent.site)
                forwarder.cancel()
                await asyncio.gather(forwarder, return_exceptions=True)
        log.info(
            "agent %s stopped; %d samples wait in the buffer", cfg.agent.id, self.buffer.stats.backlog_samples
        )
