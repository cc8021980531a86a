"""Chaos with real Mosquitto, real ingest and the gateway as a subprocess: zero loss, zero duplicates.

Each test publishes simulated agent batches (as agents in MQTT-uplink mode do), breaks something
on the way, and finally checks the ingest DuckDB file: exactly the published samples, each once.
``ZHIZAO_GATEWAY_OUTAGE_S`` sets the ingest outage (default 6 s; the issue's 2 minutes is
``ZHIZAO_GATEWAY_OUTAGE_S=120``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

from gateway.mqtt.testing import FakeAgent
from gateway.testing import GatewayProcess, duckdb_counts, simulated_batches
from tests.gateway.conftest import GatewayFactory, Ingest, wait_for
from tests.support.servers import Mosquitto
from zhizao.model import Batch

OUTAGE_S = float(os.environ.get("ZHIZAO_GATEWAY_OUTAGE_S", "6"))


def _agents(mosquitto: Mosquitto, batches: dict[str, list[Batch]]) -> list[FakeAgent]:
    agents = [FakeAgent(mosquitto.host, mosquitto.port, a, "plant", window=20) for a in batches]
    for agent in agents:
        agent.connect()
    return agents


def _publish(agents: Sequence[FakeAgent], batches: dict[str, list[Batch]], part: slice,
             pause: float = 0.0) -> None:
    threads = [threading.Thread(target=a.publish, args=(batches[a.agent_id][part],), kwargs={"pause": pause})
               for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def _finish(ingest: Ingest, gateways: Sequence[GatewayProcess], agents: Sequence[FakeAgent],
            expected: int) -> None:
    wait_for(lambda: ingest.written() >= expected, 90, f"{expected} samples in ingest")
    for gw in gateways:
        wait_for(_drained(gw), 30, "empty gateway buffers")
    time.sleep(0.5)  # a late duplicate would land now
    for a in agents:
        a.disconnect()
    for gw in gateways:
        gw.stop()
    ingest.stop()
    assert duckdb_counts(ingest.db_path) == (expected, expected)


def _drained(gw: GatewayProcess) -> Callable[[], bool]:
    return lambda: gw.health()["backlog_samples"] == 0


def _total(batches: dict[str, list[Batch]]) -> int:
    return sum(len(b) for bs in batches.values() for b in bs)


def test_broker_restart(mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(stall_after_s=1.0)
    batches = simulated_batches(300, ticks_per_batch=20)
    agents = _agents(mosquitto, batches)
    publisher = threading.Thread(target=_publish, args=(agents, batches, slice(None)), kwargs={"pause": 0.02})
    publisher.start()
    time.sleep(0.6)
    mosquitto.restart()  # graceful: persistence keeps sessions and queued messages
    publisher.join(120)
    assert sum(a.connects for a in agents) > len(agents)  # the agents did lose the broker
    wait_for(lambda: ingest.written() >= _total(batches), 60, "everything in ingest")
    mosquitto.stop()  # a longer outage is visible in /healthz, and heals
    wait_for(lambda: gw.get("/healthz").status_code == 503, 20, "unhealthy without a broker")
    assert "broker disconnected" in gw.health()["problems"][0]
    mosquitto.start()
    wait_for(lambda: gw.get("/healthz").status_code == 200, 30, "healthy again")
    _finish(ingest, [gw], agents, _total(batches))


def test_gateway_kill9_with_backlog(mosquitto: Mosquitto, ingest: Ingest,
                                    gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    batches = simulated_batches(300, ticks_per_batch=20)
    agents = _agents(mosquitto, batches)
    ingest.stop()  # the backlog builds up in the gateway's buffer
    _publish(agents, batches, slice(0, 15))
    first = sum(len(b) for bs in batches.values() for b in bs[:15])
    wait_for(lambda: gw.health()["backlog_samples"] >= first, 30, "the backlog in the gateway")
    gw.kill()
    _publish(agents, batches, slice(15, 25))  # queued by the broker for the gateway's session
    ingest.start()
    gw.start()
    _publish(agents, batches, slice(25, None), pause=0.005)
    gw.kill()  # again, in the middle of forwarding
    gw.start()
    _finish(ingest, [gw], agents, _total(batches))


def test_ingest_outage(mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(stall_after_s=min(3.0, OUTAGE_S / 2))
    batches = simulated_batches(300, ticks_per_batch=20)
    agents = _agents(mosquitto, batches)
    n = min(len(b) for b in batches.values())
    _publish(agents, batches, slice(0, n // 3))
    ingest.stop()
    started = time.monotonic()
    _publish(agents, batches, slice(n // 3, 2 * n // 3), pause=OUTAGE_S / n)
    remaining = OUTAGE_S - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    health = gw.get("/healthz")  # the stall is visible: nothing delivered while the backlog ages
    assert health.status_code == 503 and health.json()["uplink_up"] is False
    assert health.json()["backlog_samples"] > 0 and "forwarding stalled" in health.json()["problems"][0]
    ingest.start()
    _publish(agents, batches, slice(2 * n // 3, None))
    wait_for(lambda: gw.get("/healthz").status_code == 200, 30, "healthy again")
    _finish(ingest, [gw], agents, _total(batches))


def test_two_gateways_share_the_load_and_survive_a_kill(
    mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory
) -> None:
    gw1, gw2 = gateway_factory("gw-1"), gateway_factory("gw-2")
    batches = simulated_batches(450, ticks_per_batch=20)
    agents = _agents(mosquitto, batches)
    publisher = threading.Thread(target=_publish, args=(agents, batches, slice(None)), kwargs={"pause": 0.03})
    publisher.start()
    wait_for(lambda: gw1.health()["sent_samples"] > 0 and gw2.health()["sent_samples"] > 0, 30,
             "both gateways forwarding")
    gw1.kill()
    before = gw2.health()["sent_samples"]
    time.sleep(1.5)
    assert gw2.health()["sent_samples"] > before  # the other one keeps forwarding
    gw1.start()
    publisher.join(120)
    _finish(ingest, [gw1, gw2], agents, _total(batches))
