"""Configuration of the OPC UA connector (``[connectors.opcua]``); see ``sample.toml``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from edge_agent.config_paths import untrusted_servers_ok
from zhizao.config import (
    ExistingFile,
    ExistingFolder,
    FileInExistingFolder,
    StrictModel,
    is_loopback_host,
    url_host,
)
from zhizao.model import AssetPath, valid_signal

Policy = Literal["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
_FP_RE = re.compile(r"^(sha256:)?([0-9A-Fa-f]{2}:?){32}$")


def normalise_fingerprint(text: str) -> str:
    """``sha256:AB:CD:...`` or plain hex → lower-case hex without separators."""
    return text.lower().removeprefix("sha256:").replace(":", "")


class SecurityConfig(StrictModel):
    """Secure channel. ``mode = "None"`` is plain; anything else needs a policy and a trust anchor."""

    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Policy | None = None
    client_cert: FileInExistingFolder | None = None
    """DER certificate of this agent; generated once (with ``client_key``) if missing, in a folder
    that must exist (a mistyped path is an error, never a new folder). Default:
    ``<state_dir>/pki/<connector>-cert.der`` (``pki`` created when missing)."""
    client_key: FileInExistingFolder | None = None
    application_uri: str | None = None
    """Must match the certificate; default ``urn:zhizao:agent:<agent id>``."""
    server_cert_fingerprints: list[str] = Field(default_factory=list)
    """Pinned server certificates: SHA-256 fingerprints (``sha256:AB:CD:...``)."""
    trust_dir: ExistingFolder | None = None
    """Folder of trusted server certificates (DER or PEM); must exist."""

    @field_validator("server_cert_fingerprints")
    @classmethod
    def _fps(cls, v: list[str]) -> list[str]:
        for fp in v:
            if not _FP_RE.fullmatch(fp):
                raise ValueError(f"{fp!r} is not a SHA-256 fingerprint (64 hex digits, ':' allowed)")
        return [normalise_fingerprint(fp) for fp in v]

    @model_validator(mode="after")
    def _coherent(self, info: ValidationInfo) -> SecurityConfig:
        if self.mode == "None":
            if self.policy is not None:
                raise ValueError("policy given with mode = 'None'; set mode = 'Sign' or 'SignAndEncrypt'")
            return self
        if self.policy is None:
            raise ValueError(f"mode = {self.mode!r} needs a policy ({', '.join(Policy.__args__)})")  # type: ignore[attr-defined]
        if not self.server_cert_fingerprints and self.trust_dir is None and not untrusted_servers_ok(info):
            raise ValueError("a secure mode needs server_cert_fingerprints or trust_dir to trust the server "
                             "('zhizao agent certs --config F --server' shows its certificate to pin)")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        return self


class IdentityConfig(StrictModel):
    """User identity for the session."""

    type: Literal["anonymous", "username", "certificate"] = "anonymous"
    username: str | None = None
    password: SecretStr | None = None
    cert: ExistingFile | None = None
    """For ``type = "certificate"``: the user certificate (DER or PEM); must exist."""
    key: ExistingFile | None = None

    @model_validator(mode="after")
    def _complete(self) -> IdentityConfig:
        if self.type == "username" and (self.username is None or self.password is None):
            raise ValueError("identity type 'username' needs username and password")
        if self.type == "certificate" and (self.cert is None or self.key is None):
            raise ValueError("identity type 'certificate' needs cert and key")
        return self


class NodeSpec(StrictModel):
    """One node by NodeId. ``asset``/``signal`` default from a string id ``site/area/line/machine/signal``."""

    node_id: str
    asset: str | None = None
    signal: str | None = None
    unit: str | None = None

    @model_validator(mode="after")
    def _names(self) -> NodeSpec:
        if self.asset is not None:
            AssetPath.parse(self.asset)
        if self.signal is not None and not valid_signal(self.signal):
            raise ValueError(f"signal {self.signal!r} is not a valid signal name")
        return self


class BrowseSpec(StrictModel):
    """Nodes by browse-path pattern below ``Objects``: levels separated by ``/``, ``*``/``?`` wildcards.

    ``asset`` and ``signal`` are templates over the matched path's levels, ``{0}`` being the first
    level below ``Objects``; by default the last five levels are site/area/line/machine/signal.
    """

    pattern: str = Field(pattern=r"^Objects/.+")
    asset: str | None = None
    signal: str | None = None


class DeadbandConfig(StrictModel):
    type: Literal["none", "absolute", "percent"] = "none"
    value: float = Field(0.0, ge=0)


class OpcUaConnectorConfig(StrictModel):
    """One OPC UA server; see ``edge_agent/connectors/opcua/sample.toml`` for every option."""

    type: Literal["opcua"] = "opcua"
    name: str = Field("opcua", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: float = Field(500.0, gt=0)
    sampling_interval_ms: float = Field(250.0, ge=0)
    queue_size: int = Field(10, ge=1)
    deadband: DeadbandConfig = Field(default_factory=DeadbandConfig)
    trigger: Literal["status", "status_value", "status_value_timestamp"] = "status_value_timestamp"
    """What makes a new notification: with ``status_value_timestamp`` every new source timestamp
    is reported even when the value repeats (nothing the machine reported is lost)."""
    subscribe_batch_size: int = Field(500, ge=1, le=10_000)
    poll_interval_ms: float = Field(1000.0, gt=0)
    read_batch_size: int = Field(500, ge=1, le=10_000)
    nodes: list[NodeSpec] = Field(default_factory=list)
    browse: list[BrowseSpec] = Field(default_factory=list)
    browse_cache_ttl_s: float = Field(3600.0, ge=0)
    """Browse results are reused across reconnects and restarts for this long."""
    stale_after_s: float | None = Field(None, gt=0)
    """Re-subscribe when a subscription delivered nothing (not even a keep-alive) this long;
    default 10 publishing intervals, at least 5 s."""
    request_timeout_s: float = Field(10.0, gt=0)
    max_held_samples: int = Field(100_000, ge=1)
    """Samples kept in memory at most while buffer commits fail (disk full): they are handed to
    the buffer again after about a second, backing off to every 30 s, whether an OPC UA session
    runs or not, until a commit succeeds; beyond this many the oldest are
    dropped, counted as ``zhizao_agent_connector_samples_dropped_total{reason="commit_failed"}``
    and logged."""
    allow_plaintext: bool = False
    """Identity ``username`` with security ``mode = "None"`` to a server that is not this machine's
    loopback is refused unless this is ``true``: the channel is neither encrypted nor is the server
    authenticated, so the password reaches whoever answers at the endpoint, in clear when the
    server's user-token policy does not encrypt it. Prefer ``mode = "SignAndEncrypt"`` (a policy and
    the server's pinned certificate: ``zhizao agent certs --server``); ``true`` only on a network
    you trust."""

    @model_validator(mode="after")
    def _something(self) -> OpcUaConnectorConfig:
        if not self.nodes and not self.browse:
            raise ValueError("give nodes and/or browse patterns to read")
        return self

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> OpcUaConnectorConfig:
        if self.identity.type != "username" or self.security.mode != "None" or self.allow_plaintext:
            return self
        host, where = url_host(self.endpoint)
        if is_loopback_host(host):
            return self
        raise ValueError(
            f"identity type 'username' with security mode 'None' would send the password "
            f"to {where} unprotected (no encryption, server not authenticated): set "
            f"security.mode = 'SignAndEncrypt' with a policy and the server's pinned certificate "
            f"('zhizao agent certs --server'), or allow_plaintext = true on this connector if its network "
            f"is trusted"
        )

    @property
    def stale_after(self) -> float:
        return self.stale_after_s or max(5.0, 10 * self.publishing_interval_ms / 1000)
