"""A batch some of whose points are beyond InfluxDB's retention policy: answered with what was stored.

influxd answers such a write 400 ``partial write: points beyond retention policy dropped=N``
having stored the other points. Ingest answered 422 for the whole batch, so the agent
dead-lettered a batch that was partly stored. Now the batch is answered 200 with the dropped
samples as rejected ones (index and reason) — exactly those InfluxDB does not hold — so the
sender acknowledges the batch and dead-letters only what was not stored. Against a real
``influxd`` 1.x whose default retention policy keeps one hour.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from edge_agent.uplinks.http.config import HttpUplinkConfig
from edge_agent.uplinks.http.uplink import HttpUplink
from ingest.settings import Settings
from ingest.testing import run_server, server_settings
from tests.ingest.conftest import M1, M2
from tests.ingest.helpers import post_with_naive_sample
from tests.support.servers import InfluxDB
from zhizao.errors import PartialWrite
from zhizao.model import Batch, Sample
from zhizao.wire import encode_batch

AGES_S = (3 * 3600, 2 * 3600, 3600 + 60, 3600 - 60, 600, 60)
"""Ages of the points of each series: two far beyond the 1 h policy, one just beyond it (stored
or not depending on the shard group the next one opens: the answer must say which), three in it."""
ALWAYS_DROPPED = 2
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def short_influxdb(influxdb: InfluxDB) -> InfluxDB:
    """The test's influxd with a default retention policy of 1 h (shard groups of 1 h)."""
    influxdb.query(f'CREATE RETENTION POLICY "short" ON "{influxdb.database}" DURATION 1h '
                   "REPLICATION 1 DEFAULT")
    return influxdb


def _settings(tmp_path: Path, server: InfluxDB) -> Settings:
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = server.url
    settings.storage.influxdb.database = server.database
    return settings


def _mixed(batch_id: str, producer: str = "agent-1",
           signals: tuple[str, ...] = ("power_kw", "temp")) -> Batch:
    """Points of every age in :data:`AGES_S` for each signal, oldest first, series after series."""
    now = datetime.now(UTC).replace(microsecond=0)
    samples = tuple(Sample(M1, signal, now - timedelta(seconds=age), float(k), "kW")
                    for signal in signals for k, age in enumerate(AGES_S))
    return Batch(producer, batch_id, 1, samples)


def _stored(server: InfluxDB) -> set[tuple[str, str, int]]:
    """(machine, signal, µs) of every sample point InfluxDB holds."""
    doc = orjson.loads(server.query('SELECT "value" FROM "telemetry" GROUP BY "machine", "signal"',
                                    db=server.database))
    out: set[tuple[str, str, int]] = set()
    for result in doc["results"]:
        for s in result.get("series", []):
            for t, _ in s["values"]:
                ts = datetime.fromisoformat(t.replace("Z", "+00:00"))
                out.add((s["tags"]["machine"], s["tags"]["signal"], _us(ts)))
    return out


def _us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _key(sample: Sample) -> tuple[str, str, int]:
    return sample.asset.machine, sample.signal, _us(sample.ts)


def _rejected(doc: dict[str, Any]) -> dict[int, str]:
    return {r["index"]: r["reason"] for r in doc["rejected"]}


def test_a_batch_partly_beyond_retention_is_answered_with_exactly_what_was_stored(
        tmp_path: Path, short_influxdb: InfluxDB) -> None:
    """One batch, points of every age in two series and one sample rejected when decoded (so
    document indexes and stored positions differ): 200, each dropped sample listed by its index
    in the document, the stored ones counted in ``accepted`` — checked against what influxd holds.
    A resend, also after a restart of ingest, is a duplicate answered alike (the dedup record
    keeps the dropped samples), so the agent sees no id conflict."""
    b = _mixed("b-1")
    headers = {"content-type": "application/json"}
    with run_server(_settings(tmp_path, short_influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        first, rejected, document, body = post_with_naive_sample(c, b)
        stored = _stored(short_influxdb)
        dropped = {i for i, s in enumerate(document) if s is not None and _key(s) not in stored}
        assert set(rejected) == dropped, (rejected, dropped)
        assert all(reason.startswith("retention: not stored") for reason in rejected.values()), rejected
        assert len(dropped) >= 2 * ALWAYS_DROPPED  # per series: 3 h and 2 h old
        assert first["accepted"] == len(b.samples) - len(dropped) == len(stored)
        assert first["duplicate"] is False
        again = c.post("/api/v1/batches", content=body, headers=headers).json()
        assert again == {**first, "duplicate": True}
        metrics = c.get("/metrics").text
        assert f'zhizao_ingest_samples_rejected_total{{reason="retention"}} {float(len(dropped))}' in metrics
    with run_server(_settings(tmp_path, short_influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        after_restart = c.post("/api/v1/batches", content=body, headers=headers).json()
        assert after_restart == {**first, "duplicate": True}


def test_bulk_lines_sharing_a_write_each_get_their_own_dropped_samples(
        tmp_path: Path, short_influxdb: InfluxDB) -> None:
    """Three lines of two producers written in one InfluxDB write, which answers one count for
    all of them: each line is answered with its own dropped samples, a line with none as stored."""
    old = _mixed("m-1")
    recent = Batch("agent-2", "r-1", 1, tuple(Sample(M2, "temp", datetime.now(UTC) - timedelta(seconds=s),
                                                     float(s), "C") for s in range(5)))
    other = _mixed("m-2", producer="agent-2", signals=("rpm",))
    body = b"\n".join(encode_batch(x) for x in (old, recent, other))
    with run_server(_settings(tmp_path, short_influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/batches/bulk", content=body, headers=NDJSON)
        assert r.status_code == 200, r.text
        lines = r.json()["batches"]
        stored = _stored(short_influxdb)
        for line, sent in zip(lines, (old, recent, other), strict=True):
            assert line["error"] is None, line
            missing = {i for i, s in enumerate(sent.samples) if _key(s) not in stored}
            assert set(_rejected(line)) == missing, (line, missing)
            assert line["accepted"] == len(sent.samples) - len(missing)
        assert lines[1]["rejected"] == [] and lines[1]["accepted"] == 5
        assert r.json()["accepted"] == len(stored) and r.json()["errors"] == 0


async def test_the_agent_acknowledges_the_batch_and_dead_letters_only_the_dropped_samples(
        tmp_path: Path, short_influxdb: InfluxDB) -> None:
    """edge_agent's HTTP uplink reads the answer as a partial write: the batch acknowledged, the
    dropped samples (and only they) handed back for the dead-letter file — never ``Rejected``."""
    b = _mixed("u-1")
    with run_server(_settings(tmp_path, short_influxdb)) as url:
        async with HttpUplink(HttpUplinkConfig(url=url)) as uplink:
            with pytest.raises(PartialWrite) as caught:
                await uplink.send(b)
    stored = _stored(short_influxdb)
    assert set(caught.value.rejected) == {i for i, s in enumerate(b.samples) if _key(s) not in stored}
    assert caught.value.accepted == len(stored)


def test_line_protocol_beyond_retention_is_a_partial_write_400(tmp_path: Path,
                                                               short_influxdb: InfluxDB) -> None:
    """``/write`` answers as InfluxDB does for the same data: 400 "partial write" counting what was
    stored and what the store did not keep — not 422 as if nothing were stored."""
    now = int(time.time())
    lines = "\n".join(f"telemetry,site=plant,area=a1,line=line1,machine=cnc-7 x={age} {now - age}"
                      for age in AGES_S)
    with run_server(_settings(tmp_path, short_influxdb)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/write", params={"precision": "s"}, content=lines)
    assert r.status_code == 400, r.text
    n = len(_stored(short_influxdb))
    told = f"partial write: {n} values stored, {len(AGES_S) - n} values not kept by the store"
    assert told in r.json()["detail"], r.text


def test_dropped_points_are_the_oldest_of_the_write() -> None:
    """InfluxDB's rule as :func:`split_dropped` applies it: the N oldest points of the whole write
    (across its frames), points outside its time range always; no guess when N falls inside a
    run of equal timestamps or exceeds the write."""
    from ingest.storage.influxdb.partial import (
        RANGE_REASON,
        RETENTION_REASON,
        decode_dropped,
        encode_dropped,
        split_dropped,
    )

    far = 9_300_000_000_000_000  # µs, beyond 2262
    split = split_dropped([[30, 10, far], [20, 40]], 2)
    assert split == [((1, RETENTION_REASON), (2, RANGE_REASON)), ((0, RETENTION_REASON),)]
    assert split_dropped([[10, 20, 20, 30]], 2) is None  # the cut between two points of one time
    assert split_dropped([[10, 20, 20, 30]], 3) == [((0, RETENTION_REASON), (1, RETENTION_REASON),
                                                      (2, RETENTION_REASON))]
    assert split_dropped([[10]], 2) is None
    dropped = ((0, RETENTION_REASON), (1, RETENTION_REASON), (2, RETENTION_REASON), (7, RANGE_REASON),
               (9, RETENTION_REASON))
    text = encode_dropped(dropped)
    assert "0-2,9" in text and decode_dropped(text) == dropped
    assert decode_dropped(None) == () and decode_dropped("not json") == ()

