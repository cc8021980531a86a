"""The MQTT connector's paho client (``edge_agent.connectors.mqtt.inbound.LeanClient``), fed PUBLISH
packets from a fake socket: the fields it hands over are those paho decodes, every packet it does
not take goes through paho's ``on_message`` as before, and the PUBACK and error paths are paho's."""

from __future__ import annotations

import struct
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge_agent.connectors.mqtt.dedup import digest_of, digest_of_raw
from edge_agent.connectors.mqtt.inbound import LeanClient

V5, V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311


def vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(
    topic: bytes, payload: bytes, *, qos: int = 1, mid: int = 7, dup: bool = False, v5: bool = True,
    props: bytes = b"",
) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += vbi(len(props)) + props
    body += payload
    return bytes([0x30 | (0x08 if dup else 0) | (qos << 1)]) + vbi(len(body)) + body


class FakeSock:
    """What paho reads from: the given bytes, then "would block"; what it writes is kept."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = b""

    def recv(self, n: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        out, self.data = self.data[:n], self.data[n:]
        return out

    def send(self, data: bytes | bytearray) -> int:
        self.sent += bytes(data)
        return len(data)

    def fileno(self) -> int:
        return -1

    def setblocking(self, _flag: bool) -> None:
        pass

    def close(self) -> None:
        pass


Got = list[tuple[Any, ...]]


def feed(data: bytes, *, lean: bool, protocol: MQTTProtocolVersion = V5, manual_ack: bool = True,
         **options: Any) -> tuple[mqtt.Client, Got, Got, FakeSock]:
    """A client (lean or plain paho) reading ``data``: (client, fields handed over, messages, socket)."""
    cls = LeanClient if lean else mqtt.Client
    client = cls(CallbackAPIVersion.VERSION2, client_id="c", protocol=protocol, manual_ack=manual_ack)
    fields: Got = []
    messages: Got = []
    if isinstance(client, LeanClient):
        client.on_publish_fields = lambda *f: fields.append(f)

    def on_message(_c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        try:
            topic: str | None = m.topic
        except UnicodeDecodeError:  # paho's message raises for a topic that is not UTF-8
            topic = None
        messages.append((topic, bytes(m.payload), bool(m.dup), m.qos, m.mid, m.properties))

    client.on_message = on_message
    for name, value in options.items():
        setattr(client, name, value)
    sock = FakeSock(data)
    client._sock = sock
    while sock.data:
        rc = client.loop_read()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            messages.append(("rc", rc))
            break
    return client, fields, messages, sock


@pytest.mark.parametrize("protocol", [V5, V311])
def test_the_common_publish_is_handed_over_as_paho_decodes_it(protocol: MQTTProtocolVersion) -> None:
    v5 = protocol == V5
    packets = [
        publish_packet(b"acme/line2/imm-3/telemetry", b'{"ts": 1}', qos=1, mid=1, v5=v5),
        publish_packet("工厂/线2/机器".encode(), b"\x00\xff binary", qos=1, mid=65535, dup=True, v5=v5),
        publish_packet(b"a/b", b"", qos=0, v5=v5),
        publish_packet(b"x", b"y" * 70_000, qos=1, mid=300, v5=v5),  # a 3-byte remaining length
    ]
    _, fields, messages, _ = feed(b"".join(packets), lean=True, protocol=protocol)
    _, _, plain, _ = feed(b"".join(packets), lean=False, protocol=protocol)
    assert messages == [], "all taken by the short cut"
    assert [(t, p, d, q, m) for t, _, p, d, q, m in fields] == [m[:5] for m in plain]
    assert [raw.decode() for _, raw, *_ in fields] == [t for t, *_ in fields]
    assert all(type(p) is bytes and type(raw) is bytes for _, raw, p, *_ in fields)


def test_a_publish_with_properties_qos_2_or_an_odd_topic_goes_through_paho() -> None:
    """MQTT 5 properties (here a subscription identifier), QoS 2 (its PUBREC/PUBREL handshake), a
    topic that is not UTF-8 or empty: paho's ``on_message``, with what paho decodes (properties
    included)."""
    packets = [
        publish_packet(b"a/props", b"1", props=b"\x0b\x05"),
        publish_packet(b"a/qos2", b"2", qos=2, mid=9),
        bytes([0x62, 2]) + struct.pack("!H", 9),  # its PUBREL: paho hands it over now
        publish_packet(b"a/\xff\xfe", b"3"),
        publish_packet(b"", b"4", props=b""),
        publish_packet(b"a/lean", b"5"),
    ]
    _, fields, messages, _ = feed(b"".join(packets), lean=True)
    assert [f[:3] for f in fields] == [("a/lean", b"a/lean", b"5")]
    assert [m[1] for m in messages] == [b"1", b"2", b"3", b"4"]
    assert messages[0][5].SubscriptionIdentifier == [5]
    assert messages[1][3:5] == (2, 9)


def test_with_logging_or_suppressed_exceptions_or_no_handler_it_is_plain_paho() -> None:
    packet = publish_packet(b"a/b", b"1")
    lines: list[str] = []
    _, fields, messages, _ = feed(packet, lean=True, on_log=lambda _c, _u, _l, line: lines.append(line))
    assert (fields, [m[1] for m in messages]) == ([], [b"1"])
    assert any("Received PUBLISH" in line for line in lines)
    _, fields, messages, _ = feed(packet, lean=True, suppress_exceptions=True)
    assert (fields, [m[1] for m in messages]) == ([], [b"1"])
    _, fields, messages, _ = feed(packet, lean=True, on_publish_fields=None)
    assert (fields, [m[1] for m in messages]) == ([], [b"1"])


def test_a_malformed_publish_is_a_protocol_error_as_in_paho() -> None:
    """A topic length past the packet's end, or no property length in MQTT 5: paho's error."""
    bad_topic = bytes([0x32, 6]) + struct.pack("!H", 50) + b"abcd"
    no_props = bytes([0x32, 7]) + struct.pack("!H", 3) + b"a/b" + struct.pack("!H", 1)
    for packet in (bad_topic, no_props):
        _, fields, messages, _ = feed(packet, lean=True)
        _, _, plain, _ = feed(packet, lean=False)
        assert fields == [] and messages == plain == [("rc", mqtt.MQTT_ERR_PROTOCOL)]


def test_the_puback_is_paho_s() -> None:
    """Without ``manual_ack`` the PUBACK goes out after the handler, as paho sends it; with it,
    only ``ack`` sends it."""
    packet = publish_packet(b"a/b", b"1", mid=258)
    client, fields, _, sock = feed(packet, lean=True, manual_ack=False)
    _, _, _, plain_sock = feed(packet, lean=False, manual_ack=False)
    assert len(fields) == 1 and sock.sent == plain_sock.sent != b""
    client, fields, _, sock = feed(packet, lean=True, manual_ack=True)
    assert len(fields) == 1 and sock.sent == b""
    client.ack(258, 1)
    assert sock.sent == plain_sock.sent


def test_an_exception_of_the_handler_propagates_out_of_loop_read() -> None:
    client = LeanClient(CallbackAPIVersion.VERSION2, client_id="c", protocol=V5)

    def handler(*_f: Any) -> None:
        raise KeyError("a bug")

    client.on_publish_fields = handler
    client._sock = FakeSock(publish_packet(b"a/b", b"1"))
    with pytest.raises(KeyError, match="a bug"):
        client.loop_read()


def test_the_digest_of_the_raw_topic_is_the_digest_of_the_topic() -> None:
    for topic in ("acme/line2/imm-3/telemetry", "工厂/线2/机器", ""):
        for payload in (b"", b"\x00\x01", b'{"ts": 1}'):
            assert digest_of_raw(topic.encode(), payload) == digest_of(topic, payload)
