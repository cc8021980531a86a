"""The fleet view of agents that send straight to ingest (HTTP uplink), against a real ingest
(uvicorn, DuckDB, ``GET /api/v1/agents`` mounted as ``[extensions] fleet = true`` mounts it) and
in-process agents: a clean stop says ``fleet.up = 0`` (offline at once), a killed agent turns
offline by the default staleness, two agents with one ``agent.id`` are flagged (review h71)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.agent import Agent
from edge_agent.config import load_agent_config
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from ingest.auth import Scope
from ingest.extensions import configured_routers
from ingest.settings import Settings
from ingest.testing import create_token, run_server, server_settings
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao import fleet
from zhizao.model import AssetPath, Batch, Sample

CONFIG = """
[agent]
id = "{agent_id}"
state_dir = "{state}"
site = "plant1"
fleet_report_s = {report_s}

[buffer]
commit_interval_s = 0.05

[health]
enabled = false

[[connectors]]
type = "mqtt"
name = "vendor"
host = "127.0.0.1"
port = {port}
[[connectors.mappings]]
name = "acme"
topic = "acme/+line/+machine/telemetry"
asset = "plant1/a1/{{line}}/{{machine}}"
timestamp = {{ field = "ts", format = "epoch_ms" }}
values = {{ layout = "object", path = "metrics", value_field = "value", unit_field = "unit" }}

[uplink]
type = "http"
url = "{url}"
{token}
linger_s = 0.05
backoff_initial_s = 0.1
backoff_cap_s = 0.5
"""


class FleetIngest:
    """A real ingest with the fleet view, as ``zhizao ingest`` mounts it from its config."""

    def __init__(self, tmp_path: Path, *, auth: bool = False) -> None:
        (tmp_path / "ingest").mkdir()
        base = server_settings(tmp_path / "ingest", auth=auth).model_dump(mode="json")
        self.settings = Settings.model_validate({**base, "extensions": {**base["extensions"], "fleet": True}})
        self.headers: dict[str, str] = {}
        if auth:
            reader = create_token(self.settings, "reader", Scope.READ)
            self.headers = {"Authorization": f"Bearer {reader}"}
        self.url = ""

    def agents(self, **params: Any) -> dict[str, dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v1/agents", params=params, headers=self.headers, timeout=5)
        resp.raise_for_status()
        return {n["id"]: n for n in resp.json()}

    async def aagents(self, **params: Any) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self.agents, **params)


@contextlib.contextmanager
def serving(ing: FleetIngest) -> Iterator[FleetIngest]:
    from ingest.app import create_app

    app = create_app(ing.settings, routers=configured_routers(ing.settings))
    with run_server(ing.settings, app=app) as url:
        ing.url = url
        yield ing


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[FleetIngest]:
    with serving(FleetIngest(tmp_path)) as ing:
        yield ing


def agent_config(tmp_path: Path, name: str, url: str, *, agent_id: str = "cell-7", report_s: float = 0.3,
                 token: str = "") -> Path:
    state = tmp_path / name
    state.mkdir()
    path = tmp_path / f"{name}.toml"
    # the MQTT connector's broker is not there: the agent runs and reports, the connector retries
    path.write_text(CONFIG.format(agent_id=agent_id, state=state, report_s=report_s, port=free_port(),
                                  url=url, token=token))
    return path


async def start(path: Path) -> tuple[Agent, asyncio.Event, asyncio.Task[None]]:
    cfg, digest = load_agent_config(path)
    agent = Agent(cfg, digest)
    stop = asyncio.Event()
    return agent, stop, asyncio.create_task(agent.run(stop))


async def stopped(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_status(ingest: FleetIngest, node: str, status: str, within_s: float = 20) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        got = (await ingest.aagents()).get(node)
        if got is not None and got["status"] == status:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{node} not {status} in /api/v1/agents: {got}")
        await asyncio.sleep(0.1)


async def test_a_cleanly_stopped_agent_is_offline_at_once(tmp_path: Path, ingest: FleetIngest) -> None:
    """h71 #2: the agent stopped at 02:50:54 was still online at 02:52:23 (no fleet.up = 0)."""
    agent, stop, task = await start(agent_config(tmp_path, "a", ingest.url))
    try:
        await wait_status(ingest, "cell-7", "online")
    finally:
        await stopped(stop, task)
    # the stop returned after delivering its last report: offline now, not minutes later
    node = (await ingest.aagents())["cell-7"]
    assert node["status"] == "offline", node
    assert agent.buffer.stats.backlog_samples == 0


async def test_a_killed_agent_turns_offline_by_the_default_staleness(ingest: FleetIngest) -> None:
    """An agent that stops without a word (kill -9, power): its last report says up = 1; ingest's
    fleet view has a default ``stale_after_s`` (120 s) so it turns offline without a query parameter."""
    asset = AssetPath("plant1", "fleet", "agents", "cell-9")
    ts = datetime.now(UTC) - timedelta(seconds=200)
    async with HttpUplink(HttpUplinkConfig(url=ingest.url)) as up:
        await up.send(Batch("cell-9", "b-1", 1, (Sample(asset, fleet.UP, ts, 1),
                                                 Sample(asset, fleet.BACKLOG_SAMPLES, ts, 0))))
    assert (await ingest.aagents())["cell-9"]["status"] == "offline"
    assert (await ingest.aagents(stale_after_s=3600))["cell-9"]["status"] == "online"


async def test_two_agents_with_one_id_are_flagged_and_logged(
    tmp_path: Path, ingest: FleetIngest, caplog: pytest.LogCaptureFixture
) -> None:
    """h71 #3: two boxes both named cell-1 wrote interleaved data and nothing said so."""
    caplog.set_level(logging.WARNING, logger="gateway.fleet_api")
    one = await start(agent_config(tmp_path, "a", ingest.url, report_s=0.2))
    two = await start(agent_config(tmp_path, "b", ingest.url, report_s=0.2))
    try:
        async def flagged() -> bool:
            return bool((await ingest.aagents()).get("cell-7", {}).get("duplicate_id"))

        deadline = asyncio.get_running_loop().time() + 20
        while not await flagged():
            assert asyncio.get_running_loop().time() < deadline, await ingest.aagents()
            await asyncio.sleep(0.2)
        node = (await ingest.aagents())["cell-7"]
        assert sorted(node["instances"]) == sorted([one[0].instance, two[0].instance])
    finally:
        await stopped(*one[1:])
        await stopped(*two[1:])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'cell-7'" in m and one[0].instance in m and two[0].instance in m for m in warnings), warnings
    assert sum("'cell-7'" in m for m in warnings) == 1  # once, not at every request


async def test_a_restarted_agent_is_not_a_duplicate(tmp_path: Path, ingest: FleetIngest) -> None:
    path = agent_config(tmp_path, "a", ingest.url, report_s=0.2)
    first, stop, task = await start(path)
    try:
        await wait_status(ingest, "cell-7", "online")
        await asyncio.sleep(0.5)
    finally:
        await stopped(stop, task)
    second, stop, task = await start(path)
    try:
        await asyncio.sleep(1.0)
        node = await wait_status(ingest, "cell-7", "online")
    finally:
        await stopped(stop, task)
    assert first.instance != second.instance
    assert not node["duplicate_id"] and node["instances"] == [], node


def test_interleaving_is_two_processes_a_change_is_a_restart() -> None:
    from gateway.fleet_api import interleaved

    assert interleaved([]) == [] and interleaved(["a", "a"]) == []
    assert interleaved(["a", "a", "b", "b", "c"]) == []  # restarts
    assert interleaved(["a", "b", "a"]) == ["a", "b"]
    assert interleaved(["a", "a", "b", "c", "b"]) == ["a", "b", "c"]


async def test_the_token_from_an_environment_variable_is_the_one_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h71 #6: ``token = "${ZHIZAO_TOKEN}"`` sent the literal string as the bearer token. Against
    an ingest with authentication: the agent's fleet reports arrive only with the real token."""
    with serving(FleetIngest(tmp_path, auth=True)) as ing:
        monkeypatch.setenv("H77_AGENT_TOKEN", create_token(ing.settings, "cell-7", Scope.WRITE))
        path = agent_config(tmp_path, "a", ing.url, token='token = "${H77_AGENT_TOKEN}"')
        agent, stop, task = await start(path)
        try:
            # delivered: ingest accepted the token as the producer cell-7's (a literal ${...} is refused 401)
            await eventually(lambda: agent.forwarder.stats.sent_samples > 0, 20, "a report delivered")
            await wait_status(ing, "cell-7", "online")
        finally:
            await stopped(stop, task)
