"""Agents in MQTT-uplink mode → real Mosquitto → gateway subprocess → real ingest: exactly once."""

from __future__ import annotations

import re

from gateway.mqtt.testing import FakeAgent
from gateway.testing import duckdb_counts, simulated_batches
from tests.gateway.conftest import GatewayFactory, Ingest, wait_for
from tests.support.servers import Mosquitto


def test_every_simulated_value_arrives_exactly_once(
    mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory
) -> None:
    gw = gateway_factory()
    batches = simulated_batches(120)
    expected = sum(len(b) for bs in batches.values() for b in bs)
    agents = [FakeAgent(mosquitto.host, mosquitto.port, agent_id, "plant") for agent_id in batches]
    for agent in agents:
        agent.connect()
    for agent in agents:
        agent.publish(batches[agent.agent_id])
    wait_for(lambda: ingest.written() >= expected, 60, f"{expected} samples in ingest")
    wait_for(lambda: gw.health()["backlog_samples"] == 0, 30, "an empty gateway buffer")
    health = gw.health()
    assert health["status"] == "ok" and health["agents"] == {"online": 2, "offline": 0}
    metrics = gw.get("/metrics").text
    sent = re.search(r"^zhizao_gateway_sent_samples_total (\S+)$", metrics, re.M)
    assert sent is not None and float(sent.group(1)) >= expected  # plus the agents' status samples
    assert 'zhizao_gateway_messages_total{kind="agent_batch"}' in metrics
    assert "zhizao_gateway_broker_connected 1.0" in metrics
    assert "zhizao_gateway_duplicates_skipped_total 0.0" in metrics  # no raw vendor redelivery here
    assert 'zhizao_gateway_forwarder_buffer_failures_total{op="ack"} 0.0' in metrics
    assert 'zhizao_gateway_dead_letters_overwritten_total{kind="rejected_sample"} 0.0' in metrics
    assert "zhizao_gateway_uplink_refused_total{" not in metrics  # ingest took every batch
    assert 'zhizao_gateway_clock_steps_total{kind="forward"} 0.0' in metrics  # its buffer's clock watch
    assert "zhizao_gateway_clock_last_step_seconds 0.0" in metrics
    assert gw.get("/livez").status_code == 200
    assert {a["agent_id"] for a in gw.get("/fleet").json()} == set(batches)
    for agent in agents:
        agent.disconnect()
    assert gw.stop() == 0
    ingest.stop()
    assert duckdb_counts(ingest.db_path) == (expected, expected)
