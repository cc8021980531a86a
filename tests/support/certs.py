"""Self-signed certificates for TLS tests (servers on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port
from tests.support.servers import Mosquitto


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """``(cert, key)`` PEM files in ``directory``: a one-day certificate for IP 127.0.0.1 that is
    its own CA (trust it by passing the cert file as the CA bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def tls_password_broker(directory: Path, user: str) -> Iterator[tuple[Mosquitto, int, Path]]:
    """Mosquitto with a password file (``user``, password ``secret``) on its plain port and on a
    TLS port (certificate for 127.0.0.1, its own CA): ``(broker, tls_port, ca_file)``."""
    cert, key = self_signed(directory, "broker")
    passwords = directory / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), user, "secret"], check=True)
    tls_port = free_port()
    server = Mosquitto(directory / "mosquitto", extra_config=(
        f"allow_anonymous false\npassword_file {passwords}\n"
        f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"))
    server.start()
    try:
        yield server, tls_port, cert
    finally:
        server.kill()
