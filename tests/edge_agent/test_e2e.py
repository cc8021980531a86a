"""End to end: the simulator's workshop (real OPC UA server, real Mosquitto) → agent → HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.config import load_agent_config
from simulator.runtime import SimulatorRuntime
from simulator.scenario import load_scenario
from tests.edge_agent.e2e import ROOT, agent_toml, check_delivery
from tests.edge_agent.receiver import Receiver
from tests.support.ports import free_port
from tests.support.servers import Mosquitto
from zhizao.model import Quality


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_workshop_all_signals_over_opcua_and_mqtt(
    tmp_path: Path, mosquitto: Mosquitto, receiver: Receiver
) -> None:
    scenario = load_scenario(ROOT / "examples" / "workshop.toml")
    port = free_port()
    sim = SimulatorRuntime(
        scenario,
        seed=7,
        speed=20,
        duration_s=3600,
        opcua_port=port,
        mqtt=(mosquitto.host, mosquitto.port),
        keep_served=True,
    )
    async with sim:
        assert sim.endpoint is not None
        cfg_path = tmp_path / "agent.toml"
        cfg_path.write_text(
            agent_toml(
                tmp_path / "state",
                opcua_endpoint=sim.endpoint,
                broker_port=mosquitto.port,
                receiver_url=receiver.url,
            )
        )
        cfg, digest = load_agent_config(cfg_path)
        agent = Agent(cfg, digest)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(8)
        assert agent.health_port is not None
        status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{agent.health_port}/healthz")
        assert status == 200, body
        status, metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{agent.health_port}/metrics")
        assert 'zhizao_agent_samples_read_total{connector="sim-opcua"}' in metrics
        assert (
            "zhizao_agent_backlog_samples" in metrics
            and "zhizao_agent_uplink_latency_seconds_bucket" in metrics
        )
        # values served in the last moments before the server stops may never be published by it
        settled = len(sim.served)
        await asyncio.sleep(0.5)
    # the simulator stopped: let the agent deliver the rest, then stop it
    for _ in range(100):
        if agent.buffer.stats.backlog_samples == 0 and agent.buffer.stats.committed > 0:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    received = receiver.state.samples()
    report = check_delivery(sim.served, received, exclude=lambda i, s: i >= settled)
    assert report.ok(), report.summary()
    machines = {str(a) for a in sim.assets}
    assert {str(s.asset) for s in received} == machines, "every machine, OPC UA and MQTT-native"
    mqtt_machines = set(sim.topics)
    assert mqtt_machines and mqtt_machines <= {str(s.asset) for s in received}
    served_series = {(str(s.asset), s.signal) for s in sim.served}
    got_series = {(str(s.asset), s.signal) for s in received}
    assert served_series == got_series, served_series ^ got_series
    assert any(s.unit == "degC" for s in received) and {s.quality for s in received} >= {Quality.GOOD}
    assert report.checked > 1000, report.summary()
