"""MQTT sink: each event as JSON on ``zhizao/v1/alerts/<asset>/<source>/<rule>`` (``topics.event_topic``).

QoS 1 by default. Open episodes are published retained (a dashboard that connects later sees the
current alarms); the resolve message is retained too, replacing the open one of the same rule.
One topic per rule (and source) of an asset: a machine's health and energy models, or a KPI rule,
each keep their own retained message, so one rule's resolve never hides another's open alarm.
Subscribe ``zhizao/v1/alerts/<asset>/#`` (``alert_topic(asset) + "/#"``) or ``zhizao/v1/alerts/#``.
(Before: all rules of an asset on ``zhizao/v1/alerts/<asset>``.)

With ``tls`` (:class:`zhizao.tls.TlsConfig`, the ``tls`` table of every MQTT client of zhizao) the
connection is TLS, the broker's certificate verified by :func:`zhizao.tls.client_context` (its
host name too unless ``insecure``). A TLS file that cannot be used raises
:class:`~zhizao.errors.SecurityError` naming it when the sink is built: TLS is never dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Self

import aiomqtt
import orjson

from analytics.events.sinks.base import event_json
from zhizao.errors import Unavailable
from zhizao.events import Event
from zhizao.tls import TlsConfig, client_context
from zhizao.topics import event_topic


class MqttSink:
    name = "mqtt"

    def __init__(self, host: str, port: int = 1883, *, qos: int = 1, retain: bool = True,
                 username: str | None = None, password: str | None = None,
                 client_id: str | None = None, tls: TlsConfig | None = None) -> None:
        self.host, self.port, self.qos, self.retain = host, port, qos, retain
        self._kw = {"username": username, "password": password, "identifier": client_id}
        self._context = client_context(tls) if tls is not None else None  # a bad file: SecurityError now
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Self:
        await self._connect()
        return self

    async def _connect(self) -> None:
        client = aiomqtt.Client(self.host, self.port, username=self._kw["username"],
                                password=self._kw["password"], identifier=self._kw["identifier"],
                                tls_context=self._context)  # host name check: in the context
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise Unavailable(f"mqtt sink {self.host}:{self.port}: {exc}") from exc
        self._client = client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(aiomqtt.MqttError):  # already disconnected: nothing to close
                await client.__aexit__(None, None, None)

    async def send(self, events: Sequence[Event]) -> None:
        if self._client is None:
            await self._connect()
        assert self._client is not None
        try:
            for e in events:
                await self._client.publish(event_topic(e), orjson.dumps(event_json(e)),
                                           qos=self.qos, retain=self.retain)
        except aiomqtt.MqttError as exc:
            await self.__aexit__(None, None, None)  # reconnect on the next send
            raise Unavailable(f"mqtt sink {self.host}:{self.port}: {exc}") from exc
