"""MQTT-native machines publish vendor payloads to a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt

from simulator import load_scenario
from simulator.runtime import SimulatorRuntime
from tests.support.servers import Mosquitto

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_each_mqtt_native_machine_publishes_its_vendor_payloads(mosquitto: Mosquitto) -> None:
    sc = load_scenario(EXAMPLES / "compact.yaml")
    got: dict[str, list[Any]] = {}
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="sim-test-sub") as sub:
        await sub.subscribe("acme/#", qos=1)
        await sub.subscribe("brightline/#", qos=1)
        async with SimulatorRuntime(
            sc,
            seed=7,
            speed=30,
            opcua_port=None,
            duration_s=120,
            mqtt=(mosquitto.host, mosquitto.port),
            keep_served=True,
        ) as sim:
            assert sim.topics == {
                "plant1/a1/line1/imm-1": "acme/line1/imm-1/telemetry",
                "plant1/a1/line1/pack-1": "brightline/plant1/pack-1/data",
            }

            async def collect() -> None:
                async for msg in sub.messages:
                    got.setdefault(str(msg.topic), []).append(json.loads(bytes(msg.payload)))

            task = asyncio.create_task(collect())
            await asyncio.wait_for(sim.wait(), 30)
            await asyncio.sleep(0.5)
            task.cancel()
        assert sim.mqtt_dropped == 0
        assert sim.mqtt_published == 2 * 120
    acme = got["acme/line1/imm-1/telemetry"]
    bright = got["brightline/plant1/pack-1/data"]
    assert len(acme) == 120 and len(bright) == 120
    first = acme[0]
    assert set(first) <= {"ts", "machine", "metrics", "status"}
    assert first["machine"] == "imm-1"
    assert isinstance(first["ts"], int) and first["ts"] == 1795392000000  # 2026-11-23T00:00:00Z in ms
    metrics = first["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["melt_temp"]["unit"] == "degC" and isinstance(metrics["melt_temp"]["value"], float)
    assert metrics["state"]["value"] in ("running", "idle", "setup", "down", "off")
    assert metrics["parts_total"]["unit"] == ""
    stuck_status = [m for m in acme if "status" in m]
    assert all(set(m["status"].values()) <= {"stale", "fault"} for m in stuck_status)
    b = bright[0]
    assert set(b) == {"timestamp", "device", "values"}
    assert b["device"] == "pack-1"
    assert b["timestamp"] == "2026-11-23T08:00:00.000+08:00"
    assert datetime.fromisoformat(str(b["timestamp"])).utcoffset() == timedelta(hours=8)
    row = {v["name"]: v for v in b["values"]}
    assert row["conveyor_speed"]["uom"] == "m/min" and row["conveyor_speed"]["q"] == 192
    # the dropout of screw_torque (simulated 30..90 s) is published once with q=0, then nothing
    torque_q = [v["q"] for m in bright for v in m["values"] if v["name"] == "screw_torque"]
    assert torque_q.count(0) == 1
    assert len(torque_q) == 120 - 60 + 1
    served = [s for s in sim.served if str(s.asset) == "plant1/a1/line1/imm-1"]
    assert len(served) == sum(len(m["metrics"]) for m in acme)
