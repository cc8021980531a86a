"""paho client settings shared by the MQTT connector and the MQTT uplink (and the gateway)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from zhizao.tls import TlsConfig, client_context


def apply_auth_and_tls(
    client: mqtt.Client, username: str | None, password: SecretStr | None, tls: TlsConfig | None
) -> None:
    """Username/password and TLS (CA, client certificate, host name check) on a paho client; the
    TLS context is :func:`zhizao.tls.client_context`'s, as for every MQTT client of zhizao.

    Raises :class:`~zhizao.errors.SecurityError` naming the file when a TLS file cannot be used
    (missing since the config was validated, unreadable, not PEM, key not matching the
    certificate): the supervisor reports it on one line, and TLS is never dropped.
    """
    if username is not None:
        client.username_pw_set(username, password.get_secret_value() if password else None)
    if tls is None:
        return
    client.tls_set_context(client_context(tls))
    client.tls_insecure_set(tls.insecure)
