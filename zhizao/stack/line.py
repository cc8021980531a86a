"""The whole line on one box: simulator → embedded broker → edge agent → ingest (DuckDB) → analytics.

``async with Line(options) as line:`` starts, in this order, the embedded MQTT broker (only when
the scenario has MQTT-native machines), ingest with the KPI API and web dashboard on
``options.host:options.port``, the simulator (OPC UA on a free port, MQTT to the broker), the
edge agent reading both, and the analytics loops. :meth:`finish` waits for the simulated run to
end, lets the agent read the last values, stops it reading, drains its buffer into ingest and runs
a final analytics round: after it, everything the simulator served is in the store. Leaving the
block stops everything in reverse order; an undrained agent buffer stays on disk (``data_dir``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

from analytics.scoring import AnomalyModel
from ingest.settings import Settings
from simulator.plant_export import plant_config
from simulator.runtime import SimulatorRuntime
from simulator.scenario import Scenario
from zhizao.model import AssetPath
from zhizao.net import free_port
from zhizao.stack.agent import LineAgent
from zhizao.stack.analytics import LiveAnalytics
from zhizao.stack.broker import EmbeddedBroker
from zhizao.stack.ingest import IngestServer
from zhizao.stack.mosquitto import LocalMosquitto
from zhizao.stack.site_gateway import SiteGateway

log = logging.getLogger(__name__)


@dataclass
class LineOptions:
    """What to run. ``duration_s`` is simulated seconds; ``speed`` simulated seconds per wall second."""

    scenario: Scenario
    data_dir: Path
    seed: int = 7
    speed: float | None = 30.0
    """``None``: as fast as the box can (QA runs)."""
    duration_s: float = 3600.0
    host: str = "127.0.0.1"
    port: int = 0
    """Ingest / dashboard port; 0 picks a free one."""
    keep_served: bool = False
    """Keep every sample the simulator served (for ``zhizao check``'s completeness count)."""
    models: dict[str, AnomalyModel] | None = None
    analytics_interval_s: float = 3.0
    watch_flags: bool = False
    """Record when data-quality flags first appear (``zhizao check``'s detection times)."""
    gateway: bool = False
    """Route the agent through a site gateway (MQTT 5 uplink → local Mosquitto → gateway → ingest)."""
    mosquitto: bool = False
    """Use a local Mosquitto (the ``mosquitto`` binary) instead of the embedded amqtt broker: faster
    and MQTT 5 (always with ``gateway``); the demo keeps amqtt so it needs no external program."""


class Line:
    """See the module docstring. Attributes once entered: ``ingest``, ``sim``, ``agent``,
    ``analytics``, ``broker`` (or ``None``)."""

    def __init__(self, options: LineOptions) -> None:
        self.options = options
        sc = options.scenario
        self.plant = plant_config(sc)
        self.scopes = sorted({f"{sc.site}/{sc.area}/{line.name}" for line in sc.lines})
        self.site_scope = f"{sc.site}"
        self._stack = contextlib.AsyncExitStack()
        self._analytics_task: asyncio.Task[None] | None = None
        self.broker: EmbeddedBroker | LocalMosquitto | None = None
        self.gateway: SiteGateway | None = None
        self.undelivered = 0

    # -- pieces -------------------------------------------------------------------------------
    def ingest_settings(self) -> Settings:
        o = self.options
        return Settings.model_validate({
            "host": o.host, "port": o.port or free_port(o.host),
            "storage": {"backend": "duckdb", "duckdb": {"path": str(o.data_dir / "zhizao.duckdb")}},
            "auth": {"enabled": False, "tokens_file": str(o.data_dir / "tokens.json")},
            "log_level": "warning",
        })

    def mqtt_machines(self) -> dict[str, list[AssetPath]]:
        out: dict[str, list[AssetPath]] = defaultdict(list)
        for asset, m in self.options.scenario.machines():
            if m.mqtt is not None:
                out[m.mqtt.vendor].append(asset)
        return dict(out)

    def sim_now(self) -> datetime:
        """The line's clock: scenario start + ticks served."""
        sc = self.options.scenario
        return sc.start + timedelta(seconds=self.sim.ticks_done * sc.tick_s)

    @property
    def end(self) -> datetime:
        return self.options.scenario.start + timedelta(seconds=self.options.duration_s)

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        o = self.options
        o.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        o = self.options
        vendors = self.mqtt_machines()
        broker: EmbeddedBroker | LocalMosquitto | None = None
        if o.gateway or (o.mosquitto and vendors):
            broker = await self._stack.enter_async_context(LocalMosquitto(o.data_dir / "mosquitto"))
        elif vendors:
            broker = await self._stack.enter_async_context(EmbeddedBroker(host="127.0.0.1"))
        self.broker = broker
        self.ingest = await self._stack.enter_async_context(IngestServer(self.ingest_settings(), self.plant))
        if o.gateway:
            assert broker is not None
            self.gateway = await self._stack.enter_async_context(SiteGateway(
                state_dir=o.data_dir / "gateway", broker=(broker.host, broker.port),
                ingest_url=self.ingest.url,
                site=o.scenario.site))
        self.sim = SimulatorRuntime(
            o.scenario, seed=o.seed, speed=o.speed, duration_s=o.duration_s, opcua_host="127.0.0.1",
            opcua_port=free_port(), mqtt=(self.broker.host, self.broker.port) if self.broker else None,
            keep_served=o.keep_served, autostart=False)  # servers up first, clock at start()
        # the agent goes first on the exit stack's unwind order after the simulator: enter it last
        self.agent = LineAgent(
            state_dir=o.data_dir / "agent", ingest_url=self.ingest.url,
            opcua_endpoint=None, mqtt=(self.broker.host, self.broker.port) if self.broker else None,
            mqtt_machines=vendors, run_start=o.scenario.start,
            mqtt_uplink=(broker.host, broker.port) if o.gateway and broker is not None else None)
        # MQTT subscriptions must exist before the first publish (QoS 0 machines are not queued)
        await self._stack.enter_async_context(self.agent)
        await self._wait(lambda: all(c.stats.connected for c in self.agent.connectors), 20,
                         "the agent did not connect to the broker")
        if self.gateway is not None:
            # the agent's birth message reached the gateway: its subscriptions are active, so no
            # batch can be published before anyone subscribed
            gw = self.gateway.gateway
            await self._wait(lambda: self.agent.agent_id in gw.fleet.agents, 30,
                             "the gateway did not see the agent's status message")
        await self._stack.enter_async_context(self.sim)
        if self.sim.endpoint is not None:
            await self.agent.add_opcua(self.sim.endpoint, f"Objects/{o.scenario.site}/*/*/*/*")
            await self._wait(lambda: self.agent.connected, 30, "the agent did not connect to OPC UA")
            await self._wait(lambda: all(len(getattr(c, "tags", [None])) > 0 for c in self.agent.connectors),
                             30, "the agent found no OPC UA tags")
        await asyncio.sleep(0.5)
        self.sim.start()
        self.analytics = LiveAnalytics(
            self.ingest.store, self.plant, self.scopes, o.models or {}, start=o.scenario.start,
            interval_s=o.analytics_interval_s, lag_s=max(30.0, 5 * o.speed) if o.speed else 600.0,
            watch_flags=o.watch_flags)
        self._analytics_task = asyncio.create_task(self.analytics.run(self.sim_now), name="analytics")

    async def _wait(self, cond: object, limit_s: float, what: str) -> None:
        assert callable(cond)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while not cond():
            if loop.time() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.05)

    async def finish(self, settle_s: float = 3.0, stall_s: float = 30.0) -> None:
        """Wait for the simulated run to end, then :meth:`wind_down`."""
        await self.sim.wait()
        await self.wind_down(settle_s, stall_s)

    async def wind_down(self, settle_s: float = 3.0, stall_s: float = 30.0) -> int:
        """Stop the line's clock, let the agent read the last values, drain everything into ingest,
        final analytics round. What could not be delivered (drain stalled for ``stall_s``) is logged,
        counted in :attr:`undelivered` (returned) and stays in the agent's buffer file."""
        await self.sim.halt()
        await self.settle(settle_s)
        await self.stop_analytics()
        if not self.agent.killed:
            await self.agent.stop_reading()
            try:
                await self.agent.drain(stall_s)
                if self.gateway is not None:
                    await self.gateway.drain(stall_s)
            except TimeoutError as exc:
                self.undelivered = self.agent.backlog + (self.gateway.backlog if self.gateway else 0)
                log.error("could not drain every buffer: %s", exc)
        await self.analytics.final_round(self.sim_now())
        return self.undelivered

    async def settle(self, quiet_s: float) -> None:
        """Give the agent time to read what was served last: until it read nothing new for ``quiet_s``."""
        if self.agent.killed:
            return
        last, still = -1, 0.0
        while still < quiet_s:
            n = self.agent.samples_read
            still = still + 0.1 if n == last else 0.0
            last = n
            await asyncio.sleep(0.1)

    async def stop_analytics(self) -> None:
        if self._analytics_task is not None:
            self._analytics_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._analytics_task
            self._analytics_task = None

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_analytics()
        await self._stack.aclose()
