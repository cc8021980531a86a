"""The agent sends its buffered sample rows as wire-format version 2 (samples grouped into series).

The buffer hands out a batch with each series' rows together; ``EncodedBatch.line(2)`` regroups
them into series entries without changing their order, so a rejection's index still names the
right row — checked here against the reference decoder and the real ingest service.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import orjson

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.buffer.encoded import MIN_SERIES_RUN
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from ingest.testing import run_server, server_settings
from tests.support.waiting import eventually
from zhizao import wire
from zhizao.errors import PartialWrite
from zhizao.model import AssetPath, Batch, Quality, Sample

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)
SIGNALS = (("spindle_speed", "rpm"), ("power_kw", "kW"), ("state", None), ("parts_total", None))


def ticks(n: int, machines: int = 3) -> list[Sample]:
    """What an agent polls: every signal of every machine at each tick (series interleaved)."""
    out = []
    for t in range(n):
        for m in range(machines):
            for k, (signal, unit) in enumerate(SIGNALS):
                value: float | int | str = ("running" if signal == "state" else t if signal == "parts_total"
                                            else t * 1.5 + m + k)
                quality = Quality.UNCERTAIN if (signal == "power_kw" and t % 7 == 3) else Quality.GOOD
                out.append(Sample(AssetPath("plant1", "a1", "line1", f"m{m}"), signal,
                                  T0 + timedelta(seconds=t), value, unit, quality))
    return out


async def test_taken_rows_are_grouped_by_series_and_both_versions_carry_them_in_that_order(
        tmp_path: Path) -> None:
    produced = ticks(50)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", group_series=True) as buf:
        await buf.put(produced)
        batch = await buf.take_encoded(10_000)
    assert batch is not None and len(batch) == len(produced)
    one, two = wire.decode_batch(batch.line(1)), wire.decode_batch(batch.line(2))
    assert one == two, "the same samples in the same order: an index means the same row in both"
    assert sorted(one.samples, key=produced.index) == produced
    keys = [(s.asset, s.signal, s.unit, s.quality) for s in one.samples]
    runs = sum(1 for i, k in enumerate(keys) if i == 0 or k != keys[i - 1])
    assert runs == len(set(keys)) == 3 * 4 + 3, "each series' rows together (power_kw has two qualities)"
    assert [orjson.loads(row) for row in batch.rows] == batch.samples_json()
    doc = orjson.loads(batch.line(2))
    assert doc["version"] == 2 and len(doc["series"]) == runs
    assert len(batch.line(2)) < 0.45 * len(batch.line(1))


async def test_without_group_series_the_rows_keep_their_order(tmp_path: Path) -> None:
    """The gateway's legacy frames depend on the rows' order: a buffer built without
    ``group_series`` hands them out as stored (and v2 then has one entry per run)."""
    produced = ticks(10)
    async with SqliteBuffer(tmp_path / "b.sqlite", "gw-1") as buf:
        await buf.put(produced)
        batch = await buf.take_encoded(10_000)
    assert batch is not None and list(wire.decode_batch(batch.line(1)).samples) == produced
    assert wire.decode_batch(batch.line(2)) == wire.decode_batch(batch.line(1))


def test_a_row_that_is_not_a_plain_sample_object_sends_the_batch_as_version_1() -> None:
    good = orjson.dumps(wire.sample_to_dict(ticks(1)[0]))
    for odd in (orjson.dumps({**orjson.loads(good), "extra": 1}), b'{"asset":"plant1/a1/line1/m0"}',
                b'[1, 2]', b"{not json"):
        batch = EncodedBatch("agent-1", "b-1", 1, (good, odd, good))
        assert batch.line(2) == batch.line(1), odd
        assert b'"version":1,' in batch.line(2)
    batch = EncodedBatch("agent-1", "b-1", 1, (good,) * MIN_SERIES_RUN)
    assert orjson.loads(batch.line(2))["version"] == 2


async def test_batches_with_few_samples_per_series_go_as_version_1(tmp_path: Path) -> None:
    """Many signals each sampled once or twice per batch (a 1 Hz poll with a 1 s linger): a
    series entry would cost more than it saves, so such a batch goes as v1."""
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", group_series=True) as buf:
        await buf.put(ticks(MIN_SERIES_RUN - 1, machines=5))
        few = await buf.take_encoded(10_000)
        assert few is not None and few.series == 5 * 4
        await buf.put(ticks(MIN_SERIES_RUN + 2, machines=5))
        await buf.ack(few)
        enough = await buf.take_encoded(10_000)
    assert enough is not None
    assert b'"version":1,' in few.line(2) and wire.decode_batch(few.line(2)) == wire.decode_batch(few.line(1))
    assert orjson.loads(enough.line(2))["version"] == 2


def _drained(buf: SqliteBuffer) -> bool:
    return buf.stats.backlog_samples == 0


async def test_agent_rows_reach_real_ingest_as_version_2_with_dead_letters_naming_the_right_row(
        tmp_path: Path) -> None:
    """Rows forwarded in bulk and one per request, v2 by default: all stored once; a damaged row
    is the one ingest rejects, by an index that names it in the batch."""
    produced = ticks(40)
    settings = server_settings(tmp_path)
    dl = DeadLetter(tmp_path / "dead.jsonl")
    with run_server(settings) as url:
        for bulk in (True, False):
            async with (
                SqliteBuffer(tmp_path / f"b-{bulk}.sqlite", f"agent-{bulk}", group_series=True) as buf,
                HttpUplink(HttpUplinkConfig(url=url, bulk=bulk, max_batch_samples=200)) as up,
            ):
                assert up.config.wire_version == 2
                await buf.put(produced)
                fwd = Forwarder(buf, up, dl, max_items=200, linger=0.05)
                task = asyncio.create_task(fwd.run())
                try:
                    await eventually(partial(_drained, buf), 10, "the buffer drained")
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                assert fwd.stats.sent_samples == len(produced) and fwd.stats.dead_lettered == 0
        # a damaged row in the middle of a batch: ingest rejects that sample only, by its index,
        # and that index picks the damaged row out of the batch (what the forwarder dead-letters)
        good = [orjson.dumps(wire.sample_to_dict(s)) for s in wire.group_by_series(ticks(8, machines=1))]
        bad = orjson.dumps({**orjson.loads(good[5]), "ts": "yesterday"})
        batch = EncodedBatch("agent-x", "b-damaged", 1, (*good[:5], bad, *good[6:]))
        assert orjson.loads(batch.line(2))["version"] == 2
        async with HttpUplink(HttpUplinkConfig(url=url)) as up:
            (outcome,) = await up.send_bulk([batch])
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{url}/metrics")).text
    assert isinstance(outcome, PartialWrite) and list(outcome.rejected) == [5], outcome
    assert outcome.rejected[5].startswith("ts:")
    assert batch.samples_json()[5] == orjson.loads(bad)
    written = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("zhizao_ingest_samples_written_total"))
    assert written == 2 * len(produced) + len(good) - 1


def test_a_version_2_record_names_its_samples_in_document_order() -> None:
    """A gateway stores a batch it received as one record, whatever its version: dead letters
    pick a rejected sample out of a v2 document by its index too."""
    produced = ticks(5, machines=2)
    batch = wire.decode_batch(wire.encode_batch(
        Batch("agent-1", "b-1", 1, wire.group_by_series(produced)), version=2))
    record = EncodedBatch.record("agent-1", "b-1", 1, len(batch.samples),
                                 wire.encode_batch(batch, version=2))
    assert record.samples_json() == [wire.sample_to_dict(s) for s in batch.samples]
    broken = EncodedBatch.record("agent-1", "b-2", 2, 1, b'{"series":[{"ts":[1],"value":[]}]}')
    assert broken.samples_json() == []
