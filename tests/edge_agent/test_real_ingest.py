"""The agent's buffer, forwarder and HTTP uplink against the real ingest service (DuckDB store)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from edge_agent.buffer import SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from ingest.auth import Scope
from ingest.testing import create_token, run_server, server_settings
from tests.edge_agent.test_buffer import samples
from zhizao.errors import Unavailable
from zhizao.model import Batch


async def test_delivery_dedup_and_auth_against_real_ingest(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    write = create_token(settings, "agent-1", Scope.WRITE)
    read = create_token(settings, "reader", Scope.READ)
    with run_server(settings) as url:
        async with (
            SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf,
            HttpUplink(HttpUplinkConfig(url=url, token=write, max_batch_samples=300)) as up,
        ):
            fwd = Forwarder(buf, up, DeadLetter(tmp_path / "dead.jsonl"), max_items=300, linger=0.05)
            await buf.put(samples(1000))
            task = asyncio.create_task(fwd.run())
            for _ in range(200):
                if buf.stats.backlog_samples == 0:
                    break
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert fwd.stats.sent_samples == 1000 and fwd.stats.dead_lettered == 0
            # a resend of a batch ingest already has (a crash between send and ack) is not stored twice
            resend = Batch("agent-1", "f00-0000000001", 1, tuple(samples(300, 5000)))
            await up.send(resend)
            await up.send(resend)
        async with HttpUplink(HttpUplinkConfig(url=url, token="wrong")) as bad:
            with pytest.raises(Unavailable, match="401"):
                await bad.send(resend)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {read}"}) as client:
            resp = await client.get(
                f"{url}/api/v1/series",
                params={
                    "asset": "plant1/a1/line1/cnc-1",
                    "signal": "spindle_speed",
                    "start": "2026-11-23T00:00:00Z",
                    "end": "2026-11-24T00:00:00Z",
                },
            )
            resp.raise_for_status()
            series = resp.json()["series"]
    assert len(series) == 1 and series[0]["unit"] == "rpm"
    assert len(series[0]["values"]) == 1300, "1000 forwarded + the 300 sent twice, stored once"
    assert len(set(series[0]["ts"])) == 1300
