"""Chaos, end to end, with the agent as a real process (``zhizao agent --config``):

receiver down for ``ZHIZAO_AGENT_OUTAGE_S`` seconds (default 3 here; ``ZHIZAO_AGENT_OUTAGE_S=60``
runs the issue's 60 s), the agent ``kill -9``-ed while it holds a backlog and restarted, the
broker restarted (with persistence). Asserted at the receiver against what the simulator served:
zero duplicates; zero loss for MQTT (acked to the broker only after commit); zero loss for OPC UA
except the values served between just before the kill and the restarted agent's re-subscription
(the agent was not running; the in-flight loss is at most one flush + one group commit).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from simulator.runtime import SimulatorRuntime
from simulator.scenario import load_scenario
from tests.edge_agent.e2e import ROOT, agent_toml, check_delivery, key
from tests.edge_agent.receiver import Receiver
from tests.support.ports import free_port
from tests.support.servers import Mosquitto
from tests.support.waiting import eventually

OUTAGE_S = float(os.environ.get("ZHIZAO_AGENT_OUTAGE_S", "3"))


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


until = functools.partial(eventually, interval=0.2, in_thread=True)
"""Wait for the agent's state as seen over HTTP (its /metrics): the probe blocks, so off the loop."""


def start_agent(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "zhizao.cli", "agent", "--config", str(cfg)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


async def test_receiver_outage_kill_9_and_broker_restart(
    tmp_path: Path, mosquitto: Mosquitto, receiver: Receiver
) -> None:
    scenario = load_scenario(ROOT / "examples" / "workshop.toml")
    hport = free_port()
    log = tmp_path / "agent.log"
    sim = SimulatorRuntime(
        scenario,
        seed=11,
        speed=10,
        duration_s=7 * 86400,
        opcua_port=free_port(),
        mqtt=(mosquitto.host, mosquitto.port),
        keep_served=True,
    )
    procs: list[subprocess.Popen[bytes]] = []
    up_opc = 'zhizao_agent_connector_up{connector="sim-opcua"}'
    up_mqtt = 'zhizao_agent_connector_up{connector="vendor-mqtt"}'
    try:
        async with sim:
            assert sim.endpoint is not None
            cfg = tmp_path / "agent.toml"
            cfg.write_text(
                agent_toml(
                    tmp_path / "state",
                    opcua_endpoint=sim.endpoint,
                    broker_port=mosquitto.port,
                    receiver_url=receiver.url,
                    health_port=hport,
                )
            )
            procs.append(start_agent(cfg, log))
            machines = {str(a) for a in sim.assets}
            await until(
                lambda: {str(s.asset) for s in receiver.state.samples()} == machines,
                60,
                "every machine at the receiver",
            )
            # 1. receiver down: the agent keeps collecting into its buffer
            receiver.stop()
            await asyncio.sleep(OUTAGE_S)
            backlog = metric(hport, "zhizao_agent_backlog_samples") or 0
            assert backlog > 0
            # 2. kill -9 with that backlog, restart
            i_pre = len(sim.served)
            await asyncio.sleep(1.0)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            procs.append(start_agent(cfg, log))
            await until(
                lambda: metric(hport, up_opc) == 1.0 and metric(hport, up_mqtt) == 1.0,
                60,
                "restarted agent connected",
            )
            await asyncio.sleep(1.0)
            i_back = len(sim.served)
            receiver.start()
            await asyncio.sleep(2.0)
            # 3. broker restart with persistence
            mosquitto.restart()
            await until(lambda: metric(hport, up_mqtt) == 1.0, 60, "MQTT reconnected")
            await asyncio.sleep(3.0)
            settled = len(sim.served)
            await asyncio.sleep(0.5)
        await until(lambda: metric(hport, "zhizao_agent_backlog_samples") == 0.0, 60, "backlog drained")
        await asyncio.sleep(1.0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    received = receiver.state.samples()
    mqtt_assets = set(sim.topics)

    def excluded(i: int, s: object) -> bool:
        if i >= settled:
            return True
        return str(getattr(s, "asset", "")) not in mqtt_assets and i_pre <= i < i_back

    report = check_delivery(sim.served, received, exclude=excluded)
    assert report.ok(), report.summary() + "\n" + log.read_text()[-3000:]
    assert report.checked > 5000
    got = {key(s) for s in received}
    window = [s for s in sim.served[i_pre:i_back] if str(s.asset) not in mqtt_assets]
    lost_in_window = sum(1 for s in window if key(s) not in got)
    print(
        f"OPC UA samples served from 1 s before the kill to the re-subscription: {len(window)}, "
        f"not collected: {lost_in_window}; MQTT: none lost; duplicates: 0; outage {OUTAGE_S} s"
    )
    assert sum(receiver.state.posts.values()) >= len(receiver.state.batches)
