"""The buffer when its disk fails it, when its file comes back from a snapshot, when the clock steps.

All on real SQLite files. Disk full is made real without privileges two ways:

- at COMMIT: ``RLIMIT_FSIZE`` of this process set to 1 byte makes every ``write()`` beyond the
  first byte of any file fail (``EFBIG``; Python ignores ``SIGXFSZ``), so SQLite's WAL write at
  COMMIT fails after every statement of the transaction succeeded — as ``ENOSPC`` does on a full
  disk (checked on a 2 MB tmpfs: SQLite then says ``SQLITE_FULL`` at COMMIT, and rolls back);
- in a statement: ``PRAGMA max_page_count`` makes SQLite answer ``SQLITE_FULL`` to the INSERT
  that needs a new page (SQLite then rolls the whole transaction back itself).

Both must leave the buffer's in-memory counters (backlog rows and bytes, which drive
``max_bytes``) describing what is stored: before the fix, each failed commit left its rows in them,
so ``drop_oldest`` then deleted real backlog for phantom bytes and ``form_batch`` raised IndexError.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from tests.edge_agent.test_buffer import drain, samples
from zhizao.model import Sample

NO_DROPS = {"overflow": 0, "expired": 0, "rejected": 0}


def recount(path: Path) -> tuple[int, int]:
    """Rows and bytes really stored, read by another connection (the truth)."""
    conn = sqlite3.connect(path)
    try:
        n, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM samples").fetchone()
        return int(n), int(size)
    finally:
        conn.close()


@contextmanager
def disk_full() -> Iterator[None]:
    """Every file write of this process beyond the first byte fails while inside (see the module
    docstring): the buffer's next COMMIT fails."""
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN, "a write error, not a kill"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_commits_failing_at_commit_leave_the_counters_as_stored_and_drop_no_real_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.sqlite"
    async with SqliteBuffer(path, "a", max_bytes=60_000, commit_interval=0.01) as buf:
        await buf.put(samples(300))
        stored = recount(path)
        assert 25_000 < stored[1] < 40_000
        taken = await buf.take(100)
        assert taken is not None
        with disk_full():
            for k in range(10):  # ~110 KB that never reached the disk
                with pytest.raises(sqlite3.Error):
                    await buf.put(samples(100, 1000 + 100 * k))
        assert recount(path) == stored
        assert (buf.stats.backlog_samples, buf.stats.backlog_bytes) == stored
        assert (await buf.put(samples(10, 5000))).committed == 10  # the disk has room again
        assert buf.stats.dropped == NO_DROPS, "drop_oldest deleted real backlog for bytes never stored"
        assert (buf.stats.backlog_samples, buf.stats.backlog_bytes) == recount(path)
        assert buf.stats.backlog_samples == 310
        await buf.ack(taken)
        assert await drain(buf) == [*samples(200, 100), *samples(10, 5000)]
        assert (buf.stats.backlog_samples, buf.stats.backlog_bytes) == recount(path) == (0, 0)


async def test_a_drop_in_a_commit_that_fails_is_neither_done_nor_counted_nor_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "b.sqlite"
    async with SqliteBuffer(path, "a", max_bytes=40_000, commit_interval=0.01) as buf:
        await buf.put(samples(300))  # ~33 KB: each put of 100 more must drop the oldest
        stored = recount(path)
        caplog.clear()
        with disk_full(), pytest.raises(sqlite3.Error):
            await buf.put(samples(100, 1000))
        assert "drop_oldest dropped" not in caplog.text, "a drop logged that never happened"
        assert buf.stats.dropped == NO_DROPS
        assert recount(path) == stored
        await buf.put(samples(100, 1000))  # now it commits: the drop happens, once, counted and logged
        dropped = buf.stats.dropped["overflow"]
        assert dropped > 0 and caplog.text.count("drop_oldest dropped") == 1
        assert recount(path)[0] == 400 - dropped == buf.stats.backlog_samples
        assert await drain(buf) == [*samples(300 - dropped, dropped), *samples(100, 1000)]


async def test_statements_failing_with_disk_full_leave_the_counters_as_stored(tmp_path: Path) -> None:
    """SQLITE_FULL in an INSERT: SQLite rolls the transaction back itself. Before the fix the
    buffer's own ROLLBACK then failed ('no transaction is active') before the counters were put
    back: the sample row inserted before the record that did not fit stayed counted, a phantom,
    and the next ``take`` raised IndexError (in a loop: the forwarder never got a batch again)."""
    path = tmp_path / "b.sqlite"
    async with SqliteBuffer(path, "a", commit_interval=0.01) as buf:
        await buf.put(samples(50))
        taken = await buf.take(100)  # every row is in this batch, in flight
        assert taken is not None and len(taken) == 50
        assert buf._db is not None
        conn = buf._db.conn  # the page limit is a setting of the buffer's own connection
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
        record = EncodedBatch.record("gw-agent", "r-1", 1, 1, b"x" * 20_000)  # needs new pages
        try:
            for k in range(5):  # one group commit: a row (fits in a page there is), then the record
                row, rec = buf.submit(samples(1, 1000 + k)), buf.submit_records([record])
                for fut in (row, rec):
                    with pytest.raises(sqlite3.OperationalError):
                        await fut
        finally:
            conn.execute("PRAGMA max_page_count = 1073741823")
        await buf.ack(taken)
        assert await buf.take(100) is None
        assert (buf.stats.backlog_samples, buf.stats.backlog_bytes) == recount(path) == (0, 0)
        await buf.put(samples(5, 9000))
        assert await drain(buf) == samples(5, 9000)
        assert buf.stats.dropped == NO_DROPS


async def test_counters_that_disagree_with_the_table_are_recounted_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the counters ever disagree with the rows (here another hand deletes rows under the
    open buffer), ``take`` recounts and says so instead of raising IndexError for ever."""
    path = tmp_path / "b.sqlite"
    async with SqliteBuffer(path, "a", commit_interval=0.01) as buf:
        await buf.put(samples(20))
        other = sqlite3.connect(path)
        other.execute("DELETE FROM samples")
        other.commit()
        other.close()
        with caplog.at_level(logging.ERROR):
            assert await buf.take(100) is None
        assert "counters disagreed with the database" in caplog.text
        assert buf.stats.backlog_samples == 0
        await buf.put(samples(3, 100))
        assert await drain(buf) == samples(3, 100)


def _copy(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
        if Path(str(src) + suffix).exists():
            shutil.copy(Path(str(src) + suffix), Path(str(dst) + suffix))


async def test_a_buffer_restored_from_a_snapshot_never_reuses_a_batch_id(tmp_path: Path) -> None:
    """The receiver deduplicates on (producer, batch_id): an id formed again after a restore
    would make it discard new samples as a 'duplicate'. A batch formed before the snapshot keeps
    its id (its resend must still be deduplicated)."""
    path, snapshot = tmp_path / "b.sqlite", tmp_path / "snapshot.sqlite"
    async with SqliteBuffer(path, "a") as buf:
        await buf.put(samples(10))
        formed = await buf.take(100)  # formed and persisted, not acked
        assert formed is not None
    _copy(path, snapshot)
    seen: dict[str, list[Sample]] = {formed.batch_id: list(formed.samples)}  # what the receiver stored
    async with SqliteBuffer(path, "a") as buf:
        again = await buf.take(100)
        assert again is not None and again.batch_id == formed.batch_id
        await buf.ack(again)
        await buf.put(samples(10, 100))
        day1 = await buf.take(100)
        assert day1 is not None
        seen[day1.batch_id] = list(day1.samples)
        await buf.ack(day1)
    _copy(snapshot, path)  # the box is rolled back to the snapshot
    async with SqliteBuffer(path, "a") as buf:
        resent = await buf.take(100)
        assert resent is not None and resent.batch_id == formed.batch_id, "a formed batch keeps its id"
        await buf.ack(resent)
        await buf.put(samples(10, 200))
        day2 = await buf.take(100)
        assert day2 is not None and day2.seq == day1.seq
        assert day2.batch_id not in seen, f"{day2.batch_id} was already stored: its samples would be lost"


async def test_a_forward_step_of_the_wall_clock_does_not_expire_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A box booted with its clock a day behind; NTP steps it while the agent runs. The samples
    buffered before are seconds old: not expired (max_age_s 2 s) — also after a restart — and
    they do expire once really older than max_age_s."""
    real = time.time
    behind = [86_400.0]
    monkeypatch.setattr(time, "time", lambda: real() - behind[0])
    path = tmp_path / "b.sqlite"
    async with SqliteBuffer(path, "a", max_age_s=2.0, commit_interval=0.01) as buf:
        await buf.put(samples(100))
        behind[0] = 0.0  # the NTP step
        await asyncio.sleep(1.1)  # the expiry pass runs at most once a second
        await buf.put(samples(1, 100))
        assert buf.stats.dropped == NO_DROPS, "an NTP step expired a backlog seconds old"
        assert buf.stats.backlog_samples == 101 and buf.stats.backlog_age() < 5
        assert "wall clock jumped 86400 s ahead" in caplog.text
    async with SqliteBuffer(path, "a", max_age_s=2.0, commit_interval=0.01) as buf:  # a restart
        await buf.put(samples(1, 101))
        assert buf.stats.dropped == NO_DROPS and buf.stats.backlog_samples == 102
        await asyncio.sleep(2.2)
        await buf.put(samples(1, 102))  # now all but this one are older than max_age_s
        assert buf.stats.dropped["expired"] == 102 and buf.stats.backlog_samples == 1
    conn = sqlite3.connect(path)
    try:  # no row from before the step is left: the correction is forgotten
        assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'clock_shift'").fetchone()[0] == 0
    finally:
        conn.close()
