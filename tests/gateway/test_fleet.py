"""Fleet view end to end: agents' birth and last will → gateway → ingest ``GET /api/v1/agents``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from gateway.mqtt.testing import FakeAgent
from gateway.testing import REPO
from tests.gateway.conftest import GatewayFactory, Ingest, wait_for
from tests.support.servers import Mosquitto


def _fleet(ingest: Ingest, **params: str) -> dict[str, dict[str, Any]]:
    resp = httpx.get(f"{ingest.url}/api/v1/agents", params=params, timeout=5)
    resp.raise_for_status()
    return {n["id"]: n for n in resp.json()}


def _status(ingest: Ingest, node: str) -> str | None:
    return _fleet(ingest).get(node, {}).get("status")


def test_agent_killed_without_disconnect_goes_offline_via_its_last_will(
    mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = gateway_factory(fleet_report_s=0.5)
    agent = subprocess.Popen(
        [sys.executable, "-m", "gateway.mqtt.testing", "alive", mosquitto.host, str(mosquitto.port),
         "agent-7", "plant"], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == b"online"
        wait_for(lambda: _status(ingest, "agent-7") == "online", 20, "agent-7 online in ingest")
        node = _fleet(ingest)["agent-7"]
        got = (node["kind"], node["site"], node["version"], node["config_hash"], node["backlog_samples"])
        assert got == ("agents", "plant", "0.1.0", "cafe", 0)
        assert gw.health()["agents"] == {"online": 1, "offline": 0}
        agent.kill()  # SIGKILL: no DISCONNECT, the broker publishes the will
        agent.wait()
        wait_for(lambda: _status(ingest, "agent-7") == "offline", 20, "agent-7 offline in ingest")
        assert gw.health()["agents"] == {"online": 0, "offline": 1}
    finally:
        agent.kill()
        agent.wait()
    # the gateway reports itself too, and the kind filter works
    wait_for(lambda: _status(ingest, "gw-1") == "online", 20, "the gateway in the fleet view")
    assert list(_fleet(ingest, kind="gateways")) == ["gw-1"]
    assert list(_fleet(ingest, kind="agents")) == ["agent-7"]
    assert _fleet(ingest, site="elsewhere") == {}


def test_clean_shutdown_and_restart_of_the_gateway_keep_the_fleet(
    mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory
) -> None:
    gw = gateway_factory()
    agent = FakeAgent(mosquitto.host, mosquitto.port, "agent-1", "plant")
    agent.connect()
    wait_for(lambda: _status(ingest, "agent-1") == "online", 20, "agent-1 online")
    agent.disconnect()  # clean: publishes offline itself, no will
    wait_for(lambda: _status(ingest, "agent-1") == "offline", 20, "agent-1 offline")
    gw.kill()
    gw.start()  # the retained offline status comes back, is the same batch: no new sample
    wait_for(lambda: gw.health()["agents"] == {"online": 0, "offline": 1}, 20, "fleet state rebuilt")
    assert _status(ingest, "agent-1") == "offline"
