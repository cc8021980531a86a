"""/healthz turns unhealthy when data stops flowing (source stall or uplink stall) and recovers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.config import load_agent_config
from tests.edge_agent.e2e import MQTT_DIR
from tests.edge_agent.receiver import Receiver
from tests.edge_agent.test_e2e import http_get
from tests.edge_agent.test_mqtt_connector import Publisher, acme
from tests.support.servers import Mosquitto


async def test_healthz_follows_the_data_flow(
    tmp_path: Path, mosquitto: Mosquitto, receiver: Receiver
) -> None:
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(f"""
[agent]
id = "h-agent"
state_dir = "{tmp_path / "state"}"
[health]
port = 0
interval_s = 0.5
stale_intervals = 2
[[connectors]]
type = "mqtt"
host = "127.0.0.1"
port = {mosquitto.port}
{(MQTT_DIR / "acme.toml").read_text()}
[uplink]
type = "http"
url = "{receiver.url}"
linger_s = 0.05
backoff_initial_s = 0.1
backoff_cap_s = 0.2
""")
    cfg, digest = load_agent_config(cfg_path)
    agent = Agent(cfg, digest)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    pub = Publisher(mosquitto)

    async def health() -> tuple[int, dict[str, object]]:
        assert agent.health_port is not None
        status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{agent.health_port}/healthz")
        return status, json.loads(body)

    try:
        for _ in range(100):
            if agent.connectors[0].stats.connected:
                break
            await asyncio.sleep(0.05)
        for i in range(5):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
        await asyncio.sleep(0.3)
        assert (await health())[0] == 200
        await asyncio.sleep(1.5)  # the source goes quiet: a stall
        status, doc = await health()
        assert status == 503 and "no data" in str(doc["problems"])
        receiver.stop()  # data flows again but cannot be delivered: an uplink stall
        for i in range(5, 40):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
            await asyncio.sleep(0.05)
        status, doc = await health()
        assert status == 503 and "nothing delivered" in str(doc["problems"]), doc
        receiver.start()
        for i in range(40, 50):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
            await asyncio.sleep(0.05)
        assert (await health())[0] == 200
        for _ in range(100):
            if agent.buffer.stats.committed == 50 and agent.buffer.stats.backlog_samples == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        pub.close()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(receiver.state.samples()) == 50
