"""The agent's one TOML config, validated before anything connects.

Top-level tables: ``[agent]``, ``[buffer]``, ``[deadletter]``, ``[health]``, ``[[connectors]]``
(each with ``type = "opcua"`` or ``"mqtt"``) and ``[uplink]`` (``type = "http"`` or ``"mqtt"``).
``edge_agent/sample-agent.toml`` documents every key with its default. :func:`load_agent_config`
raises :class:`~zhizao.errors.ConfigError` listing every problem with its dotted key.

Environment variables: ``${NAME}`` in any string value (not in keys) is replaced by the variable
``NAME`` of the process that loads the config (``token = "${ZHIZAO_TOKEN}"``, ``url =
"https://${INGEST_HOST}:8443"``), before validation; ``$${`` is a literal ``${``. A variable that
is not set, or a ``${`` without a valid name and ``}``, is a config error naming the key and the
variable (``uplink.token: environment variable ZHIZAO_TOKEN is not set``; exit 2). The config
hash is of the file as written (values from the environment do not change it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from edge_agent.buffer import BufferConfig
from edge_agent.config_paths import (
    check_file_in_writable_folder,
    check_writable_folder,
    host_context,
    on_this_host,
)
from edge_agent.connectors.mqtt.config import MqttConnectorConfig
from edge_agent.connectors.opcua.config import OpcUaConnectorConfig
from edge_agent.uplinks.http.config import HttpUplinkConfig
from edge_agent.uplinks.mqtt.config import MqttUplinkConfig
from zhizao.config import StrictModel, read_document, validation_problems
from zhizao.config import expand_env as expand_env  # noqa: PLC0414 - moved there, re-exported
from zhizao.errors import ConfigError
from zhizao.model import SEGMENT_PATTERN, valid_segment

ConnectorConfig = Annotated[OpcUaConnectorConfig | MqttConnectorConfig, Field(discriminator="type")]
UplinkConfig = Annotated[HttpUplinkConfig | MqttUplinkConfig, Field(discriminator="type")]


class AgentSection(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
    """Producer id of this agent's batches (ingest deduplicates on it): unique per box, stable."""
    state_dir: Path = Field(Path("/var/lib/zhizao"), validate_default=True)
    """Buffer, dead-letter file, certificates, browse cache (defaults of their paths): an existing,
    writable folder (checked on the machine that loads the config; never created). Default
    ``/var/lib/zhizao``, as in every release (an upgraded agent finds its backlog there; a relative
    default stranded it in the upgrade review); ``"."`` is the working directory."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    site: str | None = Field(None, pattern=SEGMENT_PATTERN)
    """The agent's site: when set, the agent reports its own health every ``fleet_report_s`` as
    samples on ``<site>/fleet/agents/<id>`` through its uplink (:mod:`zhizao.fleet`, the *Edge
    fleet* dashboard's convention); unset, it does not (its metrics endpoint still has them)."""
    fleet_report_s: float = Field(30.0, gt=0)

    @field_validator("state_dir")
    @classmethod
    def _state_dir_exists(cls, v: Path, info: ValidationInfo) -> Path:
        return check_writable_folder(v) if on_this_host(info) else v

    @model_validator(mode="after")
    def _id_is_a_fleet_segment(self) -> AgentSection:
        if self.site is not None and not valid_segment(self.id):
            raise ValueError(f"with site set, the id is a path segment of <site>/fleet/agents/<id>: "
                             f"{self.id!r} may hold only letters, digits, '_', '.', '-'")
        return self


class DeadLetterConfig(StrictModel):
    path: Path | None = None
    """Default ``<state_dir>/deadletter.jsonl``; its folder must exist and be writable."""
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)

    @field_validator("path")
    @classmethod
    def _folder_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return check_file_in_writable_folder(v) if v is not None and on_this_host(info) else v


class HealthConfig(StrictModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    interval_s: float = Field(10.0, gt=0)
    stale_intervals: int = Field(3, ge=1)
    """``/healthz`` turns unhealthy when no data was read, or a backlog was not sent, for this
    many intervals."""
    connector_stale_after_s: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """Per connector (by ``name``), its own window instead of ``stale_intervals × interval_s``:
    seconds without data before ``/healthz`` names it (an OPC UA subscription on slowly changing
    tags, an MQTT device that publishes only on change); ``0``: never (no staleness check for
    that connector). Names must be those of ``[[connectors]]``."""


class AgentConfig(StrictModel):
    """The whole agent config (see the module docstring)."""

    agent: AgentSection
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    deadletter: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    connectors: list[ConnectorConfig] = Field(min_length=1)
    uplink: UplinkConfig

    @model_validator(mode="after")
    def _defaults_and_names(self) -> AgentConfig:
        if self.buffer.path is None:
            self.buffer.path = self.agent.state_dir / "buffer.sqlite"
        if self.deadletter.path is None:
            self.deadletter.path = self.agent.state_dir / "deadletter.jsonl"
        names = [c.name for c in self.connectors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"connector names must be unique (set name = ...); repeated: {', '.join(dupes)}")
        unknown = sorted(set(self.health.connector_stale_after_s) - set(names))
        if unknown:
            raise ValueError(f"health.connector_stale_after_s: no connector named "
                             f"{', '.join(map(repr, unknown))} (connectors: {', '.join(names)})")
        return self

    def plaintext_warnings(self) -> list[str]:
        """One line per secret that would cross the network unencrypted to a host that is not this
        machine's loopback — an MQTT password without TLS, a bearer token over ``http://`` — naming
        its key and the host; a connection with ``allow_plaintext = true`` gives none. Printed by
        ``check-config`` and logged at start; never a refusal (isolated plant networks exist). An
        OPC UA password over security mode None is refused at validation instead (see
        :class:`~edge_agent.connectors.opcua.config.OpcUaConnectorConfig`)."""
        found: list[str] = []
        for i, c in enumerate(self.connectors):
            if isinstance(c, MqttConnectorConfig):
                found += c.plaintext_warnings(f"connectors[{i}].mqtt")
        return found + self.uplink.plaintext_warnings(f"uplink.{self.uplink.type}")


def load_agent_config(
    path: str | Path, *, on_this_host: bool = False, untrusted_servers_ok: bool = False
) -> tuple[AgentConfig, str]:
    """The validated config and its hash (``sha256:`` of the file, first 12 hex digits).

    ``on_this_host`` (``zhizao agent check-config``, ``certs``, run): also check, naming each key,
    the paths on this machine — ``agent.state_dir`` an existing writable folder, ``buffer.path`` and
    ``deadletter.path`` in one, ``uplink.token_file`` an existing readable file
    (:mod:`edge_agent.config_paths`). ``untrusted_servers_ok`` (``certs``): a secure OPC UA connector
    may have no pinned fingerprint or trust folder yet. ``${NAME}`` in string values comes from
    the environment (:func:`expand_env`).
    """
    p = Path(path)
    doc, problems = expand_env(read_document(p))
    if problems:
        raise ConfigError(str(p), problems)
    context = host_context(untrusted_servers_ok=untrusted_servers_ok) if on_this_host else None
    try:
        cfg = AgentConfig.model_validate(doc, context=context)
    except ValidationError as exc:
        raise ConfigError(str(p), validation_problems(exc)) from exc
    if on_this_host:
        _check_token_not_empty(cfg, str(p))
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    return cfg, f"sha256:{digest}"


def _check_token_not_empty(cfg: AgentConfig, source: str) -> None:
    """An HTTP uplink's ``token_file`` that holds nothing (``deploy/edge/install.sh`` creates it
    empty, with the owner and mode the service needs) is a config error saying what to write."""
    up = cfg.uplink
    if not isinstance(up, HttpUplinkConfig) or up.token_file is None:
        return
    try:
        empty = not up.token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):  # unreadable: named by the field's own check, or at start
        return
    if empty:
        raise ConfigError(source, [("uplink.http.token_file", f"{up.token_file} is empty: write this agent's "
                                    "ingest token into it (zhizao ingest token create --name <agent.id> "
                                    f"--scope write > {up.token_file}, as root: the file keeps its owner "
                                    "and mode)")])
