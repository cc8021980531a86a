"""OPC UA values sharing a source timestamp (servers with coarse clocks, a status change that keeps
the timestamp), on the simulator's real asyncua server: only exact repeats are skipped (counted and
exported); a changed value or quality is kept, 1 µs after the previous sample (the stores key points
by series and time: InfluxDB would keep only one of two samples at the same time)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.opcua import OpcUaConnector
from edge_agent.connectors.opcua.convert import Converter
from tests.edge_agent.disk_full import samples
from tests.edge_agent.test_connector_commit_failures import metrics_text
from tests.edge_agent.test_opcua_connector import CNC, T0, config, server, stop, written
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao.model import Quality, Sample

US = timedelta(microseconds=1)
T = T0 + timedelta(seconds=10)


def speeds(buf: SqliteBuffer) -> list[Sample]:
    return [s for s in samples(buf) if s.signal == "spindle_speed" and written(s)]


async def test_a_changed_value_or_quality_with_the_same_source_timestamp_is_kept_1us_later(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with (
        SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
        server(port) as srv,
    ):
        conn = OpcUaConnector(config(port), "agent-1", tmp_path)
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.3)
        writes = [(1000.0, Quality.GOOD, T), (1001.0, Quality.GOOD, T), (1001.0, Quality.UNCERTAIN, T),
                  (1003.0, Quality.GOOD, T + timedelta(seconds=1))]
        for value, quality, ts in writes:
            await srv.write(0, ts, [("spindle_speed", value, quality)])
            await asyncio.sleep(0.3)  # each its own notification
        await eventually(lambda: len(speeds(buf)) == 4, 10, "four samples")
        await stop(task)
        # a new process: the initial notification repeats the last value exactly (skipped, counted)
        again = OpcUaConnector(config(port), "agent-1", tmp_path)
        task = asyncio.create_task(again.run(buf))
        await eventually(lambda: again.stats.skipped["repeat"] >= 1, 10, "the initial notification skipped")
        await asyncio.sleep(0.3)
        # a change at the source time of the last sample, after the restart: kept, 1 µs later
        await srv.write(0, T + timedelta(seconds=1), [("spindle_speed", 1004.0, Quality.GOOD)])
        await eventually(lambda: len(speeds(buf)) == 5, 10, "the change after the restart")
        await asyncio.sleep(0.3)
        await stop(task)
        got = [(s.value, s.quality, s.ts) for s in speeds(buf)]
        text = metrics_text(buf, again, tmp_path)
    t1 = T + timedelta(seconds=1)
    assert got == [(1000.0, Quality.GOOD, T), (1001.0, Quality.GOOD, T + US),
                   (1001.0, Quality.UNCERTAIN, T + 2 * US), (1003.0, Quality.GOOD, t1),
                   (1004.0, Quality.GOOD, t1 + US)]
    assert conn.stats.skipped["repeat"] == 0
    repeats = again.stats.skipped["repeat"]
    assert f'zhizao_agent_values_skipped_total{{connector="opcua",reason="repeat"}} {repeats}.0' in text
    assert 'zhizao_agent_values_skipped_total{connector="opcua",reason="no_value"} 0.0' in text


class _DV:
    """A DataValue as asyncua gives it (the fields the converter reads)."""

    def __init__(self, value: float | None, ts: object, status: object = None) -> None:
        self.Value = type("V", (), {"Value": value})() if value is not None else None
        self.StatusCode = status
        self.SourceTimestamp = ts
        self.ServerTimestamp = None


def test_marks_of_an_older_agent_and_a_new_source_time_within_the_nudged_ones() -> None:
    """A bare-timestamp mark (an older agent's) makes a value at that source time a repeat, as it
    did; a new source time within nudged samples goes after them (order and distinct times kept)."""
    skipped: dict[str, int] = {}
    conv = Converter([CNC], ["x"], [None], [T.isoformat()], skipped)
    assert conv.sample(0, _DV(5.0, T)) is None and skipped["repeat"] == 1
    a = conv.sample(0, _DV(6.0, T + US))
    b = conv.sample(0, _DV(7.0, T + US))
    c = conv.sample(0, _DV(8.0, T + 2 * US))
    assert a is not None and b is not None and c is not None
    assert (a.ts, b.ts, c.ts) == (T + US, T + 2 * US, T + 3 * US)
    restarted = Converter([CNC], ["x"], [None], [conv.mark(0)], {})
    assert restarted.sample(0, _DV(8.0, T + 2 * US)) is None, "the same value at the same source time"
    d = restarted.sample(0, _DV(9.0, T + 2 * US))
    assert d is not None and d.ts == T + 4 * US
