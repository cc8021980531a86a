"""The durable buffer: group commit, stable batch ids across restarts, overflow, corruption."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.buffer import BufferConfig, BufferCorrupt, BulkLimits, EncodedBatch, SqliteBuffer
from zhizao.model import AssetPath, Batch, Quality, Sample

ASSET = AssetPath("plant1", "a1", "line1", "cnc-1")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def samples(n: int, start: int = 0) -> list[Sample]:
    return [
        Sample(ASSET, "spindle_speed", T0 + timedelta(milliseconds=i), float(i), "rpm", Quality.GOOD)
        for i in range(start, start + n)
    ]


async def drain(buf: SqliteBuffer, max_items: int = 1000) -> list[Sample]:
    out: list[Sample] = []
    while (b := await buf.take(max_items)) is not None:
        out.extend(b.samples)
        await buf.ack(b)
    return out


async def test_put_take_ack_roundtrip(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf:
        data = [*samples(250), Sample(ASSET, "state", T0, "running", None, Quality.UNCERTAIN)]
        res = await buf.put(data)
        assert (res.committed, res.rejected) == (251, 0)
        b1 = await buf.take(100)
        assert b1 is not None and len(b1) == 100 and b1.producer == "agent-1" and b1.seq == 1
        b2 = await buf.take(100)
        assert b2 is not None and b2.batch_id != b1.batch_id and b2.seq == 2
        await buf.ack(b1)
        await buf.ack(b2)
        rest = await drain(buf)
        assert [*b1.samples, *b2.samples, *rest] == data
        assert buf.stats.backlog_samples == 0 and buf.stats.acked == 251


async def test_group_commit_shares_transactions(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.05) as buf:
        results = await asyncio.gather(*(buf.put(samples(10, i * 10)) for i in range(200)))
        assert sum(r.committed for r in results) == 2000
        assert buf.stats.commits < 20, buf.stats.commits


async def test_unacked_batch_comes_back_with_same_id_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    async with SqliteBuffer(path, "agent-1") as buf:
        await buf.put(samples(30))
        first = await buf.take(10)
        second = await buf.take(10)
        assert first and second
        await buf.ack(first)
    async with SqliteBuffer(path, "agent-1") as buf:
        again = await buf.take(10)
        assert again is not None
        assert (again.batch_id, again.seq, again.samples) == (second.batch_id, second.seq, second.samples)
        await buf.ack(again)
        last = await buf.take(100)
        assert last is not None and last.seq == 3 and len(last) == 10
        await buf.ack(last)
    async with SqliteBuffer(path, "agent-1") as buf:
        await buf.put(samples(1))
        nxt = await buf.take(10)
        assert nxt is not None and nxt.seq == 4, "seq never restarts, so batch ids are never reused"


async def test_release_gives_the_same_batch_back(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf:
        await buf.put(samples(5))
        b = await buf.take(10)
        assert b is not None
        assert await buf.take(10) is None
        buf.release(b)
        again = await buf.take(10)
        assert again is not None and again.batch_id == b.batch_id


async def test_linger_waits_for_a_full_batch_or_the_time(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.01) as buf:
        await buf.put(samples(5))
        t = time.monotonic()
        b = await buf.take(100, linger=0.3)
        assert b is not None and len(b) == 5 and time.monotonic() - t >= 0.2
        assert await buf.take(100, linger=0.1) is None


async def test_drop_oldest_counts_every_drop(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "a", max_bytes=20_000, overflow="drop_oldest") as buf:
        for i in range(20):
            await buf.put(samples(50, i * 50))
        kept = await drain(buf)
        assert buf.stats.dropped["overflow"] > 0
        assert len(kept) + buf.stats.dropped["overflow"] == 1000
        assert kept == samples(1000)[-len(kept) :], "the newest are kept, in order"


async def test_reject_new_refuses_and_counts(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "a", max_bytes=20_000, overflow="reject_new") as buf:
        results = [await buf.put(samples(50, i * 50)) for i in range(20)]
        rejected = sum(r.rejected for r in results)
        assert rejected > 0 and buf.stats.dropped["rejected"] == rejected
        kept = await drain(buf)
        assert len(kept) == 1000 - rejected and kept == samples(len(kept)), "the oldest are kept"


async def test_max_age_expires_old_samples(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "a", max_age_s=0.2) as buf:
        await buf.put(samples(10))
        await asyncio.sleep(1.2)
        await buf.put(samples(3, 100))
        kept = await drain(buf)
        assert kept == samples(3, 100) and buf.stats.dropped["expired"] == 10


async def test_corrupt_file_is_detected_and_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"this is not a database" * 1000)
    with pytest.raises(BufferCorrupt, match=r"b\.sqlite"):
        async with SqliteBuffer(path, "a", on_corrupt="fail"):
            pass
    async with SqliteBuffer(path, "a") as buf:
        assert buf.stats.corruptions == 1
        await buf.put(samples(3))
        assert len(await drain(buf)) == 3
    assert [p for p in os.listdir(tmp_path) if p.startswith("b.sqlite.corrupt-")]


def test_config_builds_a_buffer(tmp_path: Path) -> None:
    cfg = BufferConfig(path=tmp_path / "x.sqlite", overflow="reject_new", max_bytes=4096)
    buf = cfg.build("gw-1")
    assert (buf.producer, buf.overflow, buf.max_bytes) == ("gw-1", "reject_new", 4096)


_WRITER = """
import asyncio, sys
from tests.edge_agent.test_buffer import samples
from edge_agent.buffer import SqliteBuffer

async def main() -> None:
    async with SqliteBuffer(sys.argv[1], "a", commit_interval=0.02) as buf:
        await buf.put(samples(100))
        taken = await buf.take(40)
        print("TAKEN", taken.batch_id, flush=True)
        i = 100
        while True:
            await buf.put(samples(10, i))
            i += 10
            print("COMMITTED", i, flush=True)

asyncio.run(main())
"""


def test_kill_9_loses_nothing_committed_and_keeps_batch_ids(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    taken_id = ""
    committed = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("TAKEN"):
            taken_id = line.split()[1]
        elif line.startswith("COMMITTED"):
            committed = int(line.split()[1])
            if committed >= 2000:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    async def check() -> None:
        async with SqliteBuffer(path, "a") as buf:
            first = await buf.take(40)
            assert first is not None and first.batch_id == taken_id
            await buf.ack(first)
            rest = await drain(buf)
            got = [*first.samples, *rest]
            assert len(got) >= committed, "every sample whose put() returned survived kill -9"
            assert got == samples(len(got)), "in order, no duplicates"

    asyncio.run(check())


async def test_marks_are_committed_with_their_samples(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    async with SqliteBuffer(path, "a") as buf:
        await buf.submit(samples(2), {"opcua:x:n1": "t1", "opcua:x:n2": "t2"})
        await buf.submit(samples(1, 2), {"opcua:x:n1": "t3", "mqtt:y": "z"})
    async with SqliteBuffer(path, "a") as buf:
        assert await buf.marks("opcua:x:") == {"opcua:x:n1": "t3", "opcua:x:n2": "t2"}
        assert len(await drain(buf)) == 3


# -- records: whole pre-encoded batches (the site gateway stores each agent batch as one) ----------
def record(i: int, n: int = 10, producer: str = "agent-7") -> EncodedBatch:
    batch = Batch(producer, f"b-{i:06d}", i, tuple(samples(n, i * n)))
    return EncodedBatch.of_batch(batch)


async def drain_records(buf: SqliteBuffer, limits: BulkLimits | None = None) -> list[EncodedBatch]:
    out: list[EncodedBatch] = []
    while got := await buf.take_bulk(1000, limits):
        out += got
        await buf.ack_many(got)
    return out


async def test_records_keep_their_identity_and_document_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    recs = [record(i) for i in range(1, 8)]
    async with SqliteBuffer(path, "gw-1", commit_interval=0.01) as buf:
        res = await asyncio.gather(*(buf.put_records([r]) for r in recs))
        assert [r.committed for r in res] == [10] * 7 and buf.stats.commits < 7, "group commit"
        assert (buf.stats.backlog_samples, buf.stats.backlog_records) == (70, 7)
        first = await buf.take_bulk(1000, BulkLimits(max_batches=3))
        assert [r.batch_id for r in first] == ["b-000001", "b-000002", "b-000003"]
        second = await buf.take_bulk(1000, BulkLimits(max_batches=3))
        assert [r.batch_id for r in second] == ["b-000004", "b-000005", "b-000006"], "in flight: not again"
        await buf.ack_many([first[0], second[1]])  # out of order: exactly those two go
        buf.release(first[1])
        again = await buf.take_bulk(1000, BulkLimits(max_batches=2))
        assert [r.batch_id for r in again] == ["b-000002", "b-000007"], "released first, then new ones"
        # crash: nothing more acked
    async with SqliteBuffer(path, "gw-1") as buf:
        left = await drain_records(buf)
        assert [r.batch_id for r in left] == ["b-000002", "b-000003", "b-000004", "b-000006", "b-000007"]
        by_id = {r.batch_id: r for r in recs}
        for r in left:
            assert r.is_record and r.document == by_id[r.batch_id].document
            assert (r.producer, r.seq, len(r)) == ("agent-7", by_id[r.batch_id].seq, 10)
            assert r.decode() == by_id[r.batch_id].decode()
        assert buf.stats.backlog_samples == buf.stats.backlog_bytes == 0


async def test_bulk_take_respects_samples_and_bytes_but_always_gives_one(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "gw-1") as buf:
        await buf.put_records([record(1, 50), record(2, 50), record(3, 50), record(4, 500)])
        got = await buf.take_bulk(1000, BulkLimits(max_samples=120))
        assert [len(r) for r in got] == [50, 50]
        one = await buf.take_bulk(1000, BulkLimits(max_bytes=10))
        assert [len(r) for r in one] == [50], "a record above the byte limit still goes, alone"
        big = await buf.take_bulk(1000, BulkLimits(max_samples=100))
        assert [len(r) for r in big] == [500]
        assert await buf.take_bulk(1000, linger=0.05) == []


async def test_bulk_take_of_sample_rows_forms_buffer_batches(tmp_path: Path) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf:
        await buf.put(samples(1050))
        got = await buf.take_bulk(200, BulkLimits(max_samples=700))
        assert [len(b) for b in got] == [200, 200, 200], "full batches only, within the sample limit"
        assert all(not b.is_record for b in got) and len({b.batch_id for b in got}) == 3
        rest = await buf.take_bulk(200, linger=5.0)
        assert [len(b) for b in rest] == [200, 200], "what is ready goes at once"
        t = time.monotonic()
        last = await buf.take_bulk(200, linger=0.3)
        assert [len(b) for b in last] == [50] and time.monotonic() - t >= 0.2, "a short one after linger"
        await buf.ack_many([*got, *rest, *last])
        assert buf.stats.backlog_samples == 0


async def test_records_overflow_and_expiry_are_counted(tmp_path: Path) -> None:
    size = max(len(record(i).document or b"") for i in range(1, 9))
    async with SqliteBuffer(tmp_path / "b.sqlite", "gw-1", max_bytes=size * 5 + 10) as buf:
        for i in range(1, 9):
            await buf.put_records([record(i)])
        kept = await drain_records(buf)
        assert [r.seq for r in kept] == [4, 5, 6, 7, 8], "drop_oldest keeps the newest, in order"
        assert buf.stats.dropped["overflow"] == 30
    async with SqliteBuffer(tmp_path / "r.sqlite", "gw-1", max_bytes=size * 5 + 10,
                            overflow="reject_new") as buf:
        results = [await buf.put_records([record(i)]) for i in range(1, 9)]
        assert [r.rejected for r in results] == [0] * 5 + [10] * 3
        assert [r.seq for r in await drain_records(buf)] == [1, 2, 3, 4, 5]
        assert buf.stats.dropped["rejected"] == 30
    async with SqliteBuffer(tmp_path / "e.sqlite", "gw-1", max_age_s=0.2) as buf:
        await buf.put_records([record(1)])
        taken = await buf.take_bulk(1000)
        await asyncio.sleep(1.2)
        await buf.put_records([record(2), record(3)])
        assert buf.stats.dropped["expired"] == 0, "a record in flight is never dropped"
        buf.release(taken[0])
        await asyncio.sleep(1.2)
        await buf.put_records([record(4)])
        assert buf.stats.dropped["expired"] == 30
        assert [r.seq for r in await drain_records(buf)] == [4]


async def test_stats_are_consistent_at_every_moment(tmp_path: Path) -> None:
    """A reader of ``stats`` on the event loop never sees samples counted as committed that are
    not yet in the backlog (the agent's health check and tests wait on that pair)."""
    seen: list[tuple[int, int, int, int]] = []
    async with SqliteBuffer(
        tmp_path / "b.sqlite", "a", commit_interval=0.001, max_bytes=200_000, overflow="drop_oldest"
    ) as buf:
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                s = buf.stats
                dropped = sum(s.dropped.values())
                if s.committed - s.acked - dropped != s.backlog_samples:
                    seen.append((s.committed, s.acked, dropped, s.backlog_samples))
                await asyncio.sleep(0)

        async def consume() -> None:
            while not stop.is_set():
                b = await buf.take(500, linger=0.01)
                if b is not None:
                    await buf.ack(b)

        tasks = [asyncio.create_task(watch()), asyncio.create_task(consume())]
        for i in range(300):
            await buf.put(samples(20, i * 20))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
    assert not seen, f"{len(seen)} inconsistent, first (committed, acked, dropped, backlog): {seen[0]}"


async def test_close_during_a_commit_still_answers_the_putters(tmp_path: Path) -> None:
    """close() cancels the group-commit task; a commit already running in the buffer's thread
    completes, and its waiters get their result (they waited forever before)."""
    buf = SqliteBuffer(tmp_path / "b.sqlite", "a", commit_interval=0.0)
    await buf.open()
    fut = buf.submit(samples(200_000))
    await asyncio.sleep(0.3)  # the flusher is now committing in the buffer's thread
    await buf.close()
    res = await asyncio.wait_for(fut, 10)
    assert res.committed == 200_000 and buf.stats.committed == 200_000
    async with SqliteBuffer(tmp_path / "b.sqlite", "a") as again:
        assert again.stats.backlog_samples == 200_000


async def test_a_failed_commit_fails_its_putters_and_the_next_commit_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from edge_agent.buffer.sqlite import Db

    real = Db.insert
    calls = []

    def full_once(self: Db, rows: list[bytes], now: float) -> None:
        calls.append(len(rows))
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        real(self, rows, now)

    monkeypatch.setattr(Db, "insert", full_once)
    async with SqliteBuffer(tmp_path / "b.sqlite", "a") as buf:
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            await buf.put(samples(10))
        assert (await buf.put(samples(5, 10))).committed == 5
        assert (buf.stats.committed, buf.stats.backlog_samples) == (5, 5)
        assert await drain(buf) == samples(5, 10)


async def test_a_commit_that_fails_half_way_leaves_the_counters_as_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows inserted, then the records' insert fails: the transaction is rolled back, and the
    in-memory counts beside the tables (the backlog, max_bytes accounting) with it."""
    import sqlite3

    from edge_agent.buffer.sqlite import Db

    def full(self: Db, records: object, now: float) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async with SqliteBuffer(tmp_path / "b.sqlite", "a") as buf:
        await buf.put(samples(7))
        record = EncodedBatch.record("other", "x-1", 1, 3, b"{}")
        monkeypatch.setattr(Db, "insert_records", full)
        rows = buf.submit(samples(5, 7))  # the same group commit as the record
        recs = buf.submit_records([record])
        with pytest.raises(sqlite3.OperationalError):
            await rows
        with pytest.raises(sqlite3.OperationalError):
            await recs
        await buf.put(samples(1, 12))  # a later commit reads the backlog again
        assert (buf.stats.committed, buf.stats.backlog_samples) == (8, 8)
        assert await drain(buf) == [*samples(7), *samples(1, 12)]
