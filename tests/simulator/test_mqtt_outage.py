"""A broker outage during a run: the simulator keeps its pace, counts what it could not publish,
and resumes publishing after the broker is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from simulator import load_scenario
from simulator.runtime import SimulatorRuntime
from tests.support.servers import Mosquitto

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_broker_restart_mid_run_is_counted_and_recovered(mosquitto: Mosquitto) -> None:
    sc = load_scenario(EXAMPLES / "compact.yaml")
    t0 = time.monotonic()
    async with SimulatorRuntime(
        sc, seed=7, speed=20, opcua_port=None, duration_s=400, mqtt=(mosquitto.host, mosquitto.port)
    ) as sim:
        await asyncio.sleep(2.0)
        mosquitto.kill()
        await asyncio.sleep(3.0)
        mosquitto.start()
        at_restart = sim.mqtt_published
        await asyncio.wait_for(sim.wait(), 60)
        resumed = sim.mqtt_published - at_restart
        ticks_after = sim.ticks_done
    assert time.monotonic() - t0 < 40  # the outage does not stall the simulated line
    assert sim.mqtt_dropped > 0
    assert sim.mqtt_published + sim.mqtt_dropped == 2 * 400
    assert resumed > 0 and ticks_after == 400  # publishing resumed after the restart
