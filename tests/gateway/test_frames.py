"""Legacy frames in the agent's real SQLite buffer: batches come back whole, with their ids, across
crashes — and are moved into records by a newer gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from gateway.frames import MARKER_ASSET, MARKER_SIGNAL, FrameReader, frame_rows, migrate_frames
from zhizao.model import AssetPath, Batch, Sample

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)
ASSET = AssetPath("plant", "a1", "line1", "cnc-1")


def _batches(sizes: list[int], producer: str = "agent-1") -> list[Batch]:
    out, k = [], 0
    for i, n in enumerate(sizes):
        samples = tuple(Sample(ASSET, "spindle_speed", T0 + timedelta(seconds=k + j), float(k + j))
                        for j in range(n))
        k += n
        out.append(Batch(producer, f"b-{i:04d}", i + 1, samples))
    return out


reader_batches: dict[int, EncodedBatch] = {}  # decoded copy -> what the reader handed out


@pytest.fixture(autouse=True)
def _fresh_reader_batches() -> None:
    """Entries a test leaves (batches never acked or released) must not outlive it: a later
    test's object could get a stale entry's ``id()`` and be mistaken for it."""
    reader_batches.clear()


@pytest.fixture(params=["decoded", "encoded"])
def mode(request: pytest.FixtureRequest) -> str:
    """``take`` (decoded samples) or ``take_encoded`` (stored rows, the HTTP uplink's path)."""
    return str(request.param)


async def _take(reader: FrameReader, mode: str) -> Batch | None:
    """The next frame, decoded for comparison whatever the mode."""
    if mode == "decoded":
        return await reader.take(0, 0.0)
    got = await reader.take_encoded(0, 0.0)
    if got is None:
        return None
    reader_batches[id(decoded := got.decode())] = got
    return decoded


async def _ack(reader: FrameReader, b: Batch) -> None:
    await reader.ack(reader_batches.pop(id(b), b))


def _release(reader: FrameReader, b: Batch) -> None:
    reader.release(reader_batches.pop(id(b), b))


def _buffer(path: Path) -> SqliteBuffer:
    return SqliteBuffer(path, "gw-1", synchronous="normal", commit_interval=0.001)


async def _fill(path: Path, batches: list[Batch]) -> None:
    async with _buffer(path) as buf:
        for b in batches:
            await buf.put(frame_rows(b))


async def test_frames_come_back_whole_with_their_ids_even_across_windows(tmp_path: Path, mode: str) -> None:
    batches = _batches([5, 1, 12, 3, 7, 20, 2])
    await _fill(tmp_path / "b.sqlite", batches)
    async with _buffer(tmp_path / "b.sqlite") as buf:
        reader = FrameReader(buf, window=4)  # every frame of more than 3 samples spans windows
        got = []
        while (b := await _take(reader, mode)) is not None:
            got.append(b)
            await _ack(reader, b)
        assert got == batches
        assert buf.stats.backlog_samples == 0
        assert reader.stats.short_frames == reader.stats.skipped_tail_rows == 0


async def test_out_of_order_acks_delete_windows_oldest_first(tmp_path: Path, mode: str) -> None:
    batches = _batches([3, 3, 3, 3])
    await _fill(tmp_path / "b.sqlite", batches)
    async with _buffer(tmp_path / "b.sqlite") as buf:
        reader = FrameReader(buf, window=4)
        taken = [await _take(reader, mode) for _ in batches]
        assert all(t is not None for t in taken)
        for b in reversed(taken[1:]):
            assert b is not None
            await _ack(reader, b)
        assert reader.stats.windows_acked == 0  # the oldest frame is still out: nothing deleted
        assert taken[0] is not None
        await _ack(reader, taken[0])
        assert buf.stats.backlog_samples == 0


async def test_crash_at_any_point_loses_nothing_and_never_mixes_batches(tmp_path: Path, mode: str) -> None:
    """Deliver k frames, 'crash' (close without acking the rest), reopen: every frame still
    comes out whole under its own id; frames re-sent are exact copies (ingest dedups them)."""
    batches = _batches([4, 9, 1, 6, 3, 11, 2, 5])
    by_id = {b.batch_id: b for b in batches}
    for k in range(len(batches) + 1):
        path = tmp_path / f"b{k}.sqlite"
        await _fill(path, batches)
        delivered: list[Batch] = []
        async with _buffer(path) as buf:
            reader = FrameReader(buf, window=5)
            for _ in range(k):
                b = await _take(reader, mode)
                assert b is not None
                delivered.append(b)
                await _ack(reader, b)
            await _take(reader, mode)  # one more taken, never acked: the crash
        async with _buffer(path) as buf:
            reader = FrameReader(buf, window=5)
            while (b := await _take(reader, mode)) is not None:
                delivered.append(b)
                await _ack(reader, b)
            assert buf.stats.backlog_samples == 0
        for b in delivered:
            assert b == by_id[b.batch_id]  # whole, never a mix of two batches
        assert {b.batch_id for b in delivered} == set(by_id)


async def test_release_hands_the_same_batch_back_first(tmp_path: Path, mode: str) -> None:
    batches = _batches([2, 2])
    await _fill(tmp_path / "b.sqlite", batches)
    async with _buffer(tmp_path / "b.sqlite") as buf:
        reader = FrameReader(buf)
        first = await _take(reader, mode)
        assert first is not None
        _release(reader, first)
        assert await _take(reader, mode) == first


async def test_damaged_marker_and_headless_rows_are_counted_not_forwarded(tmp_path: Path, mode: str) -> None:
    good = _batches([2])[0]
    stray = Sample(ASSET, "spindle_speed", T0, 1.0)
    async with _buffer(tmp_path / "b.sqlite") as buf:
        await buf.put([stray, stray])  # rows without a frame head (as after a restart)
        await buf.put([Sample(MARKER_ASSET, MARKER_SIGNAL, T0, "not json"), stray])
        await buf.put(frame_rows(good))
        reader = FrameReader(buf)
        b = await _take(reader, mode)
        assert b == good
        await _ack(reader, b)
        assert await _take(reader, mode) is None
        assert (reader.stats.skipped_tail_rows, reader.stats.bad_markers) == (3, 1)
        assert buf.stats.backlog_samples == 0


async def test_frames_of_an_older_gateway_are_moved_into_records(tmp_path: Path) -> None:
    """A buffer written by a gateway before records: at start every frame becomes one record under
    its own identity, the frame rows go; a crash half-way moves the rest again (ingest dedups)."""
    batches = _batches([5, 1, 12, 3, 7])
    path = tmp_path / "b.sqlite"
    await _fill(path, batches)
    async with _buffer(path) as buf:
        reader = FrameReader(buf, window=4)
        first = await reader.take_encoded(0, 0.0)  # an older gateway had moved one, then crashed
        assert first is not None
        await buf.put_records([EncodedBatch.record(first.producer, first.batch_id, first.seq, len(first),
                                                   first.line())])
    async with _buffer(path) as buf:
        assert await migrate_frames(buf, window=4) == 5
        assert await migrate_frames(buf) == 0, "nothing left to move"
        records = await buf.take_bulk(0, linger=0.0)
        assert buf.stats.backlog_samples == buf.stats.backlog_record_samples == 5 + 5 + 1 + 12 + 3 + 7
    assert all(r.is_record for r in records)
    assert [r.decode() for r in records] == [batches[0], *batches], "the copy first, then every frame"
