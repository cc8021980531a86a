"""Every supported security policy and the username identity, against a small asyncua server of
this test (the simulator's server offers only Basic256Sha256): Aes128_Sha256_RsaOaep and
Aes256_Sha256_RsaPss with Sign and SignAndEncrypt; a wrong password is refused (SecurityError)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.opcua import OpcUaConnector, OpcUaConnectorConfig
from edge_agent.connectors.opcua.security import ensure_client_certificate, fingerprint, load_der
from simulator.opcua.security import ensure_certificate
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao.errors import SecurityError

ua: Any = __import__("asyncua").ua


class Passwords(UserManager):
    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username == "agent" and password == "s3cret":
            return User(role=UserRole.User, name=username)
        return None


@contextlib.asynccontextmanager
async def secure_server(tmp: Path, port: int, policies: list[Any], trust: Path) -> AsyncIterator[Path]:
    cert, key = tmp / "srv-cert.der", tmp / "srv-key.pem"
    await ensure_certificate(key, cert, app_uri="urn:zhizao:test:server", client=False)
    server = Server(user_manager=Passwords())
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/test")
    await server.set_application_uri("urn:zhizao:test:server")
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    server.set_security_policy(policies)
    server.set_security_IDs(["Username"])
    store = TrustStore([trust], [])
    await store.load()
    server.set_certificate_validator(
        CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
        )
    )
    idx = await server.register_namespace("urn:zhizao:test")
    var = await server.nodes.objects.add_variable(
        ua.NodeId("plant1/a1/line1/press-1/force", idx), ua.QualifiedName("force", idx), 1.5
    )
    await server.start()
    try:
        yield cert
        await var.write_value(2.5)
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("policy", "mode", "server_policy"),
    [
        ("Aes128_Sha256_RsaOaep", "SignAndEncrypt", "Aes128Sha256RsaOaep_SignAndEncrypt"),
        ("Aes256_Sha256_RsaPss", "SignAndEncrypt", "Aes256Sha256RsaPss_SignAndEncrypt"),
        ("Aes256_Sha256_RsaPss", "Sign", "Aes256Sha256RsaPss_Sign"),
    ],
)
async def test_policy_with_username(tmp_path: Path, policy: str, mode: str, server_policy: str) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    cert, key = tmp_path / "agent" / "pki" / "c.der", tmp_path / "agent" / "pki" / "k.pem"
    await ensure_client_certificate(cert, key, "urn:zhizao:agent:agent-1")
    shutil.copy(cert, trust / "agent.der")
    port = free_port()
    async with secure_server(
        tmp_path, port, [getattr(ua.SecurityPolicyType, server_policy)], trust
    ) as srv_cert:

        def cfg(password: str) -> OpcUaConnectorConfig:
            return OpcUaConnectorConfig.model_validate(
                {
                    "endpoint": f"opc.tcp://127.0.0.1:{port}/test",
                    "nodes": [{"node_id": "ns=2;s=plant1/a1/line1/press-1/force", "unit": "kN"}],
                    "security": {
                        "mode": mode,
                        "policy": policy,
                        "client_cert": str(cert),
                        "client_key": str(key),
                        "server_cert_fingerprints": [fingerprint(load_der(srv_cert))],
                    },
                    "identity": {"type": "username", "username": "agent", "password": password},
                    "publishing_interval_ms": 50,
                    "request_timeout_s": 3,
                }
            )

        async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
            conn = OpcUaConnector(cfg("s3cret"), "agent-1", tmp_path / "agent")
            task = asyncio.create_task(conn.run(buf))
            await eventually(lambda: conn.stats.samples_read >= 1, 20)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with pytest.raises(SecurityError, match="refused the session"):
                await OpcUaConnector(cfg("wrong"), "agent-1", tmp_path / "agent").run(buf)
