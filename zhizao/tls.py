"""TLS to an MQTT broker, shared by every MQTT client of zhizao: the edge agent's connector and
uplink and the gateway (paho, through ``edge_agent.connectors.mqtt.client.apply_auth_and_tls``)
and analytics' MQTT event sink (aiomqtt). One config table (:class:`TlsConfig`, the ``tls`` table
of each) and one way to turn it into an :class:`ssl.SSLContext` (:func:`client_context`), so every
client verifies the broker the same way and names a bad file the same way.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import model_validator

from zhizao.config import ExistingFile, StrictModel
from zhizao.errors import SecurityError


class TlsConfig(StrictModel):
    """TLS to the broker: CA bundle, optional client certificate. The files must exist when the
    config is validated."""

    ca_file: ExistingFile | None = None
    """PEM bundle of the CA(s) that signed the broker's certificate; default: the system CAs."""
    cert_file: ExistingFile | None = None
    key_file: ExistingFile | None = None
    insecure: bool = False
    """Skip the broker host name check (never in production)."""

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client context for ``tls``: the broker's certificate verified against ``ca_file`` (the
    system CAs without it), its host name checked unless ``insecure``, the client certificate
    loaded when given — what paho's ``tls_set`` builds, so paho and aiomqtt clients agree.

    Raises :class:`~zhizao.errors.SecurityError` naming the file when a TLS file cannot be used
    (missing since the config was validated, unreadable, not PEM, key not matching the
    certificate): TLS is never dropped.
    """
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    for key, path in files.items():
        if path is not None and not _present(path):
            raise SecurityError(f"tls.{key}: file not found: {path}")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, host name check on
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        if tls.ca_file is not None:
            context.load_verify_locations(str(tls.ca_file))
        else:
            context.load_default_certs()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        given = ", ".join(f"tls.{k} = {p}" for k, p in files.items() if p is not None)
        raise SecurityError(f"cannot use the TLS files ({given or 'system CAs'}): {exc}") from exc
    context.check_hostname = not tls.insecure
    return context


def _present(path: Path) -> bool:
    """False only when nothing is there (other problems, e.g. permissions, the context reports)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        pass
    return True
