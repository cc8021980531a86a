"""The MQTT ring of committed-message digests keys on (packet identifier, topic, payload): two
distinct messages with the same payload are two samples, also when the second is redelivered after
a crash; a committed message redelivered is stored once (``test_mqtt_connector.py``). On a real
Mosquitto, which resends an unacknowledged message with its original packet identifier and DUP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_agent.buffer import PutResult, SqliteBuffer
from edge_agent.connectors.mqtt import MqttConnector, MqttConnectorConfig
from edge_agent.connectors.mqtt.dedup import DUP_SLOTS, STALE_RX, CommittedDigests, digest_of
from edge_agent.deadletter import DeadLetter
from tests.edge_agent.disk_full import samples
from tests.edge_agent.test_mqtt_connector import Publisher
from tests.support.servers import Mosquitto
from tests.support.sinks import WrappedBuffer, running
from tests.support.waiting import eventually
from zhizao.model import Sample

TOPIC = "vendor/imm-1/state"
IDLE = b'{"state": "idle"}'


def vendor_config(broker: Mosquitto) -> MqttConnectorConfig:
    """A vendor payload without a timestamp: each sample is dated with its time of receipt."""
    return MqttConnectorConfig.model_validate({
        "host": broker.host, "port": broker.port, "protocol": "5", "client_id": "agent-1-vendor",
        "mappings": [{"name": "plain", "topic": "vendor/+machine/state", "asset": "plant1/a1/line1/{machine}",
                      "timestamp": {"field": None}, "values": {"layout": "flat"}}]})


class Recording(MqttConnector):
    """Records each message's (packet identifier, DUP flag) as the connector gets them."""

    def __init__(self, config: MqttConnectorConfig, deadletter: DeadLetter) -> None:
        super().__init__(config, "agent-1", deadletter)
        self.received: list[tuple[int, bool]] = []

    def _add(
        self, client: mqtt.Client, topic: str, payload: bytes, digest: bytes, dup: bool, qos: int, mid: int
    ) -> None:
        self.received.append((mid, dup))
        super()._add(client, topic, payload, digest, dup, qos, mid)


class CommitsTheFirstOnly(WrappedBuffer):
    """The first submit is committed (and acknowledged); later ones never reach the buffer and
    never end: the process dies in the window between reading a message and its group commit."""

    def __init__(self, buf: SqliteBuffer) -> None:
        super().__init__(buf)
        self.submits = 0

    def submit(
        self, samples: Sequence[Sample], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        self.submits += 1
        if self.submits == 1:
            return super().submit(samples, marks)
        return asyncio.get_running_loop().create_future()


async def test_the_same_payload_twice_is_two_samples_when_the_second_is_redelivered_after_a_crash(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """'state idle' now and again later (no timestamp in the payload): the first is committed and
    acknowledged; the process dies after reading the second, before its commit. The next process
    gets the second again — same packet identifier, DUP set — and stores it: two samples."""
    dl = DeadLetter(tmp_path / "dead.jsonl")
    cfg = vendor_config(mosquitto)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        first = Recording(cfg, dl)
        sink = CommitsTheFirstOnly(buf)
        pub = Publisher(mosquitto)
        async with running(first, sink):
            await asyncio.sleep(0.3)  # the SUBACK
            pub.publish(TOPIC, IDLE)
            await eventually(lambda: len(samples(buf)) == 1, 15, "the first committed")
            await asyncio.sleep(0.3)  # its PUBACK
            pub.publish(TOPIC, IDLE)
            await eventually(lambda: first.stats.messages == 2, 15)
        # the "crash": the second message was read, never committed, never acknowledged
        second = Recording(cfg, dl)
        async with running(second, buf):
            await eventually(lambda: second.stats.messages == 1, 15, "the redelivery")
            await eventually(lambda: len(samples(buf)) == 2, 15, "the redelivery stored")
            await asyncio.sleep(0.5)  # its PUBACK
        third = Recording(cfg, dl)  # acknowledged: nothing comes again
        async with running(third, buf):
            await asyncio.sleep(1.0)
        pub.close()
        stored = samples(buf)
    (mid1, dup1), (mid2, dup2) = first.received
    assert not dup1 and not dup2 and mid1 != mid2
    assert second.received == [(mid2, True)], "resent with its original packet identifier, DUP set"
    assert second.stats.duplicates_skipped == 0 and third.stats.messages == 0
    assert [s.value for s in stored] == ["idle", "idle"] and stored[0].ts < stored[1].ts


class Marks:
    """A mark source holding what rings committed (the buffer's ``marks``)."""

    def __init__(self) -> None:
        self.committed: dict[str, str] = {}

    async def marks(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self.committed.items() if k.startswith(prefix)}


def committed(ring: CommittedDigests[object], store: Marks, dig: bytes) -> None:
    """A QoS 1 message with data received and committed, as the connector does it."""
    assert not ring.redelivered(dig, False, 1)
    key, value = ring.mark(dig)
    ring.remember(dig, "commit")
    ring.settle([dig], "commit", committed=True)
    store.committed[key] = value


async def test_the_ring_keys_on_the_packet_identifier_and_drops_stale_entries_at_load() -> None:
    """A redelivery matches its original's (mid, topic, payload) only; an entry more than
    ``STALE_RX`` messages older than the newest is not loaded (its packet identifier may have come
    round again); an older version's marks are not loaded but keep the ring's slot sequence."""
    store = Marks()
    ring: CommittedDigests[object] = CommittedDigests("t")
    old, new = digest_of(TOPIC, IDLE, 7), digest_of(TOPIC, IDLE, 8)
    assert old != new and digest_of(TOPIC, IDLE, 7) == old
    committed(ring, store, old)
    assert ring.redelivered(old, True, 1) and not ring.redelivered(new, True, 1)
    assert not ring.redelivered(old, False, 1), "no DUP: never a redelivery"
    for i in range(STALE_RX + 1):  # messages without data: no ring entry
        ring.redelivered(digest_of(TOPIC, b"%d" % i, i % 65535 + 1), False, 1)
    committed(ring, store, new)
    store.committed["mqtt:t:dup:4095"] = "4095:" + digest_of(TOPIC, b"legacy").hex()  # older version
    later: CommittedDigests[object] = CommittedDigests("t")
    await later.load(store)
    assert later.redelivered(new, True, 1), "the newest entry is loaded"
    assert not later.redelivered(old, True, 1), "the stale one is not"
    key, _ = later.mark(new)
    assert key == f"mqtt:t:dup:{4096 % DUP_SLOTS:04d}", "slots continue after the legacy one"
