"""A real Mosquitto with a password file and an ACL, and a site-gateway-like subscriber, for tests
of what a broker refuses (the MQTT uplink's data and status messages)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.support.servers import Mosquitto

USERS = (("agent", "agent-secret"), ("gw", "gw-secret"))
"""The users of :func:`acl_broker`: the agent and the gateway."""


@contextlib.contextmanager
def acl_broker(tmp_path: Path, acl_text: str) -> Iterator[tuple[Mosquitto, Path]]:
    """Mosquitto (started; killed at the end) with the :data:`USERS` and ``acl_text`` as its ACL;
    yields it and the ACL file (rewrite it, then restart the broker, to change the rules)."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    passwords, acl = workdir / "passwd", workdir / "acl"
    passwords.touch()
    for user, password in USERS:
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                       capture_output=True)
    acl.write_text(acl_text)
    server = Mosquitto(workdir, extra_config=f"password_file {passwords}\nacl_file {acl}\n")
    server.start()
    try:
        yield server, acl
    finally:
        server.kill()


class Subscriber:
    """The site gateway's subscriber (user ``gw``): QoS 1 on ``filters``, persistent session,
    survives broker restarts; records every message."""

    def __init__(self, broker: Mosquitto, filters: Sequence[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="site-gw", clean_session=False,
                                  protocol=MQTTProtocolVersion.MQTTv311)
        self.client.username_pw_set("gw", "gw-secret")
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
        self.client.on_message = self._on
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
