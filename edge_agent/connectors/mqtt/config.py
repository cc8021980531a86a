"""Configuration of the MQTT connector (``[connectors.mqtt]``); see ``sample.toml``."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from edge_agent.mapping import JsonMapping, check_mappings
from zhizao.config import StrictModel, host_port, is_loopback_host, plaintext_warning
from zhizao.tls import TlsConfig

__all__ = ["BrokerConnection", "MqttConnectorConfig", "TlsConfig"]  # TlsConfig: zhizao.tls, shared


class BrokerConnection(StrictModel):
    """How to reach an MQTT broker: the fields every MQTT client of zhizao shares (the agent's
    connector and uplink, the gateway), with one set of checks."""

    host: str
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, min_length=1, max_length=64)
    """Fixed client id (the persistent session is bound to it); each user documents its default."""
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    allow_plaintext: bool = False
    """A ``password`` sent without ``tls`` to a host that is not this machine's loopback crosses the
    network unencrypted: accepted, with one warning naming the key and the host at check-config and
    at start. ``true`` silences it, for a network you trust; prefer a ``tls`` table."""

    @model_validator(mode="after")
    def _auth(self) -> Self:
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        return self

    def plaintext_warnings(self, key: str) -> list[str]:
        """One line when the password goes unencrypted to a host that is not loopback (``key``:
        this connection's dotted key, e.g. ``broker``); none with ``allow_plaintext``."""
        if self.allow_plaintext or self.password is None or self.tls is not None:
            return []
        if is_loopback_host(self.host):
            return []
        return [plaintext_warning(f"{key}.password", "MQTT password", host_port(self.host, self.port),
                                  "MQTT without TLS", "add a tls table (port 8883 usually)")]


class MqttConnectorConfig(BrokerConnection):
    """One broker, one persistent session, the payload mappings of its vendor topics.
    ``client_id`` defaults to ``<agent id>-<name>``."""

    type: Literal["mqtt"] = "mqtt"
    name: str = Field("mqtt", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    protocol: Literal["3.1.1", "5"] = "5"
    qos: Literal[0, 1, 2] = 1
    clean_start: bool = False
    session_expiry_s: int = Field(7 * 86400, ge=0)
    mappings: list[JsonMapping] = Field(min_length=1)

    @field_validator("mappings")
    @classmethod
    def _mappings(cls, v: list[JsonMapping]) -> list[JsonMapping]:
        check_mappings(v)  # unique names, none shadowed, no two subscriptions delivering one message
        return v
