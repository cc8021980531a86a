"""The edge agent's own MQTT uplink (buffer → Forwarder → MqttUplink) → Mosquitto → gateway → ingest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edge_agent.buffer import SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.mqtt.config import MqttUplinkConfig
from edge_agent.uplinks.mqtt.uplink import MqttUplink
from gateway.testing import duckdb_counts, simulated_batches
from tests.gateway.conftest import GatewayFactory, Ingest, wait_for
from tests.support.servers import Mosquitto


async def _until(predicate: Callable[[], bool], limit: float, what: str) -> None:
    await asyncio.to_thread(wait_for, predicate, limit, what)


def _agent_status(ingest: Ingest) -> dict[str, Any]:
    nodes = httpx.get(f"{ingest.url}/api/v1/agents", params={"kind": "agents"}, timeout=5).json()
    found: dict[str, Any] = {n["id"]: n for n in nodes}.get("agent-r", {})
    return found


async def test_real_agent_mqtt_uplink_through_the_gateway_exactly_once(
    mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = gateway_factory()
    samples = [s for b in simulated_batches(300, n_agents=1)["agent-0"] for s in b.samples]
    cfg = MqttUplinkConfig(host=mosquitto.host, port=mosquitto.port, linger_s=0.2, timeout_s=5)
    buffer = SqliteBuffer(tmp_path / "agent.sqlite", "agent-r", synchronous="normal")

    def status() -> dict[str, Any]:
        return {"version": "9.9", "config_hash": "feed", "backlog": buffer.stats.backlog_samples,
                "backlog_age_s": 0.0}

    async with buffer, MqttUplink(cfg, "agent-r", status) as uplink:
        forwarder = Forwarder(buffer, uplink, DeadLetter(tmp_path / "agent-dl.jsonl"), max_items=500,
                              linger=0.2)
        task = asyncio.create_task(forwarder.run())
        for i in range(0, len(samples), 1000):
            await buffer.put(samples[i:i + 1000])
        await _until(lambda: ingest.written() >= len(samples), 60, "every sample in ingest")
        await _until(lambda: _agent_status(ingest).get("status") == "online", 20, "agent-r online")
        assert _agent_status(ingest)["version"] == "9.9"
        task.cancel()
    await _until(lambda: _agent_status(ingest).get("status") == "offline", 20, "agent-r offline")
    await _until(lambda: gw.health()["backlog_samples"] == 0, 20, "an empty gateway buffer")
    gw.stop()
    ingest.stop()
    assert duckdb_counts(ingest.db_path) == (len(samples), len(samples))
