"""Running the simulation against real outputs, paced to wall time: the OPC UA server, the MQTT
publisher, the ledger file and an optional JSONL of every value served.

``async with SimulatorRuntime(scenario, seed=7, speed=60, opcua_port=p, mqtt=(host, port),
ledger=path, duration_s=600) as sim: ... await sim.wait()``. ``opcua_port=0`` picks a free port
(see ``sim.endpoint``), ``None`` serves no OPC UA. ``speed`` is simulated seconds per
wall second (``None`` = as fast as possible). Machines with ``mqtt`` in the scenario are published
on MQTT only (they are MQTT-native: not in the OPC UA address space); all others are served over
OPC UA. The ledger is written when the run reaches its end (:meth:`wait` returns). With
``autostart=False`` the servers come up on enter but the first tick waits for :meth:`start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import orjson

from simulator.engine import Simulation, Tick, signal_units
from simulator.ledger import write_ledger
from simulator.machine import Emission
from simulator.mqtt.payloads import encode_payload, topic_for
from simulator.scenario import Scenario
from zhizao.model import AssetPath, Sample, Value
from zhizao.net import free_port
from zhizao.wire import format_ts

if TYPE_CHECKING:
    from simulator.opcua.security import OpcUaSecurity

log = logging.getLogger(__name__)
_INT_SIGNALS = ("parts_total", "parts_good", "parts_scrap")
_STR_SIGNALS = ("state", "state_reason", "product")
DEFAULT_DURATION_S = 7 * 86400.0


def _initial(signal: str) -> Value:
    if signal in _INT_SIGNALS:
        return 0
    if signal in _STR_SIGNALS:
        return ""
    return 0.0


class SimulatorRuntime:
    """The simulated line on real servers; see the module docstring. Attributes once entered:
    ``endpoint`` (OPC UA URL or None), ``node_ids`` (``"<asset>/<signal>"`` -> NodeId string),
    ``topics`` (``"<asset>"`` -> MQTT topic), ``served`` (list of served samples when
    ``keep_served``), ``ledger_records`` (after the end)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 7,
        speed: float | None = 60.0,
        duration_s: float | None = None,
        opcua_host: str = "127.0.0.1",
        opcua_port: int | None = 4840,
        security: OpcUaSecurity | None = None,
        mqtt: tuple[str, int] | None = None,
        ledger: str | Path | None = None,
        served_log: str | Path | None = None,
        keep_served: bool = False,
        autostart: bool = True,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0 (or None for as fast as possible)")
        self.scenario = scenario
        self.seed = seed
        self.speed = speed
        self.duration_s = duration_s or DEFAULT_DURATION_S
        self.opcua_host = opcua_host
        self.opcua_port = opcua_port
        self.security = security
        self.mqtt_target = mqtt
        self.ledger_path = Path(ledger) if ledger else None
        self.served_path = Path(served_log) if served_log else None
        self.keep_served = keep_served
        self.simulation = Simulation(scenario, seed, self.duration_s)
        self.assets: list[AssetPath] = self.simulation.assets
        self.units = signal_units(scenario)
        cfgs = [m for _, m in scenario.machines()]
        self.mqtt_vendor: list[tuple[str, int] | None] = [
            (m.mqtt.vendor, m.mqtt.qos) if m.mqtt is not None else None for m in cfgs
        ]
        self.opcua_machines = [k for k, v in enumerate(self.mqtt_vendor) if v is None]
        self.topics: dict[str, str] = {
            str(self.assets[k]): topic_for(v[0], self.assets[k]) for k, v in enumerate(self.mqtt_vendor) if v
        }
        self.endpoint: str | None = None
        self.node_ids: dict[str, str] = {}
        self.served: list[Sample] = []
        self.ledger_records: list[dict[str, Any]] = []
        self.ticks_done = 0
        self.opcua_writes = 0
        self.lag_s = 0.0
        self._opcua: Any = None
        self._mqtt: Any = None
        self._served_fh: IO[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._go = asyncio.Event()
        if autostart:
            self._go.set()
        self._opc_index = {k: j for j, k in enumerate(self.opcua_machines)}

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> SimulatorRuntime:
        try:
            if self.opcua_port is not None and self.opcua_machines:
                await self._start_opcua()
            if self.mqtt_target is not None and self.topics:
                from simulator.mqtt.publisher import MqttPublisher

                host, port = self.mqtt_target
                self._mqtt = await MqttPublisher(host, port).__aenter__()
            if self.served_path is not None:
                self._served_fh = self.served_path.open("wb")
        except BaseException:
            await self._close()
            raise
        self._task = asyncio.create_task(self._run(), name="zhizao-sim")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    async def _start_opcua(self) -> None:
        from simulator.opcua.server import OpcUaServer

        machines = [
            (self.assets[k], {s: (_initial(s), u) for s, u in self.units[k].items()})
            for k in self.opcua_machines
        ]
        assert self.opcua_port is not None
        if self.opcua_port == 0:
            self.opcua_port = free_port(self.opcua_host)
        server = OpcUaServer(
            machines,
            host=self.opcua_host,
            port=self.opcua_port,
            security=self.security,
            wait_for_first_write=True,
        )
        self._opcua = await server.__aenter__()
        self.endpoint = server.endpoint
        for k in self.opcua_machines:
            for s in self.units[k]:
                self.node_ids[f"{self.assets[k]}/{s}"] = server.node_id(self.assets[k], s)

    async def _close(self) -> None:
        if self._opcua is not None:
            self.opcua_writes = self._opcua.writes
            await self._opcua.__aexit__(None, None, None)
            self._opcua = None
        if self._mqtt is not None:
            await self._mqtt.__aexit__(None, None, None)
        if self._served_fh is not None:
            self._served_fh.close()
            self._served_fh = None

    @property
    def mqtt_published(self) -> int:
        return int(self._mqtt.published) if self._mqtt is not None else 0

    @property
    def mqtt_dropped(self) -> int:
        return int(self._mqtt.dropped) if self._mqtt is not None else 0

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def wait(self) -> None:
        """Wait until the run reaches its end (re-raises an error the run died of)."""
        if self._task is None:
            raise RuntimeError("the runtime is not started")
        await asyncio.shield(self._task)

    # -- the loop ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the clock of a runtime created with ``autostart=False`` (servers are up on enter,
        so clients can subscribe before the first tick is served)."""
        self._go.set()

    async def halt(self) -> None:
        """Stop the clock for good (no new values) but keep the servers up, so readers can catch
        up with what was served; ``__aexit__`` then closes the servers."""
        self._go.set()  # a runtime never started is halted before its first tick
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await self._go.wait()
        dt = self.simulation.dt
        t0 = time.monotonic()
        for tick in self.simulation.ticks():
            await self._serve(tick)
            self.ticks_done = tick.index + 1
            if self.speed is None:
                if tick.index % 10 == 0:
                    await asyncio.sleep(0)
                continue
            ahead = t0 + self.ticks_done * dt / self.speed - time.monotonic()
            if ahead > 0:
                self.lag_s = 0.0
                await asyncio.sleep(ahead)
            else:
                self.lag_s = -ahead
                if tick.index % 10 == 0:
                    await asyncio.sleep(0)
        if self._mqtt is not None:
            await self._mqtt.flush()
        self.ledger_records = self.simulation.ledger()
        if self.ledger_path is not None:
            write_ledger(self.ledger_records, self.ledger_path)
        if self._opcua is not None:
            self.opcua_writes = self._opcua.writes
        log.info("simulation finished after %d ticks", self.ticks_done)

    async def _serve(self, tick: Tick) -> None:
        for k, out in enumerate(tick.emissions):
            ts = tick.times[k]
            vendor = self.mqtt_vendor[k]
            if vendor is None:
                if self._opcua is None:
                    continue
                await self._opcua.write(self._opc_index[k], ts, out)
                self._record(k, ts, out)
            elif self._mqtt is not None:
                payload = encode_payload(vendor[0], self.assets[k], ts, out, self.units[k])
                on_published = self._recorder(k, ts, out) if self._recording else None
                self._mqtt.publish(self.topics[str(self.assets[k])], payload, vendor[1], on_published)

    @property
    def _recording(self) -> bool:
        return self.keep_served or self._served_fh is not None

    def _recorder(self, k: int, ts: Any, out: list[Emission]) -> Callable[[], None]:
        def record() -> None:
            self._record(k, ts, out)

        return record

    def _record(self, k: int, ts: Any, out: list[Emission]) -> None:
        """Remember values served (OPC UA: written; MQTT: acknowledged by the broker)."""
        if not self._recording:
            return
        asset = self.assets[k]
        units = self.units[k]
        for name, value, quality in out:
            if self.keep_served:
                self.served.append(Sample(asset, name, ts, value, units[name], quality))
            if self._served_fh is not None:
                row = {
                    "asset": str(asset),
                    "signal": name,
                    "ts": format_ts(ts),
                    "value": value,
                    "unit": units[name],
                    "quality": quality.value,
                }
                self._served_fh.write(orjson.dumps(row) + b"\n")


__all__ = ["SimulatorRuntime"]
