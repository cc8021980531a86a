"""Intake boundaries: every message is committed as a record or refused with a reason, then acked."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from edge_agent.buffer import EncodedBatch, PutResult, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from gateway.config import GatewayConfig
from gateway.fleet import FleetState
from gateway.intake import UnsIntake
from gateway.mqtt import Message
from gateway.testing import simulated_batches
from zhizao import topics, wire
from zhizao.model import AssetPath, Batch


@dataclass
class Acks:
    mids: list[int] = field(default_factory=list)

    def ack(self, mid: int, qos: int) -> None:
        self.mids.append(mid)


def _config(tmp_path: Path, **broker: object) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "id": "gw-1", "site": "plant", "deadletter_path": str(tmp_path / "dl.jsonl"),
        "broker": {"host": "127.0.0.1", **broker}, "uplink": {"http": {"url": "http://127.0.0.1:1"}},
        "buffer": {"path": str(tmp_path / "b.sqlite"), "commit_interval_s": 0.001}})


@pytest.fixture
def acks() -> Acks:
    return Acks()


def _msg(acks: Acks, topic: str, payload: bytes, mid: int) -> Message:
    return Message(topic, payload, False, False, acks, mid, 1)  # type: ignore[arg-type]


async def _stored(buf: SqliteBuffer) -> list[Batch]:
    """The batches the intake stored (records, oldest first), decoded for comparison."""
    records = await buf.take_bulk(1000)
    assert all(r.is_record for r in records)
    return [r.decode() for r in records]


async def _run(intake: UnsIntake, buf: SqliteBuffer, messages: list[Message]) -> None:
    intake.bind(buf)
    for m in messages:
        intake.handle(m)
    await buf.flush()


async def test_refused_messages_are_dead_lettered_with_the_reason_and_acked(
    tmp_path: Path, acks: Acks
) -> None:
    cfg = _config(tmp_path)
    dl = DeadLetter(cfg.deadletter_path)
    intake = UnsIntake(cfg, dl, FleetState())
    good = simulated_batches(20, n_agents=1)["agent-0"][0]
    doc = wire.batch_to_dict(good)
    doc["samples"][0]["ts"] = "yesterday"
    data = topics.data_topic(good.samples[0].asset)
    async with cfg.buffer.build("gw-1") as buf:
        await _run(intake, buf, [
            _msg(acks, data, b"{not json", 1),
            _msg(acks, data, orjson.dumps(doc), 2),
            _msg(acks, topics.status_topic("agent-9"), b'{"status": "sleeping"}', 3),
            _msg(acks, "vendor/x/telemetry", b"{}", 4),
            _msg(acks, topics.status_topic("agent-9"), b"", 5),  # cleared retained status
        ])
        [forwarded] = await _stored(buf)
    assert sorted(acks.mids) == [1, 2, 3, 4, 5]
    records = dl.read()
    kinds = {(r["kind"], r["reason"].split(":")[0]) for r in records}
    [bad_sample] = [r for r in records if r["kind"] == "gateway_sample"]
    assert (bad_sample["index"], bad_sample["sample"]) == (0, doc["samples"][0]), "the refused sample is kept"
    assert (bad_sample["producer"], bad_sample["batch_id"]) == (good.producer, good.batch_id)
    assert kinds == {("gateway_batch", "invalid batch"), ("gateway_sample", "ts"),
                     ("gateway_status", "status"), ("mqtt_payload", "no mapping for this topic")}
    assert forwarded is not None
    assert (forwarded.producer, forwarded.batch_id) == (good.producer, good.batch_id)
    assert forwarded.samples == good.samples[1:]
    assert intake.stats.bad_payloads == 4


async def test_version_2_batches_are_stored_as_v2_records_and_their_refused_samples_named(
    tmp_path: Path, acks: Acks
) -> None:
    """A valid v2 batch is stored as received (the fast path); one with invalid samples has each
    dead-lettered with its index, the sample (its series' fields included) and its place in the
    document, and its valid samples stored as a v2 record under the agent's identity."""
    cfg = _config(tmp_path)
    dl = DeadLetter(cfg.deadletter_path)
    intake = UnsIntake(cfg, dl, FleetState())
    first, second = simulated_batches(40, n_agents=1)["agent-0"][:2]
    good = orjson.dumps(wire.batch_to_dict_v2(Batch(first.producer, first.batch_id, first.seq,
                                                     wire.group_by_series(first.samples))))
    doc = wire.batch_to_dict_v2(Batch(second.producer, second.batch_id, second.seq,
                                      wire.group_by_series(second.samples)))
    doc["series"][1]["ts"][2] = "yesterday"
    doc["series"][3]["unit"] = "u" * 33
    n3 = len(doc["series"][3]["ts"])
    flat, _ = wire.flatten_series(doc["series"])
    start3 = sum(len(e["ts"]) for e in doc["series"][:3])
    topic = topics.data_topic(first.samples[0].asset)
    async with cfg.buffer.build("gw-1") as buf:
        await _run(intake, buf, [_msg(acks, topic, gzip.compress(good), 1),
                                 _msg(acks, topic, orjson.dumps(doc), 2)])
        stored = await buf.take_bulk(1000)
    assert sorted(acks.mids) == [1, 2] and (intake.checker.fast_v2, intake.checker.slow) == (1, 1)
    assert stored[0].document == good, "the fast path stores the document as received"
    kept = stored[1]
    assert kept.document is not None and orjson.loads(kept.document)["version"] == 2
    assert (kept.producer, kept.batch_id, kept.seq) == (second.producer, second.batch_id, second.seq)
    refused = {len(doc["series"][0]["ts"]) + 2, *range(start3, start3 + n3)}
    assert list(kept.decode().samples) == [
        s for i, s in enumerate(wire.group_by_series(second.samples)) if i not in refused], "in order"
    letters = [r for r in dl.read() if r["kind"] == "gateway_sample"]
    assert [r["index"] for r in letters] == sorted(refused)
    assert all(r["sample"] == flat[r["index"]] for r in letters), "the refused sample, flattened"
    assert letters[0]["place"] == "series[1].ts[2]" and letters[0]["reason"].startswith("ts:")
    assert {r["place"] for r in letters[1:]} == {"series[3].unit"}


ACME = {"name": "acme", "topic": "acme/+line/+machine/telemetry", "asset": "plant/a1/{line}/{machine}",
        "timestamp": {"field": "ts", "format": "epoch_ms"},
        "values": {"layout": "object", "path": "metrics", "value_field": "value", "unit_field": "unit"}}


async def test_raw_vendor_topics_go_through_the_agents_payload_mappings(tmp_path: Path, acks: Acks) -> None:
    cfg = _config(tmp_path, mappings=[ACME])
    intake = UnsIntake(cfg, DeadLetter(cfg.deadletter_path), FleetState())
    assert intake.filters == ["$share/zhizao-gateways/zhizao/v1/+/+/+/+", "zhizao/v1/agents/+/status",
                              "$share/zhizao-gateways/acme/+/+/telemetry"]
    payload = orjson.dumps({"ts": 1795392000250, "metrics": {"melt_temp": {"value": 231.5, "unit": "degC"}}})
    async with cfg.buffer.build("gw-1") as buf:
        await _run(intake, buf, [_msg(acks, "acme/line2/imm-3/telemetry", payload, 1)])
        [b] = await _stored(buf)
    assert acks.mids == [1]
    assert b is not None and b.producer == "gw-1"
    assert [(str(s.asset), s.signal, s.value, s.unit) for s in b.samples] == [
        ("plant/a1/line2/imm-3", "melt_temp", 231.5, "degC")]


async def test_status_batches_have_a_deterministic_identity(tmp_path: Path, acks: Acks) -> None:
    cfg = _config(tmp_path)
    fleet = FleetState()
    intake = UnsIntake(cfg, DeadLetter(cfg.deadletter_path), fleet)
    birth = orjson.dumps({"agent": "agent-3", "status": "online", "ts": 1.0, "version": "1.2",
                          "config_hash": "ab12", "backlog_samples": 12, "backlog_age_s": 0.5})
    topic = topics.status_topic("agent-3")
    async with cfg.buffer.build("gw-1") as buf:
        await _run(intake, buf, [_msg(acks, topic, birth, 1), _msg(acks, topic, birth, 2)])
        first, second = await _stored(buf)
    assert first is not None and second is not None
    assert (first.producer, first.batch_id) == (second.producer, second.batch_id)  # ingest stores it once
    assert first.producer == "fleet.agent-3"
    values = {s.signal: s.value for s in first.samples}
    assert values == {"fleet.up": 1, "fleet.backlog_samples": 12, "fleet.backlog_age_s": 0.5,
                      "fleet.version": "1.2", "fleet.config_hash": "ab12"}
    assert {str(s.asset) for s in first.samples} == {"plant/fleet/agents/agent-3"}
    assert fleet.to_list()[0]["state"] == "online"


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from gateway.cli import main

    bad = tmp_path / "gw.toml"
    bad.write_text('id = "gw 1"\nsite = "plant"\n[broker]\nport = 1883\nshare_grup = "x"\n'
                   '[uplink.http]\nurl = "ftp://x"\n')
    assert main(["--config", str(bad), "--check"]) == 2
    assert main(["check-config", "--config", str(bad)]) == 2  # the agent's spelling, the same check
    from gateway.config import load
    from zhizao.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load(bad)
    keys = {k for k, _ in info.value.problems}
    assert keys == {"id", "broker.host", "broker.share_grup", "uplink.http.url"}


def test_sample_config_is_valid() -> None:
    from gateway.cli import main
    from gateway.testing import REPO

    assert main(["--config", str(REPO / "gateway" / "sample-gateway.toml"), "--check"]) == 0


class HeldCommits:
    """A record sink whose commits the test ends (resolves or fails), one future per submit."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[EncodedBatch], dict[str, str] | None, asyncio.Future[PutResult]]] = []

    def submit_records(
        self, records: Sequence[EncodedBatch], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        fut: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        self.commits.append((list(records), marks, fut))
        return fut

    async def marks(self, prefix: str) -> dict[str, str]:
        return {}


async def test_a_raw_redelivery_waits_for_the_pending_commit_and_a_failed_commit_forgets_it(
    tmp_path: Path, acks: Acks
) -> None:
    """A redelivery (DUP) arriving while the original's commit is pending is acknowledged only if
    that commit succeeds; a failed commit forgets the digest, so the next redelivery is stored (with
    its ring mark); once committed, a redelivery is only acknowledged. QoS 0 takes no ring slot."""
    cfg = _config(tmp_path, mappings=[ACME])
    intake = UnsIntake(cfg, DeadLetter(cfg.deadletter_path), FleetState())
    sink = HeldCommits()
    intake.bind(sink)
    topic, payload = "acme/line2/imm-3/telemetry", orjson.dumps(
        {"ts": 1795392000250, "metrics": {"melt_temp": {"value": 231.5, "unit": "degC"}}})

    def receive(mid: int, *, dup: bool, qos: int = 1) -> None:
        intake.handle(Message(topic, payload, False, dup, acks, mid, qos))  # type: ignore[arg-type]

    async def end_commit(index: int, error: Exception | None = None) -> None:
        fut = sink.commits[index][2]
        if error is None:
            fut.set_result(PutResult(1))
        else:
            fut.set_exception(error)
        await asyncio.sleep(0)  # the done callbacks

    receive(1, dup=False)
    receive(1, dup=True)  # the connection dropped before the PUBACK; the commit goes on
    assert len(sink.commits) == 1 and intake.stats.duplicates_skipped == 1
    await end_commit(0, OSError("database or disk is full"))
    assert acks.mids == [] and intake.counts.uncommitted == 1, "no PUBACK: the broker redelivers"
    receive(1, dup=True)  # the digest was forgotten: stored
    receive(1, dup=True)
    assert len(sink.commits) == 2 and intake.stats.duplicates_skipped == 2
    [(_, first_marks, _), (_, marks, _)] = sink.commits
    assert first_marks is not None and marks is not None
    assert list(first_marks) != list(marks), "each commit its own ring slot"
    await end_commit(1)
    assert acks.mids == [1, 1]
    receive(1, dup=True)
    assert acks.mids == [1, 1, 1] and intake.stats.duplicates_skipped == 3 and len(sink.commits) == 2
    receive(2, dup=False)  # the same payload published again: stored again
    receive(3, dup=True)  # the same payload redelivered under another packet id: another message, stored
    receive(4, dup=False, qos=0)
    assert len(sink.commits) == 5 and sink.commits[4][1] is None, "QoS 0 is never redelivered"
    assert intake.stats.duplicates_skipped == 3


async def test_the_topic_is_authoritative_and_reserved_namespaces_hold_no_data(
    tmp_path: Path, acks: Acks
) -> None:
    """A batch with a sample of another asset than its topic's is dead-lettered whole and counted,
    on the fast path (v1, v2 gzip) and the slow one (a batch with an invalid sample too: not half
    stored); alerts are only acknowledged (gzip or not); a batch under ``alerts/`` or a 4-level
    topic under ``agents/`` (a site so named) is dead-lettered saying the name is reserved."""
    cfg = _config(tmp_path)
    dl = DeadLetter(cfg.deadletter_path)
    intake = UnsIntake(cfg, dl, FleetState())
    batches = simulated_batches(20, n_agents=1)["agent-0"]
    mine = batches[0]
    other = next(b for b in batches if b.samples[0].asset != mine.samples[0].asset)
    topic = topics.data_topic(mine.samples[0].asset)
    mixed = Batch(mine.producer, "mixed-1", 1, (*mine.samples[:3], other.samples[0]))
    slow = wire.batch_to_dict(Batch(mine.producer, "mixed-2", 2, (*mine.samples[:3], *other.samples[:2])))
    slow["samples"][0]["ts"] = "yesterday"
    reserved = Batch("agent-0", "r-1", 1, tuple(
        dataclasses.replace(s, asset=AssetPath("alerts", "a1", "line1", "m1")) for s in mine.samples[:2]))
    agents_site = Batch("agent-0", "r-2", 2, tuple(
        dataclasses.replace(s, asset=AssetPath("agents", "a1", "line1", "status")) for s in mine.samples[:2]))
    alert = orjson.dumps({"id": "e1", "source": "kpi", "rule": "oee_low", "asset": "plant1/a1/line1",
                          "start": "2026-11-24T10:00:00Z"})
    async with cfg.buffer.build("gw-1") as buf:
        await _run(intake, buf, [
            _msg(acks, topic, wire.encode_batch(mixed), 1),
            _msg(acks, topic, wire.encode_batch(mixed, compress=True, version=2), 2),
            _msg(acks, topic, orjson.dumps(slow), 3),
            _msg(acks, topics.alert_topic("plant1/a1/line1"), alert, 4),
            _msg(acks, topics.alert_topic("plant1/a1/line1/cnc-1"), gzip.compress(alert), 5),
            _msg(acks, topics.data_topic(reserved.samples[0].asset), wire.encode_batch(reserved), 6),
            _msg(acks, topics.data_topic(agents_site.samples[0].asset), wire.encode_batch(agents_site), 7),
            _msg(acks, topic, wire.encode_batch(mine), 8),
        ])
        stored = await _stored(buf)
    assert sorted(acks.mids) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert stored == [mine], "only the batch of the topic's own machine"
    letters = dl.read()
    assert [(r["topic"], r["kind"]) for r in letters] == [(topic, "gateway_batch")] * 3 + [
        (topics.data_topic(reserved.samples[0].asset), "gateway_batch"),
        (topics.data_topic(agents_site.samples[0].asset), "gateway_batch")]
    for r, batch_id in zip(letters[:3], ["mixed-1", "mixed-1", "mixed-2"], strict=True):
        assert (r["producer"], r["batch_id"]) == ("agent-0", batch_id)
        assert f"holds samples of asset {other.samples[0].asset}, not of its topic's asset " \
            f"{mine.samples[0].asset}" in r["reason"]
    assert "no site may be named 'alerts'" in letters[3]["reason"]
    assert "no site may be named 'agents'" in letters[4]["reason"]
    counts = intake.counts
    assert (counts.wrong_asset, counts.alerts_skipped, counts.status_messages) == (3, 2, 0)
    assert intake.stats.bad_payloads == 5
