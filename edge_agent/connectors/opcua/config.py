"""Configuration of the OPC UA connector (``[connectors.opcua]``); see ``sample.toml``."""

from __future__ import annotations

import importlib
import re
from typing import Any, Literal

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


def parse_node_id(text: str) -> Any:
    """``text`` parsed by asyncua's own NodeId parser (``ns=<index>;i=|s=|g=|b=<id>`` or
    ``nsu=<namespace URI>;...``); ``ValueError`` naming the text when it is not a NodeId."""
    ua: Any = importlib.import_module("asyncua.ua")
    try:
        node = ua.NodeId.from_string(text)
    except (ValueError, TypeError, IndexError, ua.UaError) as exc:
        args = [a for a in exc.args if str(a)]
        detail = str(args[-1]) if args else type(exc).__name__
        if "unpack" in detail:
            detail = "every part must be key=value, parts separated by ';'"
        raise ValueError(
            f"{text!r} is not an OPC UA NodeId (ns=<index>;i=|s=|g=|b=<identifier>, or "
            f"nsu=<namespace URI>;i=|s=...): {detail}"
        ) from None
    if getattr(node, "ServerIndex", None):
        raise ValueError(f"{text!r}: srv= (a node of another server) cannot be read")
    return node


def names_from_id(node: Any) -> tuple[str, str] | None:
    """``(asset, signal)`` from a string NodeId of five levels ``site/area/line/machine/signal``."""
    ident = node.Identifier
    if not isinstance(ident, str):
        return None
    parts = ident.split("/")
    if len(parts) != 5:
        return None
    return "/".join(parts[:4]), parts[4]


class NodeSpec(StrictModel):
    """One node by NodeId. ``asset``/``signal`` default from a string id ``site/area/line/machine/signal``."""

    node_id: str
    asset: str | None = None
    signal: str | None = None
    unit: str | None = None

    @model_validator(mode="after")
    def _names(self) -> NodeSpec:
        node = parse_node_id(self.node_id)
        if self.asset is None or self.signal is None:
            derived = names_from_id(node)
            if derived is None:
                missing = " and ".join(k for k in ("asset", "signal") if getattr(self, k) is None)
                raise ValueError(
                    f"node {self.node_id!r}: give {missing} (only a string id of five levels "
                    f"site/area/line/machine/signal names them by itself)"
                )
            if self.asset is None:
                try:
                    AssetPath.parse(derived[0])
                except ValueError as exc:
                    raise ValueError(f"node {self.node_id!r}: asset from the id: {exc}; give asset") from None
            if self.signal is None and not valid_signal(derived[1]):
                raise ValueError(
                    f"node {self.node_id!r}: the id's last level {derived[1]!r} is not a valid signal name "
                    f"(letters, digits, '_', '.', '-', not starting with a digit): give signal"
                )
        if self.asset is not None:
            AssetPath.parse(self.asset)
        if self.signal is not None and not valid_signal(self.signal):
            raise ValueError(f"signal {self.signal!r} is not a valid signal name")
        return self


def _is_wild(level: str) -> bool:
    return any(c in level for c in "*?[")


class BrowseSpec(StrictModel):
    """Nodes by browse-path pattern below ``Objects``: levels separated by ``/``, ``*``/``?`` wildcards.

    ``asset`` and ``signal`` are templates over the matched path's levels, ``{0}`` being the first
    level below ``Objects``; by default the last five levels are site/area/line/machine/signal.
    ``exclude``: browse-name patterns of matched variables to leave out; ``rename``: a matched
    variable's browse name → its signal name (instead of the ``signal`` template). A match whose
    asset or signal is still not a valid name is skipped with one WARNING (the others are read).
    """

    pattern: str = Field(pattern=r"^Objects/.+")
    asset: str | None = None
    signal: str | None = None
    exclude: list[str] = Field(default_factory=list)
    rename: dict[str, str] = Field(default_factory=dict)

    @field_validator("rename")
    @classmethod
    def _renamed(cls, v: dict[str, str]) -> dict[str, str]:
        for name, signal in v.items():
            if not valid_signal(signal):
                raise ValueError(f"rename {name!r} -> {signal!r}: not a valid signal name")
        return v

    @model_validator(mode="after")
    def _templates(self) -> BrowseSpec:
        levels = self.pattern.split("/")[1:]
        n = len(levels)
        # literal levels stand for themselves, wildcard levels for a valid name
        sample = [lv if not _is_wild(lv) else "x" for lv in levels]
        problems: list[str] = []
        for key, template in (("asset", self.asset), ("signal", self.signal)):
            if template is None:
                continue
            try:
                text = template.format(*sample)
            except IndexError:
                problems.append(
                    f"{key} template {template!r}: the pattern {self.pattern!r} has {n} levels below "
                    f"Objects, {{0}} to {{{n - 1}}}"
                )
                continue
            except (KeyError, ValueError, AttributeError) as exc:
                problems.append(
                    f"{key} template {template!r}: only {{0}} to {{{n - 1}}} (levels of the matched path) "
                    f"may be used ({exc})"
                )
                continue
            if key == "asset":
                try:
                    AssetPath.parse(text)
                except ValueError as exc:
                    problems.append(f"asset template {template!r} gives {text!r}: {exc}")
            elif not valid_signal(text):
                problems.append(f"signal template {template!r} gives {text!r}: not a valid signal name")
        if problems:
            raise ValueError("; ".join(problems))
        last = levels[-1]
        if self.signal is None and not self.rename and not _is_wild(last) and not valid_signal(last):
            raise ValueError(f"pattern level {last!r} is not a valid signal name: give signal or rename")
        return self


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
    """Browse results (in ``<state_dir>/<name>-browse.json``, namespace-independent) are reused
    across reconnects and restarts for this long, unless the server restarted meanwhile (its
    ``ServerStatus/StartTime`` changed) or a cached node is unknown to it: then browsed again.
    ``0`` browses on every connect."""
    timestamp: Literal["source", "server", "receive"] = "source"
    """The time a sample is stamped with: ``source`` (the device's SourceTimestamp, else the
    ServerTimestamp, else the time of receipt), ``server`` (the ServerTimestamp, else receipt) or
    ``receive`` (when the agent received it)."""
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
    def _each_node_once(self) -> OpcUaConnectorConfig:
        first: dict[str, int] = {}
        for i, spec in enumerate(self.nodes):
            key = parse_node_id(spec.node_id).to_string()
            if key in first:
                raise ValueError(
                    f"nodes[{first[key]}] and nodes[{i}] both read node {spec.node_id!r}: a node is read "
                    f"once, into one signal; list it once"
                )
            first[key] = i
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
