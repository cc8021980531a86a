"""paho client settings shared by the MQTT connector and the MQTT uplink (and the gateway)."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from edge_agent.connectors.mqtt.config import TlsConfig


def apply_auth_and_tls(
    client: mqtt.Client, username: str | None, password: SecretStr | None, tls: TlsConfig | None
) -> None:
    """Username/password and TLS (CA, client certificate, host name check) on a paho client."""
    if username is not None:
        client.username_pw_set(username, password.get_secret_value() if password else None)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls.insecure)
