"""Certificates for the simulator's OPC UA server (and for test clients that connect to it).

With security configured, the server offers only Basic256Sha256 SignAndEncrypt: its certificate
and key are generated once into ``cert_dir`` and reused on every start (a client can pin them), and
a client is accepted only if its certificate is in ``trust_dir`` (DER or PEM files). There is no
fallback to an unencrypted endpoint.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID

from zhizao.errors import SecurityError

SERVER_APP_URI = "urn:zhizao:simulator:server"


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """Basic256Sha256 SignAndEncrypt with the server certificate kept in ``cert_dir`` and the trusted
    client certificates in ``trust_dir``."""

    cert_dir: Path
    trust_dir: Path

    @property
    def cert_path(self) -> Path:
        return self.cert_dir / "server_cert.der"

    @property
    def key_path(self) -> Path:
        return self.cert_dir / "server_key.pem"


async def ensure_certificate(
    key_path: Path, cert_path: Path, *, app_uri: str, client: bool, host_name: str | None = None
) -> None:
    """Create a self-signed application certificate (DER) and key (PEM) unless valid ones exist.

    ``client`` selects the key usage (client or server auth). Raises ``SecurityError`` if the
    files cannot be written.
    """
    from asyncua.crypto.cert_gen import setup_self_signed_certificate

    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    use = [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
    try:
        await setup_self_signed_certificate(
            key_path,
            cert_path,
            app_uri,
            host_name or socket.gethostname(),
            use,
            {"countryName": "CN", "organizationName": "zhizao", "commonName": app_uri},
        )
    except OSError as exc:
        raise SecurityError(f"cannot create certificate {cert_path}: {exc}") from exc
