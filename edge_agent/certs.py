"""``zhizao agent certs``: create (once) and show the OPC UA client certificate of each connector.

Prints, per OPC UA connector with a secure mode: the certificate path, application URI and
SHA-256 fingerprint (to give the server administrator), and with ``fetch_server`` the
fingerprint of the certificate the server presents for the configured policy (to pin in
``security.server_cert_fingerprints`` after checking it with the administrator).
"""

from __future__ import annotations

import hashlib

from edge_agent.config import AgentConfig
from edge_agent.connectors.opcua.config import OpcUaConnectorConfig
from zhizao.errors import ZhizaoError


async def show_certificates(cfg: AgentConfig, *, fetch_server: bool) -> int:
    from asyncua.client.client import Client

    from edge_agent.connectors.opcua import OpcUaConnector
    from edge_agent.connectors.opcua.security import POLICIES, ensure_client_certificate, fingerprint

    found = 0
    status = 0
    for c in cfg.connectors:
        if not isinstance(c, OpcUaConnectorConfig):
            continue
        found += 1
        conn = OpcUaConnector(c, cfg.agent.id, cfg.agent.state_dir)
        fp = await ensure_client_certificate(conn.client_cert, conn.client_key, conn.application_uri)
        print(f"[{c.name}] {c.endpoint} security {c.security.mode}/{c.security.policy or '-'}")
        print(f"  client certificate: {conn.client_cert}")
        print(f"  application URI:    {conn.application_uri}")
        print(f"  fingerprint:        sha256:{fp}")
        if fetch_server:
            client = Client(c.endpoint, timeout=c.request_timeout_s)
            try:
                endpoints = await client.connect_and_get_server_endpoints()
            except (OSError, TimeoutError, ZhizaoError) as exc:
                print(f"  server: unreachable ({exc})")
                status = 1
                continue
            uri = POLICIES[c.security.policy].URI if c.security.policy else None
            seen: set[str] = set()
            for ep in endpoints:
                if not ep.ServerCertificate or (uri and ep.SecurityPolicyUri != uri):
                    continue
                sfp = fingerprint(ep.ServerCertificate)
                if sfp in seen:
                    continue
                seen.add(sfp)
                pinned = (
                    hashlib.sha256(ep.ServerCertificate).hexdigest() in c.security.server_cert_fingerprints
                )
                print(f"  server certificate: sha256:{sfp}{' (pinned)' if pinned else ' (not pinned)'}")
    if not found:
        print("no OPC UA connector in this config")
    return status
