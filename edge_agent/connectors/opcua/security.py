"""OPC UA security for the agent: its client certificate, trusting the server, applying the policy.

- The client certificate and key are generated once (self-signed, application URI in the SAN)
  and then reused on every start: a server administrator trusts it once.
- The server certificate is trusted only if its SHA-256 fingerprint is pinned in the config or
  the certificate is in the trust folder. Otherwise :class:`~zhizao.errors.SecurityError` names
  the fingerprint so an integrator can pin it; there is never a fallback to a weaker mode.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from asyncua.client.client import Client
from asyncua.crypto import security_policies as sp
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_agent.connectors.opcua.config import SecurityConfig
from zhizao.errors import SecurityError

ua: Any = importlib.import_module("asyncua.ua")
log = logging.getLogger(__name__)

POLICIES: dict[str, type[sp.SecurityPolicy]] = {
    "Basic256Sha256": sp.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": sp.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": sp.SecurityPolicyAes256Sha256RsaPss,
}


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as ``AB:CD:...``."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def load_der(path: Path) -> bytes:
    """A certificate file (DER or PEM) as DER bytes."""
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


async def ensure_client_certificate(cert: Path, key: Path, application_uri: str) -> str:
    """Create the client certificate and key unless both exist; returns the certificate's fingerprint.

    A certificate it creates is logged (INFO: path and fingerprint, to give the server
    administrator). Folders: a configured path's folder is checked by the config (a mistyped path
    is a config error, never a new folder); the default ``<state_dir>/pki`` is created here.
    """
    from asyncua.crypto.cert_gen import setup_self_signed_certificate

    if _both_exist(cert, key):
        return fingerprint(_read_cert(cert))
    try:
        _make_folders(cert, key)
        await setup_self_signed_certificate(
            key,
            cert,
            application_uri,
            socket.gethostname(),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"countryName": "CN", "organizationName": "zhizao", "commonName": application_uri},
        )
        _private(key)
    except OSError as exc:
        raise SecurityError(f"cannot create the client certificate {cert}: {exc}") from exc
    fp = fingerprint(_read_cert(cert))
    log.info("generated the OPC UA client certificate %s (key %s, application URI %s), fingerprint "
             "sha256:%s: give it to the server administrator to trust", cert, key, application_uri, fp)
    return fp


def _both_exist(cert: Path, key: Path) -> bool:
    return cert.is_file() and key.is_file()


def _make_folders(*files: Path) -> None:
    for folder in {f.parent for f in files}:
        folder.mkdir(parents=True, exist_ok=True)


def _read_cert(cert: Path) -> bytes:
    try:
        return load_der(cert)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read the client certificate {cert}: {exc}") from exc


def _private(key: Path) -> None:
    key.chmod(0o600)


def trusted_fingerprints(cfg: SecurityConfig) -> set[str]:
    """Every trusted server fingerprint (lower-case hex): pinned ones and the trust folder's."""
    out = set(cfg.server_cert_fingerprints)
    if cfg.trust_dir is not None:
        if not cfg.trust_dir.is_dir():
            raise SecurityError(f"trust_dir {cfg.trust_dir} is not a folder")
        for path in sorted(cfg.trust_dir.iterdir()):
            if path.suffix.lower() in (".der", ".pem", ".crt", ".cer"):
                try:
                    out.add(hashlib.sha256(load_der(path)).hexdigest())
                except (OSError, ValueError) as exc:
                    raise SecurityError(f"cannot read trusted certificate {path}: {exc}") from exc
    return out


async def apply_security(client: Client, cfg: SecurityConfig, cert: Path, key: Path, endpoint: str) -> None:
    """Configure ``client`` for ``cfg`` (call before ``connect``); ``SecurityError`` if not possible.

    Asks the server for its endpoints (the unsecured discovery service every server offers),
    picks the one with the configured policy and mode, checks its certificate against the trust
    anchors and pins it for the session.
    """
    if cfg.mode == "None":
        return
    assert cfg.policy is not None
    policy = POLICIES[cfg.policy]
    mode = getattr(ua.MessageSecurityMode, cfg.mode)
    try:
        endpoints = await client.connect_and_get_server_endpoints()
    except (OSError, TimeoutError) as exc:
        from zhizao.errors import ConnectionLost

        raise ConnectionLost(f"OPC UA server {endpoint} unreachable: {exc}") from exc
    chosen = [e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
    if not chosen:
        offered = sorted(
            {f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints}
        )
        raise SecurityError(
            f"{endpoint} offers no endpoint with {cfg.policy}/{cfg.mode} (it offers {', '.join(offered)}); "
            "set security.policy and security.mode to one it offers — the agent connects with exactly "
            "the configured security, never another"
        )
    server_der = _first_cert(chosen[0].ServerCertificate)
    fp = hashlib.sha256(server_der).hexdigest()
    if fp not in trusted_fingerprints(cfg):
        raise SecurityError(
            f"server certificate of {endpoint} is not trusted (sha256:{fingerprint(server_der)}); "
            "pin it in security.server_cert_fingerprints or put it in security.trust_dir"
        )

    async def validate(certificate: x509.Certificate, _app: Any) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        der = certificate.public_bytes(Encoding.DER)
        if hashlib.sha256(der).hexdigest() != fp:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted)

    client.certificate_validator = validate
    try:
        await client.set_security(policy, str(cert), str(key), server_certificate=server_der, mode=mode)
    except (ValueError, OSError) as exc:
        raise SecurityError(f"cannot use client certificate {cert}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A certificate an OPC UA server presents on its endpoints (``GetEndpoints``, unsecured)."""

    der: bytes
    endpoints: tuple[str, ...]
    """``<policy>/<mode>`` of each endpoint presenting it (``Basic256Sha256/SignAndEncrypt``)."""

    @property
    def fingerprint(self) -> str:
        """``AB:CD:...`` (SHA-256), as ``security.server_cert_fingerprints`` takes it."""
        return fingerprint(self.der)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    def describe(self) -> tuple[str, str, str]:
        """Subject, ``not before``, ``not after`` (UTC, ISO 8601); ``?`` when it cannot be parsed."""
        try:
            cert = x509.load_der_x509_certificate(self.der)
        except ValueError:
            return "? (not an X.509 certificate)", "?", "?"
        subject = cert.subject.rfc4514_string()
        return subject, _iso(cert.not_valid_before_utc), _iso(cert.not_valid_after_utc)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def server_certificates(
    endpoint: str, request_timeout_s: float, policy: str | None = None
) -> list[ServerCertificate]:
    """Every certificate the server at ``endpoint`` presents (only on ``policy``'s endpoints when
    given), fetched with the discovery service every server offers without security: nothing needs
    to be trusted or pinned first. ``ConnectionLost`` if the server cannot be reached."""
    from zhizao.errors import ConnectionLost

    client = Client(endpoint, timeout=request_timeout_s)
    try:
        endpoints = await client.connect_and_get_server_endpoints()
    except (OSError, TimeoutError, ua.UaError) as exc:
        raise ConnectionLost(f"OPC UA server {endpoint} unreachable: {exc or type(exc).__name__}") from exc
    uri = POLICIES[policy].URI if policy else None
    found: dict[bytes, list[str]] = {}
    for ep in endpoints:
        if not ep.ServerCertificate or (uri and ep.SecurityPolicyUri != uri):
            continue
        name = f"{ep.SecurityPolicyUri.rsplit('#', 1)[-1]}/{ep.SecurityMode.name}"
        found.setdefault(_first_cert(ep.ServerCertificate), []).append(name)
    return [ServerCertificate(der, tuple(names)) for der, names in found.items()]


def _first_cert(der_chain: bytes) -> bytes:
    """The first certificate of a DER chain (servers may send several, concatenated)."""
    if len(der_chain) < 4 or der_chain[0] != 0x30:
        return der_chain
    if der_chain[1] & 0x80:
        n = der_chain[1] & 0x7F
        length = int.from_bytes(der_chain[2 : 2 + n], "big") + 2 + n
    else:
        length = der_chain[1] + 2
    return der_chain[:length]
