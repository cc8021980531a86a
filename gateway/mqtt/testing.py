"""Test and benchmark helpers on the MQTT side (paho stays behind this seam).

- :class:`FakeAgent` publishes wire-format batches exactly as an edge agent in MQTT-uplink mode
  does: QoS 1 on :func:`zhizao.topics.data_topic` of the batch's asset, a retained ``online``
  birth on :func:`zhizao.topics.status_topic` and a retained ``offline`` last will. A batch
  whose PUBACK did not arrive is republished (same batch id) after a reconnect, as the agent's
  buffer would do — so broker restarts lose nothing and may duplicate (ingest deduplicates).
- :class:`Counter` is a bare MQTT subscriber counting messages and samples (benchmark ceiling).
- ``python -m gateway.mqtt.testing alive HOST PORT AGENT_ID SITE`` connects with birth and last
  will and sleeps: kill it with SIGKILL to see the will fire.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from zhizao import topics, wire
from zhizao.model import Batch


def status_payload(agent_id: str, state: str, site: str, **extra: Any) -> bytes:
    """A status document as the agent's MQTT uplink publishes it (plus ``site``)."""
    return orjson.dumps({"agent": agent_id, "status": state, "ts": time.time(), "site": site, **extra})


class FakeAgent:
    """See the module docstring. Not thread-safe; one publishing thread."""

    def __init__(self, host: str, port: int, agent_id: str, site: str, *, version: str = "0.1.0",
                 config_hash: str = "cafe", window: int = 100, ack_timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.agent_id, self.site = agent_id, site
        self.version, self.config_hash = version, config_hash
        self.window = window
        self.ack_timeout = ack_timeout
        self.republished = 0
        self.connects = 0
        self._client: mqtt.Client | None = None

    def connect(self, timeout: float = 60.0) -> None:
        """(Re)connect with last will and publish the birth; retries until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.agent_id,
                                 protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
            client.max_inflight_messages_set(max(20, self.window))
            client.max_queued_messages_set(0)
            client.will_set(topics.status_topic(self.agent_id),
                            status_payload(self.agent_id, "offline", self.site), qos=1, retain=True)
            connected = threading.Event()
            client.on_connect = lambda *_a, _ev=connected: _ev.set()
            try:
                client.connect(self.host, self.port, keepalive=10)
                client.loop_start()
                if connected.wait(5):
                    break
                client.loop_stop()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot connect to {self.host}:{self.port}")
            time.sleep(0.2)
        self._client = client
        self.connects += 1
        client.publish(topics.status_topic(self.agent_id),
                       status_payload(self.agent_id, "online", self.site, version=self.version,
                                      config_hash=self.config_hash, backlog_samples=0, backlog_age_s=0.0),
                       qos=1, retain=True).wait_for_publish(self.ack_timeout)

    def publish(self, batches: Sequence[Batch], *, pause: float = 0.0) -> None:
        """Publish every batch until each is acknowledged by the broker (pipelined, ``window`` deep)."""
        todo = list(batches)
        while todo:
            if self._client is None or not self._client.is_connected():
                self.close()
                self.connect()
            client = self._client
            assert client is not None
            pending: list[tuple[Batch, mqtt.MQTTMessageInfo]] = []
            failed: list[Batch] = []
            for b in todo:
                info = client.publish(topics.data_topic(b.samples[0].asset), wire.encode_batch(b), qos=1)
                pending.append((b, info))
                if pause:
                    time.sleep(pause)
                while len(pending) >= self.window:
                    failed += self._settle(pending.pop(0))
            while pending:
                failed += self._settle(pending.pop(0))
            self.republished += len(failed)
            todo = failed
            if failed:
                self.close()

    def _settle(self, item: tuple[Batch, mqtt.MQTTMessageInfo]) -> list[Batch]:
        b, info = item
        deadline = time.monotonic() + self.ack_timeout
        client = self._client
        try:
            while not info.is_published():
                if client is None or not client.is_connected() or time.monotonic() > deadline:
                    return [b]
                info.wait_for_publish(0.05)
        except (RuntimeError, ValueError):  # paho: "publish failed: not connected"
            return [b]
        return []

    def disconnect(self, *, clean_status: bool = True) -> None:
        """Clean shutdown: publish ``offline`` (retained), then DISCONNECT (no will)."""
        if self._client is not None and not self._client.is_connected():
            self.close()
            self.connect()
        if self._client is not None and clean_status:
            doc = status_payload(self.agent_id, "offline", self.site)
            info = self._client.publish(topics.status_topic(self.agent_id), doc, qos=1, retain=True)
            info.wait_for_publish(self.ack_timeout)
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


class Counter:
    """A bare subscriber counting messages and samples on the data filter (QoS 1, auto-ack)."""

    def __init__(self, host: str, port: int, client_id: str = "bench-counter") -> None:
        self.messages = 0
        self.samples = 0
        self.first: float | None = None
        self.last: float | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_message = self._on_message
        ready = threading.Event()
        self._client.on_subscribe = lambda *_a: ready.set()
        self._client.on_connect = lambda c, *_a: c.subscribe(topics.DATA_FILTER, qos=1)
        self._client.connect(host, port)
        self._client.loop_start()
        if not ready.wait(10):
            raise TimeoutError("counter did not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.messages += 1
        self.samples += count_samples(msg.payload)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def count_samples(payload: bytes | bytearray) -> int:
    """Samples in a wire-format document, as cheaply as the raw ceiling allows: v1 by counting
    ``"signal"`` keys (no decoding), v2 (``"series"``) by parsing and summing the ``ts`` arrays
    (its ``"signal"`` keys count series, not samples). Not a validity check."""
    if b'"series"' not in payload:
        return payload.count(b'"signal"')
    doc = orjson.loads(payload)
    return sum(len(s.get("ts", ())) for s in doc.get("series", ()))


def _alive(host: str, port: str, agent_id: str, site: str) -> None:
    agent = FakeAgent(host, int(port), agent_id, site)
    agent.connect()
    print("online", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "alive":
        _alive(*sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
