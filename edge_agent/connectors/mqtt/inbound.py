"""A paho client that hands the common PUBLISH packet to its user as plain fields.

For every PUBLISH paho builds an ``MQTTMessage`` (with an ``MQTTMessageInfo`` and its
``threading.Condition``), an MQTT 5 ``Properties`` object (whose constructor builds three tables
and whose decoding first deletes every one of the 27 possible attributes), decodes the topic on
each access and looks the topic up among the per-filter callbacks — per message, about a quarter
of what the agent's MQTT connector spends on the loop. :class:`LeanClient` decodes the common
packet itself and calls :attr:`LeanClient.on_publish_fields` with ``(topic, raw_topic, payload,
dup, qos, mid)``:

- QoS 0 or 1 (QoS 2 keeps paho's PUBREC/PUBREL handshake);
- MQTT 3.1.1, or MQTT 5 with no properties (a property — a subscription identifier, a user
  property, a message expiry — and paho decodes the packet: the user gets ``on_message`` with the
  decoded ``message.properties``);
- a non-empty topic that is valid UTF-8 (an empty one, or invalid UTF-8, and a malformed packet
  take paho's path, which reports them as it always did);
- no logging on the client (``on_log``/``enable_logger``: paho's "Received PUBLISH" debug line
  needs its path), ``suppress_exceptions`` off (an exception of the handler propagates out of
  ``loop_read``, as one of ``on_message`` does then).

Everything else — paho's ``on_message`` for the other packets, the PUBACK (``manual_ack`` off: sent
after the handler returns, as paho sends it), the session state, the keepalive — is paho's, and
per-filter callbacks (``message_callback_add``) are not used by the users of this client. The
class overrides one private method of paho 2.x (``Client._handle_publish``, reading
``_in_packet``): if a paho version lacks what it reads, the client behaves as plain paho
(:attr:`LeanClient.lean` is then False).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

PublishHandler = Callable[[str, bytes, bytes, bool, int, int], None]
"""``(topic, raw_topic, payload, dup, qos, mid)``: ``raw_topic`` is the topic's bytes as sent."""

_READS = ("_in_packet", "_protocol", "_manual_ack", "_in_callback_mutex", "_logger", "_send_puback")


class LeanClient(mqtt.Client):
    """A paho ``Client`` calling :attr:`on_publish_fields` for the common PUBLISH (see the module
    docstring); without a handler it is plain paho."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_publish_fields: PublishHandler | None = None
        self.lean = all(hasattr(self, name) for name in _READS)
        """False when this paho version lacks what the short cut reads: plain paho then."""

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.on_publish_fields
        if (handler is None or not self.lean or self.on_log is not None or self._logger is not None
                or self.suppress_exceptions):
            return super()._handle_publish()
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        size = len(packet)
        if qos > 1 or size < 2:
            return super()._handle_publish()
        pos = 2 + ((packet[0] << 8) | packet[1])
        if pos == 2 or pos > size:
            return super()._handle_publish()
        raw_topic = bytes(packet[2:pos])
        try:
            topic = raw_topic.decode()
        except UnicodeDecodeError:
            return super()._handle_publish()
        mid = 0
        if qos:
            if pos + 2 > size:
                return super()._handle_publish()
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            if pos >= size or packet[pos] != 0:  # properties (or none where they must be): paho's
                return super()._handle_publish()
            pos += 1
        payload = bytes(packet[pos:])
        with self._in_callback_mutex:
            handler(topic, raw_topic, payload, bool(header & 0x08), qos, mid)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
