"""``zhizao agent certs``: create (once) and show the OPC UA client certificate of each connector,
and show the certificates OPC UA servers present, to pin them (trust on first use).

Prints, per OPC UA connector: the certificate path, application URI and SHA-256 fingerprint (to
give the server administrator). With ``server=True`` also, for each connector's endpoint (its
policy's endpoints only, when it has one), every certificate the server presents: fingerprint,
subject, validity, the endpoints presenting it and whether the connector trusts it — the line to
pin it, after checking it with the administrator. With ``server="opc.tcp://..."`` that endpoint's
certificates instead (no config needed). Nothing has to be pinned first: a secure connector without
``server_cert_fingerprints`` or ``trust_dir`` is accepted by this command (not by ``check-config``
or the run), and the certificates are fetched with the unsecured discovery service
(``GetEndpoints``) every server offers.
"""

from __future__ import annotations

from edge_agent.config import AgentConfig
from edge_agent.connectors.opcua.config import OpcUaConnectorConfig
from zhizao.errors import ConnectionLost, ZhizaoError


async def show_certificates(cfg: AgentConfig | None, *, server: bool | str = False) -> int:
    """Print the certificates (see the module docstring); 1 when a server could not be reached."""
    from edge_agent.connectors.opcua import OpcUaConnector
    from edge_agent.connectors.opcua.security import ensure_client_certificate

    connectors = [c for c in cfg.connectors if isinstance(c, OpcUaConnectorConfig)] if cfg else []
    status = 0
    for c in connectors:
        assert cfg is not None
        conn = OpcUaConnector(c, cfg.agent.id, cfg.agent.state_dir)
        fp = await ensure_client_certificate(conn.client_cert, conn.client_key, conn.application_uri)
        print(f"[{c.name}] {c.endpoint} security {c.security.mode}/{c.security.policy or '-'}")
        print(f"  client certificate: {conn.client_cert}")
        print(f"  application URI:    {conn.application_uri}")
        print(f"  fingerprint:        sha256:{fp}")
        if server is True and not await _show_server(c.endpoint, c.request_timeout_s, c, indent="  "):
            status = 1
    if isinstance(server, str):
        print(f"{server}")
        same = [c for c in connectors if c.endpoint == server]
        if not await _show_server(server, same[0].request_timeout_s if same else 10.0,
                                  same[0] if same else None, indent="  ", all_policies=True):
            status = 1
    elif cfg is not None and not connectors:
        print("no OPC UA connector in this config")
    return status


async def _show_server(endpoint: str, request_timeout_s: float, c: OpcUaConnectorConfig | None, *,
                       indent: str, all_policies: bool = False) -> bool:
    """Print the certificates of ``endpoint`` (pinned or not by ``c``); False if unreachable."""
    from edge_agent.connectors.opcua.security import server_certificates, trusted_fingerprints

    policy = None if all_policies or c is None else c.security.policy
    try:
        certs = await server_certificates(endpoint, request_timeout_s, policy)
    except ConnectionLost as exc:
        print(f"{indent}server: unreachable ({exc})")
        return False
    try:
        trusted = trusted_fingerprints(c.security) if c is not None else set()
    except ZhizaoError as exc:  # a trust_dir file unreadable: say so, still show the certificate
        print(f"{indent}trust_dir: {exc}")
        trusted = set(c.security.server_cert_fingerprints) if c is not None else set()
    if not certs:
        print(f"{indent}server certificate: none presented"
              f"{f' on its {policy} endpoints' if policy else ' (no secure endpoint)'}")
    for cert in certs:
        subject, not_before, not_after = cert.describe()
        state = "pinned" if cert.sha256 in trusted else "not pinned"
        print(f"{indent}server certificate: sha256:{cert.fingerprint} ({state})")
        print(f"{indent}  subject:   {subject}")
        print(f"{indent}  valid:     {not_before} to {not_after}")
        print(f"{indent}  endpoints: {', '.join(cert.endpoints)}")
        if cert.sha256 not in trusted:
            print(f"{indent}  to trust it, once checked with the server administrator, "
                  "in [connectors.security]:")
            print(f'{indent}    server_cert_fingerprints = ["sha256:{cert.fingerprint}"]')
    return True
