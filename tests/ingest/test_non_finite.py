"""A JSON number beyond a double's range (``1e400``, which would read as infinity) in a batch: the
batch is refused as a whole (400, as the shared wire rules refuse the document), the problem
names the field and the sample, nothing is stored — and the agent's HTTP uplink, single or bulk,
dead-letters such a batch instead of retrying it forever. Real uvicorn, real DuckDB store."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post, stored_count
from tests.support.forwarding import drain
from zhizao.errors import Rejected

ASSET = "plant/a1/line1/cnc-1"


def _v1(batch_id: str, values: list[str]) -> bytes:
    samples = ",".join(f'{{"asset":"{ASSET}","signal":"power_kw","ts":"2026-11-23T08:00:0{i}Z",'
                       f'"value":{v},"unit":"kW"}}' for i, v in enumerate(values))
    return (f'{{"format":"zhizao.batch","version":1,"producer":"agent-1","batch_id":"{batch_id}","seq":1,'
            f'"samples":[{samples}]}}').encode()


def _v2(batch_id: str, series: list[list[str]]) -> bytes:
    def stamps(n: int) -> str:
        return ",".join(f'"2026-11-23T08:00:0{i}Z"' for i in range(n))
    entries = ",".join(f'{{"asset":"{ASSET}","signal":"s{k}","ts":[{stamps(len(vs))}],'
                       f'"value":[{",".join(vs)}]}}' for k, vs in enumerate(series))
    return (f'{{"format":"zhizao.batch","version":2,"producer":"agent-1","batch_id":"{batch_id}","seq":1,'
            f'"series":[{entries}]}}').encode()


def _post(client: httpx.Client, body: bytes, **headers: str) -> httpx.Response:
    return client.post("/api/v1/batches", content=body,
                       headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize(("body", "field", "sample", "number"), [
    (_v1("b-1", ["1.5", "2.5", "1e400", "3"]), "samples[2].value", 2, "1e400"),
    (_v1("b-2", ["1.5", "-1E+999"]), "samples[1].value", 1, "-1E+999"),
    (_v1("b-3", ["1", "1" + "0" * 400]), "samples[1].value", 1, "1" + "0" * 39),
    (_v2("b-4", [["1", "2", "3"], ["4", "5e500"]]), "series[1].value[1]", 4, "5e500"),
])
def test_a_number_beyond_a_double_names_its_field_and_sample(
        tmp_path: Path, body: bytes, field: str, sample: int, number: str) -> None:
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url) as c:
        for sent, headers in ((body, {}), (gzip.compress(body), {"content-encoding": "gzip"})):
            r = _post(c, sent, **headers)
            assert_problem(r, 400, f"invalid batch: {field}: the number {number}",
                           "beyond the range of a 64-bit float", "would read as infinity",
                           f"(sample {sample} of the batch, counting from 0)",
                           "refused as a whole: nothing of it was stored")
            error = r.json()["errors"]
            assert error == [{"field": field, "message": error[0]["message"], "sample": sample}]
            assert "index" not in error[0]  # else an agent would read per-sample rejections
        assert stored_count(c) == 0
        assert post(c, batch("b-ok")).status_code == 200  # the next batch is not affected
        assert stored_count(c) == 10


def test_what_is_not_a_sample_or_not_json_keeps_its_message(tmp_path: Path) -> None:
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url) as c:
        seq = _v1("b-1", ["1"]).replace(b'"seq":1', b'"seq":1e400')
        r = _post(c, seq)
        assert_problem(r, 400, "invalid batch: seq: the number 1e400 is beyond the range")
        assert "sample" not in r.json()["errors"][0]
        # a NaN/Infinity literal is not JSON at all, and a syntax error elsewhere wins: reference words
        for bad in (_v1("b-2", ["NaN"]), _v1("b-3", ["Infinity"]), _v1("b-4", ["1e400"])[:-1]):
            assert_problem(_post(c, bad), 400, "invalid batch: not valid JSON")
        assert stored_count(c) == 0


def test_out_of_range_finds_the_first_in_document_order() -> None:
    from ingest.decode import out_of_range

    found = out_of_range(_v2("b", [["1", "1e309"], ["1e400"]]))
    assert found is not None and (found.path, found.sample) == ("series[0].value[1]", 1)
    assert out_of_range(_v1("b", ["1.7976931348623157e308", "-1e-400"])) is None  # finite: not this


def _record(batch_id: str, body: bytes) -> EncodedBatch:
    """A v1 document as the agent's buffer stores a record (``n`` = its samples)."""
    return EncodedBatch.record("agent-1", batch_id, 1, body.count(b'"asset"'), body)


async def test_the_agents_http_uplink_does_not_retry_a_poisoned_batch(tmp_path: Path) -> None:
    """Single and bulk: the 400 is ``Rejected`` (for good), not ``Unavailable`` (resend) nor a
    ``PartialWrite``; through the forwarder the batch goes to the dead-letter file with ingest's
    message, the good batches behind it are delivered."""
    poisoned = _record("b-poison", _v1("b-poison", ["1", "2", "1e400"]))
    good = EncodedBatch.of_batch(batch("b-good"))
    with run_server(server_settings(tmp_path)) as url:
        async with HttpUplink(HttpUplinkConfig(url=url, bulk=False)) as up:
            with pytest.raises(Rejected, match=r"ingest answered 400: invalid batch: samples\[2\]\.value"):
                await up.send_encoded(poisoned)
        async with HttpUplink(HttpUplinkConfig(url=url)) as up:
            assert up.bulk is not None
            outcomes = await up.send_bulk([poisoned, good])
            assert isinstance(outcomes[0], Rejected) and "samples[2].value" in str(outcomes[0])
            assert outcomes[1] is None
        dead = DeadLetter(tmp_path / "dead.jsonl")
        async with (
            SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf,
            HttpUplink(HttpUplinkConfig(url=url)) as up,
        ):
            fwd = Forwarder(buf, up, dead, max_items=1000, linger=0.05)
            await buf.put_records([_record("b-poison-2", _v1("b-poison-2", ["1", "2", "1e400"])),
                                   EncodedBatch.of_batch(batch("b-good-2", producer="agent-1"))])
            await drain(fwd, buf, 10)
        assert fwd.stats.dead_lettered == 3 and fwd.stats.retries == 0  # its 3 samples, never retried
        records = dead.read()
        assert sorted(r["index"] for r in records) == [0, 1, 2]  # the whole batch
        assert all(r["batch_id"] == "b-poison-2" and "samples[2].value: the number 1e400" in r["reason"]
                   for r in records)
        async with httpx.AsyncClient(base_url=url) as client:
            doc = (await client.get("/api/v1/series", params={
                "asset": "plant", "start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"})).json()
    assert sum(len(s["values"]) for s in doc["series"]) == 20  # b-good (bulk) and b-good-2
