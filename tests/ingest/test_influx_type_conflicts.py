"""A field type conflict is answered sample by sample: exactly the samples InfluxDB did not store.

influxd keeps each field's type per shard group; a point carrying a field with another type than
its shard group holds is dropped, the write's other points stored, and the write answered ``400
partial write: field type conflict ... dropped=N``. Ingest answered 422 for the whole batch, so the
agent dead-lettered every sample of it although influxd held all but the conflicting ones. Now the
batch is answered 200 with exactly the dropped samples rejected (reason ``type: ...``), recorded
for dedup; only what cannot be proven (``ingest/storage/influxdb/conflicts.py``) is still a 422.
Against a real ``influxd`` 1.6, whose answers are pinned first: they name one field of one shard.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from edge_agent.uplinks.http.config import HttpUplinkConfig
from edge_agent.uplinks.http.uplink import HttpUplink
from ingest.settings import InfluxSettings, Settings
from ingest.storage.base import BatchKey, SampleFrame, WriteResult
from ingest.storage.influxdb.store import InfluxStore
from ingest.testing import run_server, server_settings
from tests.ingest.conftest import M1, M2, T0
from tests.ingest.helpers import (
    WEEK,
    assert_problem,
    post_with_naive_sample,
    prime,
    prime_unprovable_conflict,
    unprovable,
    us,
)
from tests.support.servers import InfluxDB
from zhizao.errors import PartialWrite, Rejected
from zhizao.model import AssetPath, Batch, Quality, Sample
from zhizao.wire import encode_batch

NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}
SERIES: tuple[tuple[str, Any, str | None], ...] = (
    ("power_kw", float, "kW"), ("temp", lambda i: 20.5 + i, "C"), ("parts", int, None),
    ("running", lambda i: i % 2 == 0, None), ("rpm", lambda i: 1000.0 * i, "rpm"),
    ("state", "S{}".format, None))
"""Six series of one machine: five numeric (float, integer, boolean) and one of strings."""


def _samples(asset: AssetPath = M1, start: datetime = T0, n: int = 5,
             series: tuple[tuple[str, Any, str | None], ...] = SERIES) -> tuple[Sample, ...]:
    return tuple(Sample(asset, signal, start + timedelta(seconds=i), value(i), unit)
                 for signal, value, unit in series for i in range(n))


def _stored(server: InfluxDB) -> set[tuple[str, str, int]]:
    """(machine, signal, µs) of every point of zhizao's samples influxd holds (the primed points of
    the other client, machine ``other``, carry no ``quality``)."""
    doc = orjson.loads(server.query('SELECT "quality" FROM "telemetry" GROUP BY "machine", "signal"',
                                    db=server.database))
    out: set[tuple[str, str, int]] = set()
    for result in doc["results"]:
        assert "error" not in result, result
        for s in result.get("series", []):
            for t, _ in s["values"]:
                out.add((s["tags"]["machine"], s["tags"]["signal"], us(datetime.fromisoformat(t))))
    return out


def _key(s: Sample) -> tuple[str, str, int]:
    return s.asset.machine, s.signal, us(s.ts)


def _rejected(doc: dict[str, Any]) -> dict[int, str]:
    return {r["index"]: r["reason"] for r in doc["rejected"]}


def _settings(tmp_path: Path, server: InfluxDB) -> Settings:
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = server.url
    return settings


def _influx(server: InfluxDB) -> InfluxStore:
    return InfluxStore(InfluxSettings(url=server.url, database=server.database))


def _direct(server: InfluxDB, db: str, lines: str) -> tuple[int, str]:
    """influxd's own answer to ``lines`` written to database ``db``."""
    r = httpx.post(f"{server.url}/write", params={"db": db, "precision": "s"}, content=lines)
    return r.status_code, r.text


def test_influxd_answers_one_field_of_one_shard_and_counts_points(influxdb: InfluxDB) -> None:
    """What the design rests on (``conflicts.py``): influxd drops a point whole when one of its fields
    conflicts and counts it once however many do; within one write the first point fixes a new
    field's type; and a write spanning two shard groups is answered with one shard group's conflict
    only — here ``dropped=1`` naming ``value_str`` while it dropped three points (two ``value``
    points of the other week), so the points carrying the field named are no count of the dropped."""
    influxdb.query('CREATE DATABASE "facts"')
    week = 7 * 86400
    a = us(T0) // 1_000_000
    b = a + week
    assert _direct(influxdb, "facts", f"m f=1i,g=1i {a}\nm s=\"x\" {b}")[0] == 204
    status, text = _direct(influxdb, "facts", f"m f=1.5,g=2.5,h=1 {a + 1}\nm f=1i {a + 2}")
    assert status == 400 and 'input field \\"f\\"' in text and "dropped=1" in text, text
    status, text = _direct(influxdb, "facts", f"m n=1i {a + 3}\nm n=1.5 {a + 4}\nm n=2i {a + 5}")
    assert status == 400 and 'input field \\"n\\" on measurement \\"m\\" is type float, already exists as ' \
        'type integer dropped=1' in text, text
    status, text = _direct(influxdb, "facts", f"m f=1.5 {a + 6}\nm f=2.5 {a + 7}\nm f=3.5 {b + 1}\n"
                                              f"m s=\"y\" {a + 8}\nm s=1.5 {b + 2}")
    assert status == 400, text  # one shard group's conflict, whichever answered first: never all three
    assert ('input field \\"s\\"' in text and "dropped=1" in text) or \
        ('input field \\"f\\"' in text and "dropped=2" in text), text
    doc = orjson.loads(influxdb.query(f"SELECT * FROM m WHERE time > {a}s", db="facts"))
    rows = doc["results"][0]["series"][0]["values"]
    kept = {us(datetime.fromisoformat(row[0])) // 1_000_000 for row in rows}
    assert kept == {a + 2, a + 3, a + 5, a + 8, b, b + 1}, doc  # a+1, a+4, a+6, a+7, b+2 dropped


def test_one_conflicting_series_is_rejected_sample_by_sample(tmp_path: Path, influxdb: InfluxDB) -> None:
    """A batch of six series of which the string one meets ``value_str`` stored as a float by another
    client (and one sample rejected when decoded, so document indexes and positions differ): 200,
    exactly the string samples rejected with a reason naming the field and both types, the 25 others
    accepted and in influxd. A resend is a duplicate answered alike, also after a restart (the dedup
    record keeps the rejected samples), so the agent sees no id conflict."""
    prime(influxdb, "value_str", "1.5", T0)
    b = Batch("agent-1", "b-1", 1, _samples())
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        first, rejected, document, body = post_with_naive_sample(c, b)
        assert set(rejected) == {i for i, s in enumerate(document) if s is not None and s.signal == "state"}
        for reason in rejected.values():
            assert reason == ('type: not stored — field "value_str" of "telemetry" is float in InfluxDB '
                              "for this time, this sample's is string (InfluxDB field type conflict); the "
                              "batch's other samples were stored"), reason
        assert first["accepted"] == 25 and first["duplicate"] is False
        assert _stored(influxdb) == {_key(s) for s in b.samples if s.signal != "state"}
        assert c.post("/api/v1/batches", content=body, headers=JSON).json() == {**first, "duplicate": True}
        assert 'zhizao_ingest_samples_rejected_total{reason="type"} 5.0' in c.get("/metrics").text
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/api/v1/batches", content=body, headers=JSON).json() == {**first, "duplicate": True}


async def test_two_conflicting_fields_in_one_batch(influxdb: InfluxDB) -> None:
    """``value_str`` a float and ``unit`` an integer in the store: floats with a unit conflict on
    ``unit``, strings on ``value_str``, strings with a unit on both — influxd names one of them
    only. Each sample is answered with a field it really conflicts on; the floats and integers
    without a unit are stored."""
    prime(influxdb, "value_str", "1.5", T0)
    prime(influxdb, "unit", "1i", T0)
    series = (("power_kw", float, "kW"), ("state", "S{}".format, None), ("mode", "M{}".format, "x"),
              ("temp", float, None), ("parts", int, None))
    samples = _samples(n=4, series=series)
    conflicts = {"power_kw": {"unit"}, "state": {"value_str"}, "mode": {"unit", "value_str"}}
    async with _influx(influxdb) as store:
        result = await store.write(SampleFrame.from_samples(list(samples)), BatchKey("agent-1", "b-2"))
        assert result.accepted == 8, result
        assert {pos for pos, _ in result.dropped} == {i for i, s in enumerate(samples)
                                                      if s.signal in conflicts}
        for pos, reason in result.dropped:
            named = reason.split('"')[1]
            assert named in conflicts[samples[pos].signal], (samples[pos], reason)
        assert await store.seen(BatchKey("agent-1", "b-2")) == WriteResult(8, duplicate=True,
                                                                           dropped=result.dropped)
    assert _stored(influxdb) == {_key(s) for s in samples if s.signal not in conflicts}


async def test_a_conflict_in_one_shard_group_only(influxdb: InfluxDB) -> None:
    """Points a week apart, in two shard groups, ``value_str`` a float in the first only: the string
    samples of the first week are rejected, those of the second stored (the field is free there),
    as are the floats of both weeks — what influxd holds, point for point."""
    prime(influxdb, "value_str", "1.5", T0)
    samples = (*_samples(start=T0, series=SERIES[::5]), *_samples(start=T0 + WEEK, series=SERIES[::5]))
    async with _influx(influxdb) as store:
        result = await store.write(SampleFrame.from_samples(list(samples)), BatchKey("agent-1", "b-3"))
    dropped = {pos for pos, _ in result.dropped}
    assert dropped == {i for i, s in enumerate(samples) if s.signal == "state" and s.ts < T0 + WEEK}, result
    assert result.accepted == len(samples) - 5
    assert _stored(influxdb) == {_key(s) for i, s in enumerate(samples) if i not in dropped}


async def test_conflicts_of_two_fields_in_two_shard_groups(influxdb: InfluxDB) -> None:
    """``value`` an integer in the first week, ``value_str`` a float in the second: influxd's answer
    names one of the two conflicts and counts one shard group's points (pinned above), yet the
    answer is exact — the floats of the first week and the strings of the second rejected."""
    prime(influxdb, "value", "1i", T0)
    prime(influxdb, "value_str", "1.5", T0 + WEEK)
    samples = (*_samples(start=T0, series=SERIES[::5]), *_samples(start=T0 + WEEK, series=SERIES[::5]))
    async with _influx(influxdb) as store:
        result = await store.write(SampleFrame.from_samples(list(samples)), BatchKey("agent-1", "b-4"))
    expected = {i for i, s in enumerate(samples) if (s.signal == "state") == (s.ts >= T0 + WEEK)}
    assert {pos for pos, _ in result.dropped} == expected, result
    assert _stored(influxdb) == {_key(s) for i, s in enumerate(samples) if i not in expected}
    reasons = dict(result.dropped)
    assert all('"value"' in reasons[i] for i in expected if samples[i].signal != "state"), reasons
    assert all('"value_str"' in reasons[i] for i in expected if samples[i].signal == "state"), reasons


def test_bulk_lines_each_get_their_own_rejected_samples(tmp_path: Path, influxdb: InfluxDB) -> None:
    """Four lines written in one InfluxDB write, two of them meeting the conflict (one only with its
    string series, one with every sample): each line is answered with exactly its own dropped
    samples, the others as stored; a resend of the request is answered alike, as duplicates."""
    prime(influxdb, "value_str", "1.5", T0)
    lines = [Batch("agent-1", "l-0", 1, _samples(series=SERIES[:2])),
             Batch("agent-2", "l-1", 1, _samples(asset=M2)),
             Batch("agent-3", "l-2", 1, _samples(series=SERIES[2:4])),
             Batch("agent-4", "l-3", 1, _samples(asset=M2, series=SERIES[5:], n=7))]
    body = b"\n".join(encode_batch(b) for b in lines)
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/batches/bulk", content=body, headers=NDJSON)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["errors"] == 0 and doc["accepted"] == 10 + 25 + 10 + 0, doc
        for line, sent in zip(doc["batches"], lines, strict=True):
            strings = {i for i, s in enumerate(sent.samples) if s.signal == "state"}
            assert set(_rejected(line)) == strings, line
            assert line["accepted"] == len(sent.samples) - len(strings)
            assert all(reason.startswith("type: not stored") for reason in _rejected(line).values())
        assert _stored(influxdb) == {_key(s) for b in lines for s in b.samples if s.signal != "state"}
        again = c.post("/api/v1/batches/bulk", content=body, headers=NDJSON).json()
        assert again["duplicates"] == 4
        assert again["batches"] == [{**line, "duplicate": True} for line in doc["batches"]]


def test_line_protocol_with_a_conflict_is_a_partial_write_400(tmp_path: Path, influxdb: InfluxDB) -> None:
    """``/write`` answers as influxd would: 400 "partial write", counting the values stored and the
    values not kept, and saying why — not 422 as if nothing were stored."""
    prime(influxdb, "value_str", "1.5", T0)
    line = f'telemetry,site=plant,area=a1,line=line1,machine=cnc-7 power=1.5,state="RUN",count=3i {us(T0)}'
    with run_server(_settings(tmp_path, influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/write", params={"precision": "u"}, content=line)
    assert_problem(r, 400, "partial write: 2 values stored, 1 values not kept by the store",
                   "field type conflict")
    assert _stored(influxdb) == {("cnc-7", "power", us(T0)), ("cnc-7", "count", us(T0))}


async def test_the_agent_dead_letters_only_the_conflicting_samples(tmp_path: Path,
                                                                    influxdb: InfluxDB) -> None:
    """edge_agent's HTTP uplink reads the answer as a partial write: the batch acknowledged, the
    string samples (and only they) handed back for the dead-letter file — never ``Rejected``."""
    prime(influxdb, "value_str", "1.5", T0)
    b = Batch("agent-1", "u-1", 1, _samples())
    with run_server(_settings(tmp_path, influxdb)) as url:
        async with HttpUplink(HttpUplinkConfig(url=url)) as uplink:
            with pytest.raises(PartialWrite) as caught:
                await uplink.send(b)
    assert set(caught.value.rejected) == {i for i, s in enumerate(b.samples) if s.signal == "state"}
    assert caught.value.accepted == 25


async def test_what_cannot_be_proven_is_refused_not_guessed(tmp_path: Path, influxdb: InfluxDB) -> None:
    """String samples over 40 weeks, ``value_str`` a float in every other one: telling which were
    stored would take more writes than the store spends on it, so the batch is refused as before
    (422, dead-lettered whole by the agent), never answered with a guess; in a bulk request only
    that line, the others stored."""
    prime_unprovable_conflict(influxdb)
    good = Batch("agent-1", "g-1", 1, _samples(series=SERIES[:2]))
    with run_server(_settings(tmp_path, influxdb)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            r = await c.post("/api/v1/batches", content=encode_batch(unprovable("a-1")), headers=JSON)
            assert_problem(r, 422, "the store refused this batch's data", "field type conflict")
            body = b"\n".join([encode_batch(good), encode_batch(unprovable("a-2"))])
            doc = (await c.post("/api/v1/batches/bulk", content=body, headers=NDJSON)).json()
            assert doc["errors"] == 1 and doc["accepted"] == 10, doc
            assert doc["batches"][1]["error"]["status"] == 422, doc
            assert {_key(s) for s in good.samples} <= _stored(influxdb)
        async with HttpUplink(HttpUplinkConfig(url=url)) as uplink:
            with pytest.raises(Rejected, match="422"):
                await uplink.send(unprovable("a-3"))


async def test_the_later_of_two_samples_of_one_time_still_wins(influxdb: InfluxDB) -> None:
    """Two samples of one signal at one time (InfluxDB keeps one point: the later sample's fields
    win) end up in different parts written again — the one with a unit among the points carrying
    ``unit``, which conflicts a week later, the other not: written in another order than the
    batch's, the earlier would win. They are written once more in the batch's order, so influxd
    holds what the first write stored: the later sample's value and quality."""
    prime(influxdb, "unit", "1i", T0 + WEEK)
    samples = (Sample(M1, "power_kw", T0, 1.0, None), Sample(M1, "power_kw", T0, 2.0, "kW", Quality.BAD),
               Sample(M1, "temp", T0 + WEEK, 3.0, "C"))
    async with _influx(influxdb) as store:
        result = await store.write(SampleFrame.from_samples(list(samples)), BatchKey("agent-1", "b-5"))
    assert [pos for pos, _ in result.dropped] == [2] and result.accepted == 2, result
    # ("unit" reads back null here: influxd 1.6 reads a field with its type in any shard group)
    doc = orjson.loads(influxdb.query("SELECT \"value\", \"quality\" FROM \"telemetry\" WHERE "
                                      "\"signal\" = 'power_kw'", db=influxdb.database))
    assert doc["results"][0]["series"][0]["values"][0][1:] == [2.0, "bad"], doc
