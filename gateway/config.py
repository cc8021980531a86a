"""Configuration of the site gateway (``zhizao gateway --config gateway.toml``).

Every option, its default and its meaning is in ``gateway/sample-gateway.toml``. The ``[buffer]``
and ``[uplink.http]`` tables are the edge agent's own models (:class:`~edge_agent.buffer.BufferConfig`,
:class:`~edge_agent.uplinks.http.HttpUplinkConfig`): the gateway reuses the agent's buffer and
HTTP uplink, so their options are identical.

Environment variables: ``${NAME}`` in any string value (not in keys) is replaced by the variable
``NAME`` of the process that loads the config (``token = "${ZHIZAO_TOKEN}"``, ``password =
"${BROKER_PASSWORD}"``), before validation, by :func:`zhizao.config.expand_env` as in the edge
agent's config; ``$${`` is a literal ``${``. A variable that is not set, or a ``${`` without a
valid name and ``}``, is a config error naming the key and the variable (``uplink.http.token:
environment variable ZHIZAO_TOKEN is not set``; exit 2).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from edge_agent.buffer import BufferConfig
from edge_agent.config_paths import check_file_in_writable_folder, host_context, on_this_host
from edge_agent.connectors.mqtt import BrokerConnection
from edge_agent.mapping import JsonMapping, check_mappings
from edge_agent.uplinks.http import HttpUplinkConfig
from zhizao.config import StrictModel, expand_env, read_document, validation_problems
from zhizao.errors import ConfigError
from zhizao.model import SEGMENT_PATTERN

_DEFAULT_BUFFER = "/var/lib/zhizao/gateway-buffer.sqlite"
"""Where every release so far kept it (an upgrade must find the old backlog): the systemd unit's
state folder. Elsewhere set ``buffer.path``; a missing folder is a config error, never created."""


class BrokerConfig(BrokerConnection):
    """The plant broker and the gateway's persistent MQTT v5 session on it; ``client_id`` defaults
    to ``<gateway id>``."""

    share_group: str = Field("zhizao-gateways", pattern=r"^[A-Za-z0-9_.\-]{0,64}$")
    """``$share/<group>/`` for data and raw topics, so gateways of one group split the load;
    ``""`` subscribes plainly (every gateway gets every message)."""
    session_expiry_s: int = Field(7 * 86400, ge=60)
    """How long the broker keeps the session (and queues QoS 1 messages) while the gateway is away."""
    receive_maximum: int = Field(1000, ge=1, le=65535)
    """MQTT v5 Receive Maximum sent in CONNECT: QoS 1 messages the broker may have in flight to the
    gateway, un-acknowledged, at once (messages wait for their group commit before the PUBACK, so
    a small window throttles intake). The broker may cap it (Mosquitto: ``max_inflight_messages``)."""
    subscribe_data: bool = True
    """Subscribe to the unified namespace ``zhizao/v1/+/+/+/+`` (agents' wire-format batches)."""
    subscribe_status: bool = True
    """Subscribe to ``zhizao/v1/agents/+/status`` (birth/last will; never shared: retained)."""
    mappings: list[JsonMapping] = Field(default_factory=list)
    """Raw vendor topics, mapped with the edge agent's payload mappings (optional); checked as the
    agent's MQTT connector checks them (:func:`~edge_agent.mapping.check_mappings`)."""

    @field_validator("mappings")
    @classmethod
    def _mappings(cls, v: list[JsonMapping]) -> list[JsonMapping]:
        check_mappings(v)  # unique names, none shadowed, no two subscriptions delivering one message
        return v


class UplinkConfig(StrictModel):
    """Northbound: the agent's HTTP uplink to ingest."""

    http: HttpUplinkConfig
    concurrency: int = Field(4, ge=1, le=64)
    """Requests in flight to ingest at once (with ``http.bulk``, each carries every agent batch that
    waited, within the ``bulk_max_*`` limits; without, one agent batch each)."""


class HealthConfig(StrictModel):
    """``GET /healthz`` (JSON, 503 when unhealthy), ``/metrics`` (Prometheus), ``/fleet`` (JSON)."""

    host: str = "127.0.0.1"
    port: int = Field(9109, ge=0, le=65535)
    """0 picks a free port (tests); the chosen port is logged."""
    stall_after_s: float = Field(120.0, gt=0)
    """Unhealthy when the oldest buffered sample is older than this while ingest is failing."""


class GatewayConfig(StrictModel):
    """The whole gateway configuration (see ``gateway/sample-gateway.toml``)."""

    id: str = Field(pattern=SEGMENT_PATTERN)
    """This gateway's id: producer of its own batches, MQTT client id, fleet asset name."""
    site: str = Field(pattern=SEGMENT_PATTERN)
    """Site of the gateway (its fleet asset ``<site>/fleet/gateways/<id>``), and of agents whose
    status message names no site."""
    broker: BrokerConfig
    buffer: BufferConfig = Field(default_factory=lambda: {"path": _DEFAULT_BUFFER}, validate_default=True)
    """Default ``/var/lib/zhizao/gateway-buffer.sqlite`` (as in every release: an upgraded gateway
    finds its backlog); its folder must exist and be writable on the machine that loads the config."""
    uplink: UplinkConfig
    deadletter_path: Path = Field(Path("/var/lib/zhizao/gateway-deadletter.jsonl"), validate_default=True)
    """Refused payloads and samples; default ``/var/lib/zhizao/gateway-deadletter.jsonl``; its folder
    must exist and be writable on the machine that loads the config (never created)."""
    health: HealthConfig = Field(default_factory=HealthConfig)
    fleet_report_s: float = Field(30.0, gt=0)
    """Interval of the gateway's own fleet-health samples (``zhizao.fleet`` convention)."""
    window_samples: int = Field(10_000, ge=10, le=1_000_000)
    """Rows read at a time when moving an older gateway's frames into records at start."""

    @field_validator("buffer", mode="before")
    @classmethod
    def _default_buffer_path(cls, v: object) -> object:
        """``[buffer]`` without a path: the default one (checked like a given one)."""
        if isinstance(v, dict) and v.get("path") is None:
            return {**v, "path": _DEFAULT_BUFFER}
        return v

    @field_validator("buffer")
    @classmethod
    def _buffer_path(cls, v: BufferConfig) -> BufferConfig:
        if v.path is None:  # a BufferConfig built in code without a path
            v.path = Path(_DEFAULT_BUFFER)
        return v

    @field_validator("deadletter_path")
    @classmethod
    def _deadletter_folder(cls, v: Path, info: ValidationInfo) -> Path:
        return check_file_in_writable_folder(v) if on_this_host(info) else v

    def plaintext_warnings(self) -> list[str]:
        """One line per secret that would cross the network unencrypted to a host that is not this
        machine's loopback (the broker password without ``[broker.tls]``, the bearer token over an
        ``http://`` ingest URL), naming its key and the host; none for a connection with
        ``allow_plaintext = true``. Printed by ``--check``, logged at start; never a refusal."""
        return self.broker.plaintext_warnings("broker") + self.uplink.http.plaintext_warnings("uplink.http")


def load(path: str | Path, *, on_this_host: bool = False) -> GatewayConfig:
    """Read and validate a gateway config file; ``ConfigError`` lists every problem by key.

    ``on_this_host`` (``--check`` and the run): also check, naming each key, the paths on this
    machine — ``buffer.path`` and ``deadletter_path`` in an existing writable folder,
    ``uplink.http.token_file`` an existing readable file (:mod:`edge_agent.config_paths`);
    without it a config meant for another machine (a container's) can be validated here.
    ``${NAME}`` in string values comes from the environment (see the module docstring).
    """
    p = Path(path)
    doc, problems = expand_env(read_document(p))
    if problems:
        raise ConfigError(str(p), problems)
    try:
        return GatewayConfig.model_validate(doc, context=host_context() if on_this_host else None)
    except ValidationError as exc:
        raise ConfigError(str(p), validation_problems(exc)) from exc
