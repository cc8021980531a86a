"""The agent's buffer, forwarder and HTTP uplink against the real ingest service (DuckDB store)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from ingest.auth import Scope
from ingest.settings import Settings
from ingest.testing import create_token, run_server, server_settings
from tests.edge_agent.test_buffer import samples
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao import wire
from zhizao.backoff import Backoff
from zhizao.errors import PartialWrite, Rejected, Unavailable
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
            await eventually(lambda: buf.stats.backlog_samples == 0, 10, "the buffer drained")
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
            assert bad.refused == {"HTTP 401": 1}  # exported as zhizao_agent_uplink_refused_total
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


def _settings(tmp_path: Path, **limits: int) -> Settings:
    base = server_settings(tmp_path).model_dump(mode="json")
    return Settings.model_validate({**base, "limits": {**base["limits"], **limits}})


def _doc(producer: str, batch_id: str, seq: int, sample_docs: list[dict[str, object]]) -> EncodedBatch:
    doc = {"format": "zhizao.batch", "version": 1, "producer": producer, "batch_id": batch_id, "seq": seq,
           "samples": sample_docs}
    return EncodedBatch.record(producer, batch_id, seq, len(sample_docs), orjson.dumps(doc))


def _batch(i: int, n: int = 20) -> EncodedBatch:
    return EncodedBatch.of_batch(Batch("agent-1", f"bulk-{i:04d}", i, tuple(samples(n, i * 1000))))


async def test_bulk_answers_per_batch_and_splits_what_ingest_finds_too_large(tmp_path: Path) -> None:
    """Real ingest, ``max_bulk_batches = 3``: five batches (one with a bad sample, one with a bad
    envelope) in one call: split in two requests, each batch gets its own outcome."""
    settings = _settings(tmp_path, max_bulk_batches=3)
    good = [_batch(i) for i in range(1, 4)]
    ok_sample = wire.sample_to_dict(samples(1, 9000)[0])
    partial = _doc("agent-1", "bulk-partial", 10, [ok_sample, {**ok_sample, "signal": "bad signal!"}])
    invalid = _doc("agent-1", "bulk-invalid", 11, [ok_sample])
    invalid = EncodedBatch.record("agent-1", "bulk-invalid", 11, 1,
                                  (invalid.document or b"").replace(b'"version":1', b'"version":7'))
    with run_server(settings) as url:
        async with HttpUplink(HttpUplinkConfig(url=url, gzip=True)) as up:
            assert up.bulk is not None
            outcomes = await up.send_bulk([good[0], partial, invalid, good[1], good[2]])
            assert outcomes[0] is None and outcomes[3] is None and outcomes[4] is None
            assert isinstance(outcomes[1], PartialWrite) and list(outcomes[1].rejected) == [1]
            assert outcomes[1].accepted == 1 and outcomes[1].rejected[1].startswith("signal")
            assert isinstance(outcomes[2], Rejected) and "version" in str(outcomes[2])
            again = await up.send_bulk([good[1], good[0]])
            assert again == [None, None], "duplicates: done, not stored twice"
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{url}/metrics")).text
    written = [line for line in text.splitlines() if line.startswith("zhizao_ingest_samples_written_total")]
    assert written == ['zhizao_ingest_samples_written_total{source="bulk"} 61.0'], written


async def test_bulk_forwarder_outage_and_dead_letters_against_real_ingest(tmp_path: Path) -> None:
    """The agent's buffer + forwarder in bulk mode: an ingest outage loses and duplicates nothing;
    a refused sample and a refused batch go to the dead-letter file, each batch acked on its own."""
    settings = server_settings(tmp_path)
    port = free_port()
    dl = DeadLetter(tmp_path / "dead.jsonl")
    ok_sample = wire.sample_to_dict(samples(1, 9000)[0])
    async with (
        SqliteBuffer(tmp_path / "b.sqlite", "gw-1") as buf,
        HttpUplink(HttpUplinkConfig(url=f"http://127.0.0.1:{port}", backoff_initial_s=0.05)) as up,
    ):
        fwd = Forwarder(buf, up, dl, max_items=1000, linger=0.05, backoff=Backoff(initial=0.05, cap=0.2))
        task = asyncio.create_task(fwd.run())
        try:
            await buf.put_records([_batch(i) for i in range(1, 41)])  # ingest is not there yet
            await asyncio.sleep(0.5)
            assert fwd.stats.retries > 0 and buf.stats.backlog_records == 40
            with run_server(settings, port=port):
                await buf.put_records([
                    _doc("agent-1", "bulk-partial", 50, [ok_sample, {**ok_sample, "ts": "x"}]),
                    EncodedBatch.record("agent-1", "bulk-bad", 51, 1, b'{"format":"zhizao.batch"}')])
                await eventually(lambda: buf.stats.backlog_samples == 0, 10, "the buffer drained")
                assert buf.stats.backlog_samples == 0
                async with httpx.AsyncClient() as client:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert 'zhizao_ingest_samples_written_total{source="bulk"} 801.0' in text
    assert fwd.stats.sent_batches == 42 and fwd.stats.dead_lettered == 2
    kinds = sorted((r["batch_id"], r["index"], r["reason"].split(":")[0]) for r in dl.read())
    assert kinds == [("bulk-bad", 0, "ingest refused batch agent-1/bulk-bad (400)"),
                     ("bulk-partial", 1, "ts")]


async def test_records_go_one_per_request_with_bulk_off(tmp_path: Path) -> None:
    """``bulk = false``: the forwarder sends each stored record as its own POST /api/v1/batches."""
    with run_server(server_settings(tmp_path)) as url:
        async with (
            SqliteBuffer(tmp_path / "b.sqlite", "gw-1") as buf,
            HttpUplink(HttpUplinkConfig(url=url, bulk=False)) as up,
        ):
            assert up.bulk is None
            fwd = Forwarder(buf, up, DeadLetter(tmp_path / "dead.jsonl"), max_items=1000, linger=0.05)
            await buf.put_records([_batch(i) for i in range(1, 11)])
            task = asyncio.create_task(fwd.run())
            await eventually(lambda: buf.stats.backlog_samples == 0, 10, "the buffer drained")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{url}/metrics")).text
    assert fwd.stats.sent_batches == 10 and fwd.stats.sent_samples == 200
    assert 'zhizao_ingest_samples_written_total{source="batch"} 200.0' in text
