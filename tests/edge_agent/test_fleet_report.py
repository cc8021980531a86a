"""An agent with ``agent.site`` reports its own health as fleet-convention samples through its
uplink (``<site>/fleet/agents/<id>``, :mod:`zhizao.fleet`), so the Edge fleet dashboard and
ingest's ``/api/v1/agents`` see agents that send straight to ingest, not only through a gateway."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.config import load_agent_config
from tests.edge_agent.receiver import Receiver
from tests.support.servers import Mosquitto
from tests.support.waiting import eventually
from zhizao import fleet
from zhizao.errors import ConfigError

CONFIG = """
[agent]
id = "cell-7"
state_dir = "{state}"
{site}
fleet_report_s = 0.3

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
linger_s = 0.05
"""


async def test_an_agent_with_a_site_reports_its_health_as_fleet_samples(
    tmp_path: Path, mosquitto: Mosquitto, receiver: Receiver
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", site='site = "plant1"', port=mosquitto.port,
                                  url=receiver.url))
    cfg, digest = load_agent_config(path)
    agent = Agent(cfg, digest)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    asset = "plant1/fleet/agents/cell-7"

    def reports() -> list[dict[str, float]]:
        by_ts: dict[datetime, dict[str, float]] = {}
        for s in receiver.state.samples():
            if str(s.asset) == asset and isinstance(s.value, int | float):
                by_ts.setdefault(s.ts, {})[s.signal] = float(s.value)
        return [by_ts[t] for t in sorted(by_ts)]

    try:
        await eventually(lambda: len(reports()) >= 3, 30, "three fleet reports at the receiver")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    got = reports()
    assert set(got[0]) == {fleet.UP, fleet.BACKLOG_SAMPLES, fleet.BACKLOG_AGE_S, fleet.DROPPED_TOTAL,
                           fleet.DEAD_LETTERS_TOTAL, fleet.RECONNECTS_TOTAL, fleet.SENT_TOTAL}
    assert all(r[fleet.DROPPED_TOTAL] == 0.0 for r in got)
    # up 1 while running; the last report, of the clean stop, says up 0 (delivered before the stop ended)
    assert all(r[fleet.UP] == 1.0 for r in got[:-1]) and got[-1][fleet.UP] == 0.0, got
    assert got[-1][fleet.SENT_TOTAL] >= 7  # the first report (7 samples) was acknowledged by then


def test_without_a_site_no_fleet_samples_and_the_id_must_then_fit_a_path(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path, site="", port=1883, url="http://127.0.0.1:1"))
    cfg, _ = load_agent_config(path)
    assert cfg.agent.site is None
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.format(state=tmp_path, site='site = "plant1"', port=1883, url="http://127.0.0.1:1")
                   .replace('id = "cell-7"', 'id = "cell:7"'))
    with pytest.raises(ConfigError, match="agent") as info:
        load_agent_config(bad)
    assert any("path segment" in msg for _, msg in info.value.problems), info.value.problems
