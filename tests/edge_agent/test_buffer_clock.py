"""The buffer's ages when the wall clock steps while the agent is stopped (or runs), on real SQLite.

The clocks come through the buffer's seam (:class:`~edge_agent.buffer.clock.Clocks`): a wall clock,
``CLOCK_BOOTTIME`` and the kernel's boot id the test sets. Within one boot the true time elapsed
across a restart is known from the steady clock, so a step made while the buffer was closed is
measured and corrected (nothing expired for it, nothing kept for it); after a reboot it is unknown,
and only a wall clock earlier than at the last use is reported.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.buffer import SqliteBuffer
from edge_agent.buffer.clock import ClockReading, Clocks
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.metrics import AgentCollector, AgentMetrics
from tests.edge_agent.test_buffer import samples
from tests.support.forwarding import NoUplink

NO_DROPS = {"overflow": 0, "expired": 0, "rejected": 0}
DAY = 86_400.0
LOGGER = "edge_agent.buffer.store"


@dataclass
class FakeClocks:
    """The three clocks of a box, set by the test."""

    wall: float = 1_790_000_000.0
    steady: float = 5_000.0
    boot: str | None = "4d2c5b0e-boot-1"

    def clocks(self) -> Clocks:
        return Clocks(wall=lambda: self.wall, steady=lambda: self.steady, boot_id=lambda: self.boot)

    def elapse(self, seconds: float) -> None:
        """Time passes: both clocks advance."""
        self.wall += seconds
        self.steady += seconds

    def reboot(self, boot: str, off_for: float) -> None:
        """The box is off for ``off_for`` s and boots again (the steady clock starts again)."""
        self.boot, self.steady, self.wall = boot, 12.0, self.wall + off_for




def metrics_text(buf: SqliteBuffer, tmp_path: Path) -> str:
    dead = DeadLetter(tmp_path / "dead.jsonl")
    fwd = Forwarder(buf, NoUplink(), dead)
    return AgentMetrics(AgentCollector(buf, fwd, [], dead, {"version": "test"})).render().decode()


def meta(path: Path, key: str) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def buffer(path: Path, clock: FakeClocks, max_age_s: float) -> SqliteBuffer:
    return SqliteBuffer(path, "a", max_age_s=max_age_s, commit_interval=0.01, clocks=clock.clocks())


async def test_a_clock_stepped_forward_while_the_agent_was_stopped_does_not_expire_the_backlog(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent ran with the clock a day behind and was stopped; NTP stepped the clock while it was
    stopped (same boot); a minute later it starts again. The backlog is a minute old: nothing
    expired (max_age_s one hour; the old code dropped all 100 under ``expired``), one WARNING names
    the step, the metric counts it — and the samples expire once really older than max_age_s."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClocks(wall=1_790_000_000.0 - DAY)
    path = tmp_path / "b.sqlite"
    async with buffer(path, clock, 3600.0) as buf:
        await buf.put(samples(100))
        clock.elapse(30.0)
    assert warnings(caplog) == []
    clock.elapse(30.0)
    clock.wall += DAY  # NTP steps the clock while the agent is stopped
    async with buffer(path, clock, 3600.0) as buf:
        await buf.put(samples(1, 100))
        assert buf.stats.dropped == NO_DROPS, "a clock correction expired a backlog a minute old"
        assert buf.stats.backlog_samples == 101
        assert 59.0 <= buf.stats.backlog_age() <= 61.0, buf.stats.backlog_age()
        assert buf.stats.clock_steps == {"forward": 1, "backward": 0, "backward_after_reboot": 0}
        assert buf.stats.last_clock_step_s == pytest.approx(DAY)
        text = metrics_text(buf, tmp_path)
        (line,) = warnings(caplog)
        assert "stepped 86400 s ahead while the buffer was closed" in line and "CLOCK_BOOTTIME" in line
        assert "30 s really elapsed" in line and "the 100 samples buffered" in line, line
        clock.elapse(3550.0)  # the first 100 are now 3,610 s old, the one after the restart 3,550 s
        await asyncio.sleep(1.1)  # the expiry pass runs at most once a second
        await buf.put(samples(1, 101))
        assert buf.stats.dropped["expired"] == 100 and buf.stats.backlog_samples == 2
    assert 'zhizao_agent_clock_steps_total{kind="forward"} 1.0' in text
    assert 'zhizao_agent_clock_steps_total{kind="backward_after_reboot"} 0.0' in text
    assert "zhizao_agent_clock_last_step_seconds 86400.0" in text


async def test_a_clock_set_back_while_the_agent_was_stopped_ages_the_backlog_by_the_true_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The clock is set back a day while the agent is stopped (same boot): the backlog's age is its
    true age (a minute; the old code said 0 — the new data looked older than the backlog), and it
    expires at its true age, not a day late; one WARNING, counted as ``backward``."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClocks()
    path = tmp_path / "b.sqlite"
    async with buffer(path, clock, 100.0) as buf:
        await buf.put(samples(100))
    clock.elapse(60.0)
    clock.wall -= DAY
    async with buffer(path, clock, 100.0) as buf:
        await buf.put(samples(1, 100))
        assert 59.0 <= buf.stats.backlog_age() <= 61.0, buf.stats.backlog_age()
        assert buf.stats.dropped == NO_DROPS and buf.stats.backlog_samples == 101
        assert buf.stats.clock_steps["backward"] == 1 and buf.stats.last_clock_step_s == pytest.approx(-DAY)
        (line,) = warnings(caplog)
        assert "stepped 86400 s back while the buffer was closed" in line, line
        clock.elapse(50.0)  # the first 100 are 110 s old (max_age_s 100), the one after 50 s
        await asyncio.sleep(1.1)
        await buf.put(samples(1, 101))
        assert buf.stats.dropped["expired"] == 100, "expired at their true age"
        assert buf.stats.backlog_samples == 2


async def test_after_a_reboot_a_wall_clock_earlier_than_at_the_last_use_is_reported_not_corrected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a reboot the time elapsed is unknown. A wall clock earlier than at the buffer's last
    use is certainly wrong (now or then): one WARNING says so, counted as
    ``backward_after_reboot``; nothing is re-aged or dropped. A later wall clock is a box that was
    off: nothing to report."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClocks()
    path = tmp_path / "b.sqlite"
    async with buffer(path, clock, 7 * DAY) as buf:
        await buf.put(samples(10))
        clock.elapse(100.0)
    last_use = clock.wall
    clock.reboot("4d2c5b0e-boot-2", off_for=-3600.0)  # booted with a clock an hour behind
    async with buffer(path, clock, 7 * DAY) as buf:
        await buf.put(samples(1, 10))
        assert buf.stats.clock_steps == {"forward": 0, "backward": 0, "backward_after_reboot": 1}
        assert buf.stats.last_clock_step_s == pytest.approx(-3600.0)
        assert buf.stats.dropped == NO_DROPS and buf.stats.backlog_samples == 11
        (line,) = warnings(caplog)
        assert "3600 s earlier than at the buffer's last use" in line and "reboot" in line, line
        assert "not re-aged" in line and "the 10 samples buffered" in line
    assert meta(path, "clock_shift") is None, "nothing re-aged after a reboot"
    caplog.clear()
    clock.reboot("4d2c5b0e-boot-3", off_for=2 * DAY)  # off for two days: a later clock is no step
    async with buffer(path, clock, 7 * DAY) as buf:
        await buf.put(samples(1, 11))
        assert buf.stats.clock_steps == {"forward": 0, "backward": 0, "backward_after_reboot": 0}
        assert buf.stats.dropped == NO_DROPS and buf.stats.backlog_samples == 12
    assert warnings(caplog) == []
    assert last_use < clock.wall


async def test_the_clocks_reading_is_kept_with_each_commit_so_a_crashed_agent_is_covered_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reading (wall, steady, boot id) is committed with the samples, not only at a clean stop:
    the files of a buffer still open (as a ``kill -9`` leaves them) carry it, and a step made
    before the restart is measured from it."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClocks()
    path, crashed = tmp_path / "b.sqlite", tmp_path / "crashed.sqlite"
    async with buffer(path, clock, 3600.0) as buf:
        clock.elapse(5.0)
        await buf.put(samples(50))
        assert meta(path, "clock_ref") == ClockReading(clock.wall, clock.steady, clock.boot).text()
        for suffix in ("", "-wal"):  # the files as they are at this instant: the process killed
            shutil.copy(f"{path}{suffix}", f"{crashed}{suffix}")
    clock.elapse(20.0)
    clock.wall += 2 * DAY
    async with buffer(crashed, clock, 3600.0) as buf:
        await buf.put(samples(1, 50))
        assert buf.stats.dropped == NO_DROPS and buf.stats.backlog_samples == 51
        assert buf.stats.clock_steps["forward"] == 1
        assert 19.0 <= buf.stats.backlog_age() <= 21.0
    assert any("stepped 172800 s ahead" in m for m in warnings(caplog))


@pytest.mark.parametrize("record", [None, "garbage", "1790000000.0 nan 4d2c5b0e-boot-1"])
async def test_a_buffer_without_a_clocks_reading_opens_and_gets_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record: str | None
) -> None:
    """A buffer written by 0.1.0 has no clocks' reading (``None``), one damaged has none usable: it
    opens as before, with nothing to compare (no step reported, the clock taken as it is), and
    keeps one from then on."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClocks()
    path = tmp_path / "b.sqlite"
    async with buffer(path, clock, 7 * DAY) as buf:
        await buf.put(samples(10))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM meta WHERE key = 'clock_ref'")  # as 0.1.0 left it
        if record is not None:
            conn.execute("INSERT INTO meta VALUES ('clock_ref', ?)", (record,))
    conn.close()
    clock.elapse(10.0)
    clock.wall += DAY
    async with buffer(path, clock, 7 * DAY) as buf:
        assert meta(path, "clock_ref") == ClockReading(clock.wall, clock.steady, clock.boot).text()
        await buf.put(samples(1, 10))
        assert buf.stats.backlog_samples == 11 and buf.stats.dropped == NO_DROPS
        assert sum(buf.stats.clock_steps.values()) == 0
    assert warnings(caplog) == []


async def test_a_clock_set_back_while_running_ages_the_backlog_by_the_true_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backward step while the agent runs is measured like a forward one: the backlog keeps its
    true age (the new data no longer looks older than it), one WARNING, counted."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClocks()
    async with buffer(tmp_path / "b.sqlite", clock, 3600.0) as buf:
        await buf.put(samples(100))
        clock.elapse(30.0)
        clock.wall -= DAY
        await asyncio.sleep(1.1)
        await buf.put(samples(1, 100))
        assert 29.0 <= buf.stats.backlog_age() <= 31.0, buf.stats.backlog_age()
        assert buf.stats.clock_steps["backward"] == 1 and buf.stats.dropped == NO_DROPS
    assert sum("wall clock jumped 86400 s back" in m for m in warnings(caplog)) == 1


async def test_two_steps_in_opposite_directions_never_age_a_sample_beyond_its_true_age(
    tmp_path: Path,
) -> None:
    """Back 1,000 s, then (samples stored between) ahead 500 s: one correction covers every row, so it
    is chosen to keep each row at most its true age — none is dropped early (adding the two would
    have aged the rows stored between the steps 1,000 s beyond their true age: all dropped)."""
    clock = FakeClocks()
    async with buffer(tmp_path / "b.sqlite", clock, 600.0) as buf:
        await buf.put(samples(10))
        clock.wall -= 1000.0  # set back
        await asyncio.sleep(1.1)
        await buf.put(samples(10, 10))  # true age 0 at the step below
        clock.wall += 500.0  # stepped ahead
        await asyncio.sleep(1.1)
        await buf.put(samples(1, 20))
        assert buf.stats.clock_steps["backward"] == 1 and buf.stats.clock_steps["forward"] == 1
        clock.elapse(400.0)  # every row is at most ~400 s old, max_age_s 600
        await asyncio.sleep(1.1)
        await buf.put(samples(1, 21))
        assert buf.stats.dropped == NO_DROPS and buf.stats.backlog_samples == 22
