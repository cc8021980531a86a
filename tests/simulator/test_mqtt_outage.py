"""A broker outage during a run: the simulator keeps its pace, counts what it could not publish,
and resumes publishing after the broker is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import aiomqtt

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


async def test_messages_written_to_a_broker_that_then_dies_are_counted_as_dropped(tmp_path: Path) -> None:
    """The broker freezes (SIGSTOP: the connection stays open, nothing is read or answered), then
    is killed and restarted. QoS 0 messages written meanwhile left the socket but never reached it:
    they are dropped, not published — ``published`` never exceeds what a subscriber received."""
    broker = Mosquitto(tmp_path / "mosquitto", extra_config="queue_qos0_messages true\n")
    broker.start()
    received: set[tuple[str, bytes]] = set()
    stop = asyncio.Event()

    async def subscribe() -> None:  # persistent session: what arrives while it reconnects waits
        while not stop.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client(broker.host, broker.port, identifier="outage-counter",
                                          clean_session=False) as sub:
                    await sub.subscribe("#", qos=1)
                    async for msg in sub.messages:
                        received.add((str(msg.topic), bytes(msg.payload)))
            await asyncio.sleep(0.1)

    sc = load_scenario(EXAMPLES / "compact.yaml")
    reader = asyncio.create_task(subscribe())
    try:
        await asyncio.sleep(1.5)  # subscribed, and the session saved (autosave every second)
        async with SimulatorRuntime(
            sc, seed=7, speed=20, opcua_port=None, duration_s=200, mqtt=(broker.host, broker.port)
        ) as sim:
            await asyncio.sleep(1.5)
            assert broker.process is not None
            os.kill(broker.process.pid, signal.SIGSTOP)
            frozen_at = sim.ticks_done
            await asyncio.sleep(1.5)
            thawed_at = sim.ticks_done
            broker.kill()
            broker.start()
            await asyncio.wait_for(sim.wait(), 60)
        await asyncio.sleep(1.0)  # the last messages reach the subscriber
    finally:
        stop.set()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        broker.kill()
    assert sim.mqtt_published + sim.mqtt_dropped == 2 * 200
    assert thawed_at - frozen_at >= 20  # both machines published while the broker was frozen
    assert sim.mqtt_dropped >= 2 * (thawed_at - frozen_at) - 2
    assert sim.mqtt_published <= len(received), (sim.mqtt_published, len(received))
