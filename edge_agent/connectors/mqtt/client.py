"""paho client settings shared by the MQTT connector and the MQTT uplink (and the gateway)."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from edge_agent.connectors.mqtt.config import TlsConfig
from zhizao.errors import SecurityError


def apply_auth_and_tls(
    client: mqtt.Client, username: str | None, password: SecretStr | None, tls: TlsConfig | None
) -> None:
    """Username/password and TLS (CA, client certificate, host name check) on a paho client.

    Raises :class:`~zhizao.errors.SecurityError` naming the file when a TLS file cannot be used
    (missing since the config was validated, unreadable, not PEM, key not matching the
    certificate): the supervisor reports it on one line, and TLS is never dropped.
    """
    if username is not None:
        client.username_pw_set(username, password.get_secret_value() if password else None)
    if tls is None:
        return
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    for key, path in files.items():
        if path is not None and not _present(path):
            raise SecurityError(f"tls.{key}: file not found: {path}")
    try:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        given = ", ".join(f"tls.{k} = {p}" for k, p in files.items() if p is not None)
        raise SecurityError(f"cannot use the TLS files ({given or 'system CAs'}): {exc}") from exc
    client.tls_insecure_set(tls.insecure)


def _present(path: Path) -> bool:
    """False only when nothing is there (other problems, e.g. permissions, tls_set reports)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        pass
    return True
