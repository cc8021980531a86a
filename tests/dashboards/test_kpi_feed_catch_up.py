"""The KPI feed leaves no gap in its series: rounds missed while InfluxDB was down are computed
once it is back, each at its own time, and a restarted feed catches up from its heartbeat file.
A real ``influxd`` (stopped and started by the test) holds the data and the KPI series."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analytics.kpi.config import KpiConfig
from analytics.kpi.engine import KPI_SIGNALS
from analytics.kpi_feed.feed import KpiFeed
from analytics.kpi_feed.runner import Runner
from ingest.settings import InfluxSettings
from ingest.storage.base import SampleFrame
from ingest.storage.influxdb.store import InfluxStore
from simulator.engine import generate
from simulator.plant_export import plant_config
from tests.dashboards.fill import now_s, scenario
from tests.support.servers import InfluxDB
from tests.support.waiting import eventually

MACHINE = "cnc-1"
SIGNAL = "kpi.1h.energy_kwh"


def settings(server: InfluxDB, measurement: str = "telemetry") -> InfluxSettings:
    return InfluxSettings(url=server.url, database="zhizao", measurement=measurement, timeout_s=2)


async def filled(influxdb: InfluxDB, minutes: int = 20) -> tuple[datetime, KpiFeed, InfluxStore, InfluxStore]:
    """20 simulated minutes of the example workshop up to now, KPI signals only."""
    end = now_s()
    sc = scenario(end, minutes)
    samples = [s for s in generate(sc, 7, minutes * 60.0) if s.signal in KPI_SIGNALS]
    store = InfluxStore(settings(influxdb))
    sink = InfluxStore(settings(influxdb, "zhizao_kpi"))
    await store.__aenter__()
    await sink.__aenter__()
    for i in range(0, len(samples), 20_000):
        await store.write(SampleFrame.from_samples(samples[i:i + 20_000]))
    return end, KpiFeed(store, sink, plant_config(sc), KpiConfig(), ["plant1/a1/line1"]), store, sink


def kpi_times(influxdb: InfluxDB) -> list[datetime]:
    q = (f"SELECT \"value\" FROM \"zhizao_kpi\" WHERE \"signal\" = '{SIGNAL}' AND \"machine\" = '{MACHINE}'")
    series = json.loads(influxdb.query(q, db="zhizao"))["results"][0].get("series", [])
    return [datetime.fromisoformat(v[0].replace("Z", "+00:00")) for s in series for v in s["values"]]


async def test_rounds_missed_while_influxdb_was_down_are_filled_in(influxdb: InfluxDB) -> None:
    end, feed, store, sink = await filled(influxdb)
    step = timedelta(seconds=60)
    t0 = end - 6 * step
    runner = Runner(feed, interval_s=60)
    try:
        assert await runner.tick(t0) > 0
        await asyncio.to_thread(influxdb.stop)
        assert await runner.tick(t0 + step) == 0
        assert await runner.tick(t0 + 2 * step) == 0
        assert runner.failures == 2 and runner.last_ok == t0
        await asyncio.to_thread(influxdb.start)
        assert await runner.tick(t0 + 3 * step) > 0
    finally:
        await store.__aexit__(None, None, None)
        await sink.__aexit__(None, None, None)
    assert kpi_times(influxdb) == [t0, t0 + step, t0 + 2 * step, t0 + 3 * step]  # no gap
    assert (runner.caught_up, runner.skipped, runner.last_ok) == (2, 0, t0 + 3 * step)


async def test_catch_up_is_bounded_and_what_it_skips_is_named(influxdb: InfluxDB,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    end, feed, store, sink = await filled(influxdb)
    step = timedelta(seconds=60)
    t0 = end - 8 * step
    runner = Runner(feed, interval_s=60, catch_up_rounds=2)
    caplog.set_level(logging.WARNING, logger="analytics.kpi_feed.runner")
    try:
        await runner.tick(t0)
        await asyncio.to_thread(influxdb.stop)
        for k in range(1, 6):
            assert await runner.tick(t0 + k * step) == 0
        await asyncio.to_thread(influxdb.start)
        assert await runner.tick(t0 + 6 * step) > 0
    finally:
        await store.__aexit__(None, None, None)
        await sink.__aexit__(None, None, None)
    # rounds t0+1..t0+5 were missed: the newest two filled, three skipped and named
    assert kpi_times(influxdb) == [t0, t0 + 4 * step, t0 + 5 * step, t0 + 6 * step]
    assert (runner.caught_up, runner.skipped) == (2, 3)
    warned = [r.getMessage() for r in caplog.records if "not computed" in r.getMessage()]
    assert len(warned) == 1
    assert (t0 + step).isoformat() in warned[0] and (t0 + 3 * step).isoformat() in warned[0]


async def test_a_restarted_feed_catches_up_from_its_heartbeat(influxdb: InfluxDB, tmp_path: Path) -> None:
    end, feed, store, sink = await filled(influxdb)
    alive = tmp_path / "alive"
    alive.touch()
    last = datetime.now(UTC) - timedelta(seconds=210)  # the previous run's last round, 3.5 rounds ago
    os.utime(alive, (last.timestamp(), last.timestamp()))
    runner = Runner(feed, interval_s=60, heartbeat=alive)
    try:
        task = asyncio.create_task(runner.run())
        # stop() between caught-up rounds would end the catch-up there: wait for the round of now
        caught_up_to = last + timedelta(seconds=180)
        await eventually(lambda: runner.last_ok is not None and runner.last_ok > caught_up_to, 60,
                         "the catch-up and the first round")
        runner.stop()
        await asyncio.wait_for(task, 30)
    finally:
        await store.__aexit__(None, None, None)
        await sink.__aexit__(None, None, None)
    assert runner.caught_up == 3 and runner.failures == 0
    times = kpi_times(influxdb)
    assert len(times) == 4
    assert [round((t - last).total_seconds()) for t in times[:3]] == [60, 120, 180]
    assert alive.stat().st_mtime >= times[-1].timestamp() - 1  # touched by the last round
    assert end <= times[-1] + timedelta(seconds=5)


# A feed killed in the middle of a catch-up (review 57): the heartbeat used to be touched with the
# wall time after each caught-up round, so a restart took "now" for the last round and never
# computed the rest — a silent gap. The runner is under test; the feed is a recorder.

class Killed(BaseException):
    """The process dies here (nothing after it runs)."""


class Recorder:
    def __init__(self, die_at_call: int | None = None) -> None:
        self.times: list[datetime] = []
        self.die_at_call = die_at_call

    async def once(self, t: datetime) -> int:
        if self.die_at_call is not None and len(self.times) + 1 == self.die_at_call:
            raise Killed
        self.times.append(t)
        return 1


async def test_a_feed_killed_during_catch_up_resumes_the_catch_up(tmp_path: Path) -> None:
    step = timedelta(seconds=60)
    alive = tmp_path / "alive"
    alive.touch()
    now = datetime.now(UTC)
    last = now - 10 * step  # the previous run's last round: 9 rounds missed (at last+1..last+9)
    os.utime(alive, (last.timestamp(), last.timestamp()))

    first = Recorder(die_at_call=4)  # computes 3 missed rounds, dies in the 4th
    a = Runner(first, interval_s=60, heartbeat=alive)  # type: ignore[arg-type]
    a.last_ok = a._last_heartbeat()
    with contextlib.suppress(Killed):
        await a.tick(now)
    assert len(first.times) == 3

    second = Recorder()
    b = Runner(second, interval_s=60, heartbeat=alive)  # type: ignore[arg-type]
    task = asyncio.create_task(b.run())  # restarted: catches up from the heartbeat's time
    await eventually(lambda: b.rounds >= 1, 10, "the first round of the restarted feed")
    b.stop()
    await asyncio.wait_for(task, 70)

    assert a.last_ok is not None
    due = [last + k * step for k in range(1, 10)]
    done = {t.replace(microsecond=0) for t in first.times + second.times}
    never = [t for t in due if not any(abs((t - d).total_seconds()) < 30 for d in done)]
    assert not never or b.skipped >= len(never), (
        f"{len(never)} missed rounds neither computed nor reported skipped after the restart: "
        f"{[t.isoformat() for t in never]}; restarted feed computed {[t.isoformat() for t in second.times]}")
    assert not never  # here: all of them computed, none skipped
    assert alive.read_text().strip() == second.times[-1].isoformat()  # the last round's own time


async def test_a_stop_during_catch_up_ends_it_and_the_restart_resumes_it(tmp_path: Path) -> None:
    """SIGTERM (``stop()``) between two caught-up rounds ends the tick there; the heartbeat holds
    the last round written, so the next run computes the rest."""
    step = timedelta(seconds=60)
    alive = tmp_path / "alive"
    now = datetime.now(UTC)
    last = now - 6 * step
    alive.write_text(f"{last.isoformat()}\n")  # a previous run's last round, 5 rounds missed

    class StopAfter(Recorder):
        async def once(self, t: datetime) -> int:
            n = await super().once(t)
            if len(self.times) == 2:
                runner.stop()
            return n

    first = StopAfter()
    runner = Runner(first, interval_s=60, heartbeat=alive)  # type: ignore[arg-type]
    await asyncio.wait_for(runner.run(), 30)
    assert first.times == [last + step, last + 2 * step] and runner.caught_up == 2
    second = Recorder()
    again = Runner(second, interval_s=60, heartbeat=alive)  # type: ignore[arg-type]
    again.last_ok = again._last_heartbeat()  # what run() does at a start
    assert again.last_ok == last + 2 * step
    assert await again.tick(now) == 4
    assert second.times == [last + 3 * step, last + 4 * step, last + 5 * step, now]
