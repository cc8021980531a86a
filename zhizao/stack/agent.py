"""The edge agent of the one-box stack, assembled from the agent's parts (``edge_agent``).

One agent reads the simulator's OPC UA server (browse ``Objects/<site>/<area>/*/*/*``) and the
MQTT-native machines through the broker (the vendor mappings of ``edge_agent/connectors/mqtt``
with every machine's asset path filled in from the scenario), commits everything to its durable
SQLite buffer and forwards batches over HTTP to ingest — or, with ``mqtt_uplink``, over MQTT 5 to
the broker, where the site gateway picks them up.

Lifecycle: ``async with LineAgent(...) as agent`` starts the connectors (supervised: reconnect
with backoff) and the forwarder. :meth:`stop_reading` stops the connectors (what they read is
committed); :meth:`drain` waits until the buffer is empty (everything acknowledged by ingest).
Leaving the block stops reading, drains for up to ``drain_timeout_s`` and closes the buffer:
whatever could not be delivered stays in the buffer file (``buffer_path``) and is sent at the
next start — nothing is lost. :meth:`kill` stops everything at once without draining (the QA
"agent stopped mid-run" case).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tomllib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from edge_agent.buffer import PutResult, SqliteBuffer
from edge_agent.connectors.base import Connector
from edge_agent.connectors.mqtt import MqttConnector, MqttConnectorConfig
from edge_agent.connectors.opcua import OpcUaConnector, OpcUaConnectorConfig
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.mapping import JsonMapping
from edge_agent.supervisor import supervise
from edge_agent.uplinks.base import Uplink
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from edge_agent.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from zhizao.backoff import Backoff
from zhizao.model import AssetPath, Sample

log = logging.getLogger(__name__)
MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "edge_agent" / "connectors" / "mqtt"


def vendor_mapping(vendor: str, machines: list[AssetPath]) -> JsonMapping:
    """The shipped mapping of ``vendor`` with each of its ``machines`` mapped to its full path."""
    doc = tomllib.loads((MAPPINGS_DIR / f"{vendor}.toml").read_text(encoding="utf-8"))
    connectors = doc["connectors"]
    entries = connectors["mappings"] if "mappings" in connectors else connectors["mqtt"]["mappings"]
    mapping = JsonMapping.model_validate(entries[0])
    return mapping.model_copy(update={"assets": {m.machine: str(m) for m in machines}})


class RunWindowSink:
    """The buffer, behind a filter on the line's run window.

    Named policy ``skip_before_run``: samples stamped before the simulated line's clock started are
    the OPC UA server's placeholder initial values (wall-clock time, zero/empty values), not
    measurements; they are counted in ``skipped``, logged once, and not forwarded. Everything
    else goes to the buffer unchanged."""

    def __init__(self, buffer: SqliteBuffer, start: datetime | None) -> None:
        self.buffer = buffer
        self.start = start
        self.skipped = 0

    def submit(self, samples: Sequence[Sample], marks: dict[str, str] | None = None
               ) -> asyncio.Future[PutResult]:
        if self.start is not None:
            start = self.start
            kept = [s for s in samples if s.ts >= start]
            if len(kept) != len(samples):
                if not self.skipped:
                    log.info("agent: skipping placeholder values stamped before the run started (%s)",
                             start.isoformat())
                self.skipped += len(samples) - len(kept)
                samples = kept
        if marks is None:
            return self.buffer.submit(samples)
        return self.buffer.submit(samples, marks)

    async def marks(self, prefix: str) -> dict[str, str]:
        """The connector's resume marks, from the buffer."""
        return await self.buffer.marks(prefix)


class LineAgent:
    """See the module docstring."""

    def __init__(
        self,
        *,
        state_dir: Path,
        ingest_url: str,
        agent_id: str = "line-agent",
        opcua_endpoint: str | None = None,
        browse_pattern: str = "Objects/*/*/*/*/*",
        mqtt: tuple[str, int] | None = None,
        mqtt_machines: dict[str, list[AssetPath]] | None = None,
        drain_timeout_s: float = 30.0,
        run_start: datetime | None = None,
        mqtt_uplink: tuple[str, int] | None = None,
        max_items: int = 5000,
        linger_s: float = 0.5,
    ) -> None:
        self.state_dir = state_dir
        self.agent_id = agent_id
        self.buffer_path = state_dir / "agent-buffer.sqlite"
        self.drain_timeout_s = drain_timeout_s
        self.deadletter = DeadLetter(state_dir / "agent-deadletter.jsonl")
        self.buffer = SqliteBuffer(self.buffer_path, agent_id, commit_interval=0.05,
                                   group_series=True)
        self.uplink: Uplink
        if mqtt_uplink is not None:  # to the site gateway through the broker
            self.uplink = MqttUplink(MqttUplinkConfig(
                host=mqtt_uplink[0], port=mqtt_uplink[1], protocol="5", client_id=f"{agent_id}-uplink",
                max_batch_samples=max_items, linger_s=linger_s), agent_id, lambda: {"backlog": self.backlog})
        else:
            self.uplink = HttpUplink(HttpUplinkConfig(url=ingest_url, gzip=True, timeout_s=10.0,
                                                      max_batch_samples=max_items, linger_s=linger_s))
        self.forwarder = Forwarder(self.buffer, self.uplink, self.deadletter, max_items=max_items,
                                   linger=linger_s, backoff=Backoff(initial=0.2, cap=5.0))
        self.sink = RunWindowSink(self.buffer, run_start)
        self.connectors: list[Connector] = []
        if opcua_endpoint is not None:
            self.connectors.append(self._opcua(opcua_endpoint, browse_pattern))
        if mqtt is not None and mqtt_machines:
            cfg = MqttConnectorConfig(
                host=mqtt[0], port=mqtt[1], protocol="3.1.1", qos=1, client_id=f"{agent_id}-mqtt",
                mappings=[vendor_mapping(v, ms) for v, ms in sorted(mqtt_machines.items())])
            self.connectors.append(MqttConnector(cfg, agent_id, self.deadletter))
        self._readers: list[asyncio.Task[None]] = []
        self._forwarding: asyncio.Task[None] | None = None
        self.killed = False

    async def add_opcua(self, endpoint: str, browse_pattern: str) -> None:
        """Start reading one more OPC UA server (its endpoint is known only once it runs)."""
        connector = self._opcua(endpoint, browse_pattern)
        self.connectors.append(connector)
        self._readers.append(asyncio.create_task(
            supervise(connector, self.sink, backoff=Backoff(initial=0.2, cap=5.0)),
            name=f"agent-{connector.name}"))

    def _opcua(self, endpoint: str, browse_pattern: str) -> OpcUaConnector:
        return OpcUaConnector(OpcUaConnectorConfig.model_validate({
            "endpoint": endpoint, "browse": [{"pattern": browse_pattern}],
            "publishing_interval_ms": 100, "sampling_interval_ms": 0, "queue_size": 5000,
            "request_timeout_s": 5, "browse_cache_ttl_s": 0,
        }), self.agent_id, self.state_dir)

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.buffer.__aenter__()
        try:
            await self.uplink.__aenter__()
        except BaseException:
            await self.buffer.close()
            raise
        self._forwarding = asyncio.create_task(self.forwarder.run(), name="agent-forwarder")
        for c in self.connectors:
            self._readers.append(asyncio.create_task(
                supervise(c, self.sink, backoff=Backoff(initial=0.2, cap=5.0)), name=f"agent-{c.name}"))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.killed:
            await self.stop_reading()
            try:
                await self.drain(self.drain_timeout_s)
            except TimeoutError:
                log.warning("agent: %d samples not yet delivered; kept in %s for the next start",
                            self.backlog, self.buffer_path)
        await self._shutdown()

    @property
    def connected(self) -> bool:
        return all(c.stats.connected for c in self.connectors)

    @property
    def samples_read(self) -> int:
        return sum(c.stats.samples_read for c in self.connectors)

    @property
    def backlog(self) -> int:
        return self.buffer.stats.backlog_samples

    async def stop_reading(self) -> None:
        """Stop every connector; what they read so far is committed to the buffer."""
        for t in self._readers:
            t.cancel()
        for t in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._readers.clear()
        if not self.killed:
            await self.buffer.flush()

    async def drain(self, stall_s: float) -> None:
        """Wait until everything committed is acknowledged by ingest. ``TimeoutError`` when the
        backlog did not shrink for ``stall_s`` seconds (ingest down or refusing)."""
        await self.buffer.flush()
        loop = asyncio.get_running_loop()
        best, since = self.backlog, loop.time()
        while self.backlog > 0:
            if self.backlog < best:
                best, since = self.backlog, loop.time()
            elif loop.time() - since > stall_s:
                raise TimeoutError(f"{self.backlog} samples not delivered; no progress for {stall_s:.0f} s")
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """Stop at once, like a machine losing power: no drain (the buffer file keeps the rest)."""
        self.killed = True
        await self.stop_reading()
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._forwarding is not None:
            self._forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._forwarding
            self._forwarding = None
            await self.uplink.__aexit__(None, None, None)
            await self.buffer.close()
