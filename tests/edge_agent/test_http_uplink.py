"""HTTP uplink + forwarder against a real HTTP receiver: outages, Retry-After, partial writes."""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path

import pytest

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig, parse_retry_after
from tests.edge_agent.receiver import Receiver
from tests.edge_agent.test_buffer import ASSET, T0, samples
from zhizao.errors import PartialWrite, Rejected, Unavailable
from zhizao.model import Batch, Sample


def config(receiver: Receiver, **kw: object) -> HttpUplinkConfig:
    return HttpUplinkConfig.model_validate({"url": receiver.url, **kw})


async def test_send_gzip_with_token(receiver: Receiver) -> None:
    receiver.state.token = "s3cret"
    batch = Batch("agent-1", "b-1", 1, tuple(samples(100)))
    async with HttpUplink(config(receiver, token="s3cret")) as up:
        await up.send(batch)
        await up.send(batch)
    assert receiver.state.batches[("agent-1", "b-1")] == batch.samples
    assert receiver.state.posts[("agent-1", "b-1")] == 2


async def test_errors_are_translated(receiver: Receiver) -> None:
    batch = Batch("agent-1", "b-1", 1, tuple(samples(3)))
    async with HttpUplink(config(receiver, token="wrong")) as up:
        receiver.state.fail_status, receiver.state.retry_after = 503, "7"
        with pytest.raises(Unavailable) as info:
            await up.send(batch)
        assert info.value.retry_after == 7.0
        receiver.state.fail_status = 429
        with pytest.raises(Unavailable):
            await up.send(batch)
        receiver.state.fail_status = 413
        with pytest.raises(Rejected, match="413"):
            await up.send(batch)
        receiver.state.fail_status = None
        receiver.state.reject_signals = {"spindle_speed"}
        with pytest.raises(PartialWrite) as partial:
            await up.send(batch)
        assert sorted(partial.value.rejected) == [0, 1, 2]
        receiver.stop()
        with pytest.raises(Unavailable, match="unreachable"):
            await up.send(batch)


def test_retry_after_http_date() -> None:
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after("junk") is None and parse_retry_after(None) is None


async def test_forwarder_outage_no_loss_no_duplicates(tmp_path: Path, receiver: Receiver) -> None:
    dl = DeadLetter(tmp_path / "dead.jsonl")
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf, HttpUplink(config(receiver)) as up:
        fwd = Forwarder(buf, up, dl, max_items=100, linger=0.05)
        task = asyncio.create_task(fwd.run())
        await buf.put(samples(300))
        await asyncio.sleep(0.5)
        receiver.stop()
        await buf.put(samples(500, 300))
        await asyncio.sleep(1.0)
        receiver.start()
        receiver.state.fail_status, receiver.state.retry_after = 503, "0.2"
        await buf.put(samples(200, 800))
        await asyncio.sleep(0.5)
        receiver.state.fail_status = None
        for _ in range(100):
            if buf.stats.backlog_samples == 0:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        got = sorted(receiver.state.samples(), key=lambda s: s.ts)
        assert got == samples(1000), "every sample once, none lost"
        assert fwd.stats.retries > 0 and fwd.stats.sent_samples == 1000


async def test_partial_write_goes_to_dead_letter(tmp_path: Path, receiver: Receiver) -> None:
    receiver.state.reject_signals = {"bad_signal"}
    dl = DeadLetter(tmp_path / "dead.jsonl")
    bad = Sample(ASSET, "bad_signal", T0, 1.0)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf, HttpUplink(config(receiver)) as up:
        fwd = Forwarder(buf, up, dl, max_items=100, linger=0.0)
        await buf.put([*samples(5), bad])
        batch = await buf.take(100)
        assert batch is not None
        await fwd.deliver(batch)
        assert buf.stats.backlog_samples == 0
    records = dl.read()
    assert len(records) == 1 and records[0]["kind"] == "rejected_sample"
    assert records[0]["sample"]["signal"] == "bad_signal" and "not allowed" in records[0]["reason"]
    assert receiver.state.samples() == samples(5)


async def test_bulk_falls_back_to_one_post_per_batch_without_the_endpoint(receiver: Receiver) -> None:
    """An ingest without ``/api/v1/batches/bulk`` (404): the same call sends the batches one by one,
    and every later one too; outcomes stay per batch."""
    receiver.state.reject_signals = {"bad_signal"}
    batches = [EncodedBatch.of_batch(Batch("agent-1", f"b-{i}", i, tuple(samples(5, i * 10))))
               for i in range(3)]
    bad = EncodedBatch.of_batch(Batch("agent-1", "b-bad", 9,
                                      (*samples(1, 90), Sample(ASSET, "bad_signal", T0, 1.0))))
    async with HttpUplink(config(receiver)) as up:
        assert up.bulk is not None
        outcomes = await up.send_bulk([*batches, bad])
        assert outcomes[:3] == [None, None, None] and isinstance(outcomes[3], PartialWrite)
        assert up.bulk is None
        assert await up.send_bulk(batches[:1]) == [None]
    assert dict(receiver.state.posts) == {
        ("agent-1", "b-0"): 2, ("agent-1", "b-1"): 1, ("agent-1", "b-2"): 1, ("agent-1", "b-bad"): 1}
