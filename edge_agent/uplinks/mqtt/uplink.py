"""MQTT uplink to the site broker (the gateway path): QoS 1 batches in zhizao's wire format.

``send(batch)`` splits the batch by machine (one message per asset, on
``zhizao.topics.data_topic(asset)``), each part with the stable id ``<batch_id>.<k>`` (parts in
asset order, so a resend carries the same ids), publishes them with QoS 1 and returns when the
broker acknowledged every part (PUBACK) — else :class:`~zhizao.errors.Unavailable`; the
forwarder then resends the whole batch, and the gateway deduplicates the parts it already has.

A PUBACK is a delivery only when its reason code is a success: with MQTT 5 (``protocol = "5"``,
the default) a broker that refuses a part — Mosquitto answers a publish its ACL denies with
PUBACK 0x87 *Not authorized* — makes ``send`` log one ERROR naming the topics and reasons and
raise ``Unavailable`` with ``retry_after = backoff_cap_s``: the batch stays in the buffer and is
resent (same ids) until the broker takes it, as the HTTP uplink does on 401/403. Refused parts
are counted per reason in :attr:`MqttUplink.refused`. 0x10 *No matching subscribers* is a
success. MQTT 3.1.1 has no reason code in a PUBACK: a broker that drops a denied publish still
acknowledges it, so with ``protocol = "3.1.1"`` an ACL denial cannot be told from a delivery.

Each part goes as wire-format version 2 (``wire_version = 2``, the default) when that pays — by
the rule of the HTTP uplink (:func:`edge_agent.buffer.encoded.v2_pays`: at least
``MIN_SERIES_RUN`` samples per series on average), its samples grouped by series (series in
order of first appearance, each series' samples in their order) — else as version 1, samples in
the batch's order (:func:`encode_part`). The same batch always gives the same bytes.

Status: on connect a retained birth message ``{"status": "online", ...}`` on
``zhizao.topics.status_topic(agent_id)``, a retained last will ``{"status": "offline"}`` if the
agent vanishes, and a retained refresh every ``status_interval_s`` with the backlog; each
carries the agent version and config hash for the gateway's fleet view. Their PUBACKs are
checked too (MQTT 5): a broker whose ACL denies the status topic (0x87 *Not authorized*) gets one
WARNING naming the topic, the reason and the ACL line it needs — once per change of state, not
every ``status_interval_s``; an INFO when it takes the status again — and each refused status
message counts in :attr:`MqttUplink.refused` under ``"status: <reason>"``. Data is not affected:
its batches go on (or not) by their own PUBACKs. The will goes to the same topic, so the broker
drops it too; nothing tells the agent that, the birth's refusal stands for both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from itertools import chain, groupby
from types import TracebackType
from typing import Any, Self

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.buffer.encoded import v2_pays
from edge_agent.connectors.mqtt.client import apply_auth_and_tls
from edge_agent.uplinks.mqtt.config import MqttUplinkConfig
from zhizao import topics, wire
from zhizao.errors import Unavailable
from zhizao.model import Batch
from zhizao.waiting import wait_event

log = logging.getLogger(__name__)


def encode_part(part: Batch, *, version: int = 2, compress: bool = False) -> bytes:
    """The message payload of ``part``: wire-format version 2 when ``version`` is 2 and
    :func:`~edge_agent.buffer.encoded.v2_pays` for its series (samples grouped by series with
    :func:`zhizao.wire.series_groups`, so each series is one entry), else version 1 (samples
    in ``part``'s order). gzip when ``compress``. ``ValueError`` for a ``version`` not 1 or 2."""
    if version not in wire.VERSIONS:
        raise ValueError(f"unknown wire-format version {version!r}; known: {wire.VERSIONS}")
    if version == 2:
        groups = wire.series_groups(part.samples)
        if v2_pays(len(part), len(groups)):
            grouped = Batch(part.producer, part.batch_id, part.seq, tuple(chain.from_iterable(groups)))
            return wire.encode_batch(grouped, compress=compress, version=2)
    return wire.encode_batch(part, compress=compress, version=1)


def split_by_asset(batch: Batch) -> list[Batch]:
    """One batch per machine, ids ``<batch_id>.<k>`` in asset order (stable across resends)."""
    ordered = sorted(batch.samples, key=lambda s: str(s.asset))
    return [
        Batch(batch.producer, f"{batch.batch_id}.{k}", batch.seq, tuple(group))
        for k, (_, group) in enumerate(groupby(ordered, key=lambda s: str(s.asset)))
    ]


class MqttUplink:
    """See the module docstring. ``status`` returns the extra fields of status messages (backlog...).

    ``refused`` counts the data messages the broker refused (a PUBACK with a failure reason code,
    MQTT 5 only), per reason (``"Not authorized"``): each time, the batch stayed in the buffer; and
    the status messages it refused, per reason prefixed ``"status: "`` (``"status: Not
    authorized"``). ``status_refused`` is the reason of the last status message when the broker
    refused it, else ``None``."""

    name = "mqtt"

    def __init__(self, config: MqttUplinkConfig, agent_id: str, status: Callable[[], dict[str, Any]]) -> None:
        self.config = config
        self.agent_id = agent_id
        self.status = status
        self.status_topic = topics.status_topic(agent_id)
        self._client: mqtt.Client | None = None
        self._connected = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None
        self._puback: dict[int, ReasonCode] = {}
        self.refused: Counter[str] = Counter()
        self.status_refused: str | None = None
        self._status_checks: set[asyncio.Task[None]] = set()
        self._status_seq = 0  # publish order of status messages; the verdict of an older one is stale
        self._status_judged = 0

    def _status_doc(self, state: str) -> bytes:
        return orjson.dumps({"agent": self.agent_id, "status": state, "ts": time.time(), **self.status()})

    async def __aenter__(self) -> Self:
        cfg = self.config
        loop = asyncio.get_running_loop()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"{self.agent_id}-uplink",
            protocol=MQTTProtocolVersion.MQTTv5 if cfg.protocol == "5" else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
        )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.reconnect_delay_set(1, 30)
        apply_auth_and_tls(client, cfg.username, cfg.password, cfg.tls)
        client.will_set(self.status_topic, self._status_doc("offline"), qos=1, retain=True)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                log.error("MQTT uplink: broker refused the connection: %s", reason)
                return
            info = c.publish(self.status_topic, self._status_doc("online"), qos=1, retain=True)
            loop.call_soon_threadsafe(self._check_status, info)
            loop.call_soon_threadsafe(self._connected.set)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(self._connected.clear)

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Properties) -> None:
            # paho calls this before it marks the message published (is_published()), so the
            # entry for a mid is this PUBACK's when send() reads it; one entry per mid at most
            self._puback[mid] = reason

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        client.loop_start()
        self._client = client
        self._status_task = asyncio.create_task(self._status_loop())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
        for check in self._status_checks:
            check.cancel()
        if self._client is not None:
            client, self._client = self._client, None
            if self._connected.is_set():
                info = client.publish(self.status_topic, self._status_doc("offline"), qos=1, retain=True)
                await asyncio.to_thread(info.wait_for_publish, 2.0)
                self._puback.pop(info.mid, None)
            client.disconnect()
            client.loop_stop()

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_interval_s)
            if self._client is not None and self._connected.is_set():
                info = self._client.publish(self.status_topic, self._status_doc("online"), qos=1, retain=True)
                self._check_status(info)

    def _check_status(self, info: mqtt.MQTTMessageInfo) -> None:
        """Watch the PUBACK of the status message ``info`` (on the event loop)."""
        if self._client is None:  # closed since
            return
        self._status_seq += 1
        task = asyncio.create_task(self._status_verdict(info, self._status_seq))
        self._status_checks.add(task)
        task.add_done_callback(self._status_checks.discard)

    async def _status_verdict(self, info: mqtt.MQTTMessageInfo, seq: int) -> None:
        """Wait for the PUBACK of status message number ``seq``; a refusal is counted, and logged
        when the status was accepted before (and an acceptance after refusals is logged). No PUBACK
        within ``timeout_s + status_interval_s`` (broker gone; paho resends it on reconnect): no
        verdict."""
        deadline = time.monotonic() + self.config.timeout_s + self.config.status_interval_s
        while not info.is_published():
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)
        reason = self._puback.pop(info.mid, None)
        refused = str(reason) if reason is not None and reason.is_failure else None
        if refused is not None:
            self.refused[f"status: {refused}"] += 1
        if seq < self._status_judged:  # a newer status message was judged already
            return
        self._status_judged = seq
        if refused == self.status_refused:
            return
        if refused is not None:
            log.warning(
                "broker refused the status message on %s: %s — check the broker's ACL for this agent "
                "(user %s): it needs 'topic write %s' (or zhizao/v1/agents/#); until then the gateway's "
                "fleet view shows this agent missing and its last will is dropped too; data is not "
                "affected", self.status_topic, refused, self.config.username or "<anonymous>",
                self.status_topic)
        else:
            log.info("broker takes the status message on %s again", self.status_topic)
        self.status_refused = refused

    async def send(self, batch: Batch) -> None:
        """Publish every part of ``batch`` and wait for all PUBACKs (see the module docstring)."""
        client = self._client
        if client is None:
            raise RuntimeError("MqttUplink used outside 'async with'")
        if not await wait_event(self._connected, self.config.timeout_s):
            raise Unavailable(f"site broker {self.config.host}:{self.config.port} not connected")
        infos: list[tuple[str, mqtt.MQTTMessageInfo]] = []
        for part in split_by_asset(batch):
            payload = encode_part(part, version=self.config.wire_version, compress=self.config.gzip)
            topic = topics.data_topic(part.samples[0].asset)
            info = client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise Unavailable(f"publish to the site broker failed: {mqtt.error_string(info.rc)}")
            infos.append((topic, info))
        deadline = time.monotonic() + self.config.timeout_s
        while not all(i.is_published() for _, i in infos):
            if time.monotonic() > deadline:
                raise Unavailable(f"site broker did not acknowledge batch {batch.batch_id} in time")
            await asyncio.sleep(0.005)
        refused: list[tuple[str, ReasonCode]] = []
        for topic, info in infos:
            reason = self._puback.pop(info.mid, None)
            if reason is not None and reason.is_failure:  # 0x10 No matching subscribers: success
                refused.append((topic, reason))
        if refused:
            self._refused(batch, refused)

    def _refused(self, batch: Batch, refused: list[tuple[str, ReasonCode]]) -> None:
        """Count, log (one ERROR) and raise ``Unavailable``: the batch stays in the buffer."""
        self.refused.update(str(reason) for _, reason in refused)
        what = "; ".join(f"{topic}: {reason}" for topic, reason in refused)
        retry = self.config.backoff_cap_s
        log.error(
            "broker refused publish to %s — check the broker's ACL for this agent (user %s); "
            "batch %s kept in the buffer, retrying in %g s",
            what, self.config.username or "<anonymous>", batch.batch_id, retry,
        )
        raise Unavailable(f"site broker refused batch {batch.batch_id} ({what})", retry_after=retry)
