"""One contract suite for every Store backend (DuckDB temp file, real influxd)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from ingest.storage.base import Agg, BatchKey, EventQuery, SampleFrame, Series, SeriesQuery, Store
from tests.ingest.conftest import M1, M2, OTHER_LINE, T0, make_store, sample
from zhizao.events import Event, EventSource, EventState
from zhizao.model import Quality, Sample


def q(asset: str, start: float, end: float, **kw: object) -> SeriesQuery:
    return SeriesQuery(asset=asset, start=T0 + timedelta(seconds=start), end=T0 + timedelta(seconds=end),
                       **kw)  # type: ignore[arg-type]


async def test_round_trip_keeps_values_types_units_quality(store: Store) -> None:
    samples = [
        sample(M1, "spindle_speed", 0.25, 12000.5, "rpm"),
        sample(M1, "spindle_speed", 1.5, 11999.0, "rpm", Quality.UNCERTAIN),
        sample(M1, "parts_total", 1.0, 42),
        sample(M1, "door_open", 2.0, True),
        sample(M1, "door_open", 3.0, False, quality=Quality.BAD),
        sample(M1, "state", 0.0, "running"),
        sample(M1, "state", 4.0, 'down "jam" \\ x'),
    ]
    result = await store.write(SampleFrame.from_samples(samples))
    assert result.accepted == 7 and not result.duplicate
    series = await store.query(q("plant/a1/line1/cnc-1", 0, 10))
    assert [s.signal for s in series] == ["door_open", "parts_total", "spindle_speed", "state"]
    by = {s.signal: s for s in series}
    assert by["spindle_speed"].values() == [12000.5, 11999.0]
    assert by["spindle_speed"].unit == "rpm"
    assert by["spindle_speed"].quality is not None
    assert by["spindle_speed"].quality.tolist() == ["good", "uncertain"]
    assert by["spindle_speed"].timestamps() == [T0 + timedelta(seconds=0.25), T0 + timedelta(seconds=1.5)]
    assert by["parts_total"].values() == [42]
    assert by["door_open"].values() == [True, False]
    assert by["state"].values() == ["running", 'down "jam" \\ x']
    assert by["state"].is_string
    pd_series = by["spindle_speed"].to_pandas()
    assert pd_series.index[0] == T0 + timedelta(seconds=0.25)
    assert pd_series.dtype == np.float64


async def test_dedup_same_batch_stored_once_and_survives_reopen(
        store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    frame = SampleFrame.from_samples([sample(M1, "power_kw", i, float(i), "kW") for i in range(10)])
    key = BatchKey("agent-7", "b-000001")
    first = await store.write(frame, key)
    again = await store.write(frame, key)
    assert (first.accepted, first.duplicate) == (10, False)
    assert (again.accepted, again.duplicate) == (10, True)
    other = await store.write(frame, BatchKey("agent-8", "b-000001"))
    assert not other.duplicate  # dedup is per producer
    series = await store.query(q("plant", 0, 100, agg=Agg.COUNT, bucket=timedelta(hours=1)))
    if store.name == "duckdb":  # InfluxDB overwrites identical points: the agent-8 copy merges
        assert series[0].values() == [20]
    else:
        assert series[0].values() == [10]
    kind = store.name
    await store.__aexit__(None, None, None)
    reopened = make_store(kind, tmp_path, request)
    async with reopened:
        assert await reopened.seen(key) is not None
        assert (await reopened.write(frame, key)).duplicate
        assert await reopened.seen(BatchKey("agent-7", "never-sent")) is None


async def test_time_range_is_half_open_and_prefix_exact(store: Store) -> None:
    await store.write(SampleFrame.from_samples([
        sample(M1, "power_kw", 0, 1.0), sample(M1, "power_kw", 10, 2.0), sample(M1, "power_kw", 20, 3.0),
        sample(M2, "power_kw", 10, 5.0), sample(OTHER_LINE, "power_kw", 10, 9.0),
        sample(M1, "state", 10, "idle"),
    ]))
    got = await store.query(q("plant/a1/line1/cnc-1", 0, 20, signals=("power_kw",)))
    assert len(got) == 1 and got[0].values() == [1.0, 2.0]  # start inclusive, end exclusive
    got = await store.query(q("plant/a1/line1/cnc-1", 0.000001, 20.000001, signals=("power_kw",)))
    assert got[0].values() == [2.0, 3.0]
    line = await store.query(q("plant/a1/line1", 0, 30, signals=("power_kw",)))
    assert [(s.asset, len(s)) for s in line] == [("plant/a1/line1/cnc-1", 3), ("plant/a1/line1/cnc-2", 1)]
    area = await store.query(q("plant/a1", 0, 30, signals=("power_kw",)))
    assert [s.asset for s in area] == [str(M1), str(M2), str(OTHER_LINE)]
    limited = await store.query(q("plant/a1/line1/cnc-1", 0, 30, signals=("power_kw",), limit=2))
    assert limited[0].values() == [1.0, 2.0]
    both = await store.query(q("plant/a1/line1/cnc-1", 0, 30))
    assert [s.signal for s in both] == ["power_kw", "state"]
    assert await store.query(q("plant/a1/line1/cnc-1", 30, 40)) == []


async def test_bucketing_mean_min_max_last_count(store: Store) -> None:
    # 0..59 s, one point per second, value = second; buckets of 20 s aligned to the epoch
    await store.write(SampleFrame.from_samples(
        [sample(M1, "temp", i, float(i), "degC") for i in range(60)]
        + [sample(M1, "state", i, "running" if i < 30 else "down") for i in range(0, 60, 5)]))
    base = q("plant/a1/line1/cnc-1", 0, 60, signals=("temp",), bucket=timedelta(seconds=20))
    expected = {
        Agg.MEAN: [9.5, 29.5, 49.5], Agg.MIN: [0.0, 20.0, 40.0], Agg.MAX: [19.0, 39.0, 59.0],
        Agg.LAST: [19.0, 39.0, 59.0], Agg.COUNT: [20, 20, 20],
    }
    for agg, values in expected.items():
        res = await store.query(SeriesQuery(asset=base.asset, start=base.start, end=base.end,
                                            signals=base.signals, agg=agg, bucket=base.bucket))
        assert len(res) == 1, agg
        assert res[0].values() == values, agg
        assert res[0].timestamps() == [T0, T0 + timedelta(seconds=20), T0 + timedelta(seconds=40)], agg
        assert res[0].unit == "degC"
    # a point limit widens the bucket: 60 s in at most 2 points -> 30 s buckets
    res = await store.query(q("plant/a1/line1/cnc-1", 0, 60, signals=("temp",), agg=Agg.MEAN, limit=2))
    assert res[0].values() == [14.5, 44.5]
    # string series are aggregated with last
    res = await store.query(q("plant/a1/line1/cnc-1", 0, 60, signals=("state",), agg=Agg.MEAN,
                              bucket=timedelta(seconds=30)))
    assert res[0].values() == ["running", "down"]
    res = await store.query(q("plant/a1/line1/cnc-1", 0, 60, signals=("state",), agg=Agg.COUNT,
                              bucket=timedelta(seconds=30)))
    assert res[0].values() == [6, 6]


async def test_retention_deletes_only_older_samples(store: Store) -> None:
    await store.write(SampleFrame.from_samples([sample(M1, "power_kw", i, float(i)) for i in range(10)]))
    await store.delete_before(T0 + timedelta(seconds=5))
    got = await store.query(q("plant", -100, 100))
    assert got[0].values() == [5.0, 6.0, 7.0, 8.0, 9.0]


async def test_latest_and_catalogue(store: Store) -> None:
    await store.write(SampleFrame.from_samples([
        sample(M1, "power_kw", 0, 1.0, "kW"), sample(M1, "power_kw", 5, 2.5, "kW"),
        sample(M1, "state", 3, "running"), sample(M2, "parts_total", 1, 7),
    ]))
    await store.write(SampleFrame.from_samples([sample(M1, "power_kw", 2, 9.0, "kW")]))  # late, older
    latest = await store.latest(str(M1))
    assert [(v.signal, v.value, v.unit, v.ts) for v in latest] == [
        ("power_kw", 2.5, "kW", T0 + timedelta(seconds=5)),
        ("state", "running", None, T0 + timedelta(seconds=3))]
    cat = await store.catalogue()
    assert [(c.asset, c.signal, c.unit, c.vtype) for c in cat] == [
        (str(M1), "power_kw", "kW", "f"), (str(M1), "state", None, "s"), (str(M2), "parts_total", None, "i")]
    assert cat[0].last_seen == T0 + timedelta(seconds=5)
    assert [c.signal for c in await store.catalogue("plant/a1/line1/cnc-2")] == ["parts_total"]


async def test_latest_value_unit_and_quality_all_come_from_the_newest_sample(store: Store) -> None:
    """The newest sample without a unit has no unit in ``latest`` and the catalogue, though an
    older sample of the same write had one (DuckDB's ``arg_max`` skips NULLs: it reported 'kW')."""
    await store.write(SampleFrame.from_samples([
        sample(M1, "load", 0, 5.0, "kW"), sample(M1, "load", 1, 0.7, None, Quality.BAD),
        sample(M1, "mode", 0, 3.0), sample(M1, "mode", 1, "auto")]))
    latest = await store.latest(str(M1))
    assert [(v.signal, v.value, v.unit, v.quality) for v in latest] == [
        ("load", 0.7, None, Quality.BAD), ("mode", "auto", None, Quality.GOOD)], store.name
    assert [(c.signal, c.unit) for c in await store.catalogue()] == [("load", None), ("mode", None)]


async def test_events_upsert_by_id_and_query(store: Store) -> None:
    e1 = Event(id="kpi:oee:line1:1", source=EventSource.KPI, rule="oee_low", asset="plant/a1/line1",
               start=T0, value=0.4, message="OEE below 60 %")
    e2 = Event(id="anomaly:cnc-1:1", source=EventSource.ANOMALY, rule="iforest-v3", asset=str(M1),
               start=T0 + timedelta(minutes=5), value=0.9, peak=0.95)
    e3 = Event(id="kpi:oee:other", source=EventSource.KPI, rule="oee_low", asset=str(OTHER_LINE), start=T0)
    await store.upsert_events([e1, e2, e3])
    await store.upsert_events([e1.resolved(T0 + timedelta(minutes=10), value=0.7)])
    everything = await store.query_events(EventQuery())
    assert [e.id for e in everything] == [e2.id, e1.id, e3.id]
    line1 = await store.query_events(EventQuery(asset="plant/a1/line1"))
    assert {e.id for e in line1} == {e1.id, e2.id}
    open_ = await store.query_events(EventQuery(state=EventState.OPEN))
    assert {e.id for e in open_} == {e2.id, e3.id}
    resolved = next(e for e in line1 if e.id == e1.id)
    assert resolved.state is EventState.RESOLVED and resolved.value == 0.7
    assert [e.id for e in await store.query_events(EventQuery(source=EventSource.ANOMALY))] == [e2.id]
    # time overlap: e1 ended at +10 min, so it is not in [+11 min, +1 h); open events are
    later = await store.query_events(
        EventQuery(start=T0 + timedelta(minutes=11), end=T0 + timedelta(hours=1)))
    assert {e.id for e in later} == {e2.id, e3.id}
    before = await store.query_events(EventQuery(end=T0 + timedelta(minutes=1)))
    assert {e.id for e in before} == {e1.id, e3.id}


async def test_events_with_same_key_but_different_ids_are_distinct(store: Store) -> None:
    """Events are identified by ``id`` only: same source, asset, rule and start do not merge them."""
    e5 = Event(id="ev-5", source=EventSource.KPI, rule="oee_low", asset=str(M1), start=T0, value=0.5)
    e6 = Event(id="ev-6", source=EventSource.KPI, rule="oee_low", asset=str(M1), start=T0, value=0.6)
    await store.upsert_events([e5, e6])
    assert [(e.id, e.value) for e in await store.query_events(EventQuery())] == [("ev-5", 0.5), ("ev-6", 0.6)]
    await store.upsert_events([e6.model_copy(update={"value": 0.9})])  # same id: replaced
    await store.upsert_events([e5.resolved(T0 + timedelta(minutes=1))])
    got = await store.query_events(EventQuery())
    assert [(e.id, e.value, e.state) for e in got] == [
        ("ev-5", 0.5, EventState.RESOLVED), ("ev-6", 0.9, EventState.OPEN)]


async def test_events_time_filter_keeps_long_episodes(store: Store) -> None:
    """``[start, end)`` overlap: an episode that began long before ``start`` is returned while it is
    open or ended at/after ``start``; one that ended before, or starts at/after ``end``, is not."""
    day = timedelta(days=1)
    t = T0 + timedelta(days=30)
    def ev(i: str, start: object, end: object = None) -> Event:
        e = Event(id=i, source=EventSource.ANOMALY, rule="m", asset=str(M1), start=start)
        return e if end is None else e.resolved(end)  # type: ignore[arg-type]
    events = [ev("still-open", T0), ev("ended-after", T0, t + timedelta(hours=1)),
              ev("ended-at-start", T0 + day, t), ev("ended-before", T0, t - timedelta(seconds=1)),
              ev("inside", t + timedelta(minutes=5), t + timedelta(minutes=6)),
              ev("after-end", t + day), ev("at-end", t + timedelta(hours=2))]
    await store.upsert_events(events)
    got = await store.query_events(EventQuery(start=t, end=t + timedelta(hours=2)))
    assert [e.id for e in got] == ["inside", "ended-at-start", "ended-after", "still-open"]
    open_only = await store.query_events(
        EventQuery(start=t, end=t + timedelta(hours=2), state=EventState.OPEN))
    assert [e.id for e in open_only] == ["still-open"]
    since = await store.query_events(EventQuery(start=t + timedelta(hours=3)))
    assert [e.id for e in since] == ["after-end", "at-end", "still-open"]


async def test_repeated_timestamps_duckdb_keeps_all_influxdb_the_last(store: Store) -> None:
    """As documented in ingest/README.md: a repeated (asset, signal, timestamp) replaces the
    earlier sample in InfluxDB (its data model), while DuckDB keeps every sample."""
    await store.write(SampleFrame.from_samples([sample(M1, "power_kw", i, float(i)) for i in range(3)]))
    await store.write(SampleFrame.from_samples([sample(M1, "power_kw", i, 10.0 + i) for i in range(2)]))
    values = (await store.query(q(str(M1), 0, 10)))[0].values()
    if store.name == "duckdb":
        assert sorted(values) == [0.0, 1.0, 2.0, 10.0, 11.0]  # type: ignore[type-var]
    else:
        assert values == [10.0, 11.0, 2.0]


async def test_dedup_records_are_bounded(store: Store) -> None:
    frame = SampleFrame.from_samples([sample(M1, "power_kw", 0, 1.0)])
    for i in range(3):
        await store.write(frame, BatchKey("agent-7", f"b-{i}"))
        await asyncio.sleep(0.01)  # distinct receive times
    await store.prune_dedup(timedelta(days=7), max_entries=2)
    assert await store.seen(BatchKey("agent-7", "b-0")) is None  # the oldest is forgotten
    assert await store.seen(BatchKey("agent-7", "b-1")) is not None
    assert await store.seen(BatchKey("agent-7", "b-2")) is not None
    await store.prune_dedup(timedelta(microseconds=1), max_entries=100)  # by age: all gone
    assert await store.seen(BatchKey("agent-7", "b-2")) is None


def test_series_value_conversion_matches_per_point_decoding() -> None:
    """The whole-array fast paths of ``Series.values`` agree with ``decode_value`` point by point."""
    from ingest.storage.base import Series, decode_value
    from zhizao.wire import format_ts

    cases = [("f", [1.5, -2.0]), ("i", [3.0, -(2.0**40)]), ("b", [1.0, 0.0]), ("i", [2.0**63, 1.0]),
             ("f", [float("nan"), 1.0]), ("i", [1.5, 2.0])]
    for kind, vals in cases:
        n = len(vals)
        s = Series("p/a/l/m", "x", None, np.array([0, 1_795_420_800_250_001][:n], dtype=np.int64),
                   np.array(vals, dtype=np.float64), np.array([None] * n, dtype=object), np.array([kind] * n))
        expected = [decode_value(kind, v, None) for v in vals]
        assert s.values() == expected or all(map(_both_nan, s.values(), expected)), (kind, vals)
        assert [type(v) for v in s.values()] == [type(v) for v in expected]
        assert s.iso_timestamps() == [format_ts(t) for t in s.timestamps()]
    text = Series("p/a/l/m", "state", None, np.array([5], dtype=np.int64), np.array([np.nan]),
                  np.array(["running"], dtype=object), np.array(["s"]))
    assert text.values() == ["running"]


def _both_nan(a: object, b: object) -> bool:
    return a == b or (a is None and b is None)


async def test_awkward_values_round_trip_exactly(store: Store) -> None:
    """Extreme floats, big ints, strings with separators/quotes/escapes/non-ASCII, a unit
    needing escapes and an instant before 1970 come back as written."""
    floats = [1e300, 5e-324, -0.0, 1 / 3, 1e16, -1.5e-7, 2.0**63, 123456789.123456789]
    texts = ["", "a,b=c d", 'q"uo\\"te\\', "温度 °C", "x" * 200]
    samples = [sample(M1, "vibration_rms", float(i), v, 'mm/s "rms"') for i, v in enumerate(floats)]
    samples += [sample(M1, "parts_total", float(i), v) for i, v in enumerate([2**53, -2**40, 0])]
    samples += [sample(M1, "state", float(i), v) for i, v in enumerate(texts)]
    samples.append(sample(M1, "melt_temp", -86_400 * 365 * 60, 20.5))  # 60 years before T0
    result = await store.write(SampleFrame.from_samples(samples))
    assert result.accepted == len(samples)
    series = {s.signal: s for s in await store.query(q("plant/a1/line1/cnc-1", -86_400 * 365 * 61, 100))}
    got = series["vibration_rms"].values()
    assert got == floats  # exact (InfluxDB's JSON answers -0.0 as -0, which reads back as 0)
    assert series["vibration_rms"].unit == 'mm/s "rms"'
    assert series["parts_total"].values() == [2**53, -2**40, 0]
    assert series["state"].values() == texts
    assert series["melt_temp"].timestamps() == [T0 - timedelta(seconds=86_400 * 365 * 60)]


def _mixed_units() -> list[Sample]:
    """cnc-1's power in kW (0-9 s), then in W (10-19 s), and without a unit (0.5 s, 1.5 s, 20-24 s);
    its temperature in two units whose names need quoting and sort by code point; cnc-2's power
    in one unit."""
    return [
        *(sample(M1, "power", i, float(i), "kW") for i in range(10)),
        *(sample(M1, "power", i, i * 1000.0, "W", Quality.UNCERTAIN if i == 12 else Quality.GOOD)
          for i in range(10, 20)),
        sample(M1, "power", 0.5, -1.0), sample(M1, "power", 1.5, -2.0),
        *(sample(M1, "power", i, 5.0) for i in range(20, 25)),
        *(sample(M1, "temp", i, 20.0, "°C") for i in range(5)),
        *(sample(M1, "temp", i, 68.0, "deg'F \\ x") for i in range(5, 10)),
        *(sample(M2, "power", i, 2.0, "kW") for i in range(10)),
    ]


def _secs(s: Series) -> list[float]:
    return [(t - T0).total_seconds() for t in s.timestamps()]


async def test_by_unit_one_series_per_unit_raw(store: Store) -> None:
    await store.write(SampleFrame.from_samples(_mixed_units()))
    got = await store.query(q("plant/a1/line1", 0, 60, by_unit=True))
    assert [(s.asset, s.signal, s.unit) for s in got] == [
        (str(M1), "power", None), (str(M1), "power", "W"), (str(M1), "power", "kW"),
        (str(M1), "temp", "deg'F \\ x"), (str(M1), "temp", "°C"), (str(M2), "power", "kW")]
    none, watt, kilo, fahrenheit, celsius, other = got
    assert (_secs(none), none.values()) == ([0.5, 1.5, 20, 21, 22, 23, 24], [-1.0, -2.0, *[5.0] * 5])
    assert (_secs(watt), watt.values()) == (list(range(10, 20)), [i * 1000.0 for i in range(10, 20)])
    assert watt.quality is not None and watt.quality.tolist()[2] == "uncertain"
    assert (_secs(kilo), kilo.values()) == (list(range(10)), [float(i) for i in range(10)])
    assert fahrenheit.values() == [68.0] * 5 and celsius.values() == [20.0] * 5
    assert other.values() == [2.0] * 10
    # the limit applies to each unit's series
    got = await store.query(q(str(M1), 0, 60, signals=("power",), by_unit=True, limit=3))
    assert [(s.unit, _secs(s)) for s in got] == [(None, [0.5, 1.5, 20]), ("W", [10, 11, 12]),
                                                   ("kW", [0, 1, 2])]
    # without by_unit (what KPIs and models read): one series per signal, every point in time order
    merged = await store.query(q(str(M1), 0, 60, signals=("power",)))
    assert len(merged) == 1
    assert _secs(merged[0]) == sorted([*range(25), 0.5, 1.5])


async def test_by_unit_one_series_per_unit_bucketed(store: Store) -> None:
    await store.write(SampleFrame.from_samples(_mixed_units()))
    expected = {  # per unit (none, W, kW): values of the 10-s buckets
        Agg.MEAN: ([-1.5, 5.0], [14500.0], [4.5]), Agg.MIN: ([-2.0, 5.0], [10000.0], [0.0]),
        Agg.MAX: ([-1.0, 5.0], [19000.0], [9.0]), Agg.LAST: ([-2.0, 5.0], [19000.0], [9.0]),
        Agg.COUNT: ([2, 5], [10], [10]),
    }
    for agg, (none, watt, kilo) in expected.items():
        got = await store.query(q(str(M1), 0, 60, signals=("power",), agg=agg, bucket=timedelta(seconds=10),
                                  by_unit=True))
        assert [(s.unit, _secs(s), s.values()) for s in got] == [
            (None, [0, 20], none), ("W", [10], watt), ("kW", [0], kilo)], agg
    got = await store.query(q(str(M1), 0, 60, signals=("power",), agg=Agg.MEAN, bucket=timedelta(seconds=5),
                              by_unit=True, limit=1000))
    assert [(s.unit, _secs(s)) for s in got] == [(None, [0, 20]), ("W", [10, 15]), ("kW", [0, 5])]
    # the limit widens the bucket (60 s in 2 points: 30 s) and bounds each unit's series
    got = await store.query(q(str(M1), 0, 60, signals=("power",), agg=Agg.COUNT, by_unit=True, limit=2))
    assert [(s.unit, s.values()) for s in got] == [(None, [7]), ("W", [10]), ("kW", [10])]
    merged = await store.query(q(str(M1), 0, 60, signals=("power",), agg=Agg.COUNT, limit=2))
    assert [s.values() for s in merged] == [[27]]
