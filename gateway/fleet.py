"""Fleet state: agents' birth / last-will status messages, kept in memory and forwarded as samples.

Contract for the status message an agent publishes (retained, QoS 1) on
``zhizao/v1/agents/<agent-id>/status`` (:func:`zhizao.topics.status_topic`) — a JSON object:

=================== ========== ===========================================================
key                 required   meaning
=================== ========== ===========================================================
``status``          yes        ``"online"`` (birth at each connect, and periodic refreshes) or
                               ``"offline"`` (the last will, and the clean-shutdown message);
                               ``state`` is accepted as a synonym
``site``            no         the agent's site (default: the gateway's ``site``)
``version``         no         the agent's software version
``config_hash``     no         hash of the agent's effective configuration
``backlog_samples`` no         samples waiting in the agent's buffer (``backlog`` accepted too,
                               as ``edge_agent`` sends it)
``backlog_age_s``   no         age in s of the oldest of them
``agent``, ``ts``   no         ignored (the topic names the agent; the gateway's clock dates it)
=================== ========== ===========================================================

Unknown keys are ignored (newer agents may say more). The gateway turns each status message into
samples on ``<site>/fleet/agents/<agent-id>`` following the fleet-health convention of
:mod:`zhizao.fleet`: ``fleet.up`` 1 or 0, ``fleet.backlog_samples``, ``fleet.backlog_age_s``,
plus ``fleet.version`` and ``fleet.config_hash`` (strings). They are dated with the gateway's
receive time (one clock orders births and wills) and framed as batch
``producer="fleet.<agent-id>"``, ``batch_id="status-<digest of topic and payload>"``: a retained
status re-read after a reconnect, or seen by two gateways, is the same batch, which ingest
stores once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from zhizao import fleet as convention
from zhizao.model import Batch, Sample, valid_segment

VERSION: Final = "fleet.version"
CONFIG_HASH: Final = "fleet.config_hash"
AGENT_PREFIX: Final = "fleet."


class StatusError(ValueError):
    """A status message that cannot be used (the reason names the key)."""


@dataclass(slots=True)
class AgentState:
    """What the gateway knows of one agent."""

    agent_id: str
    site: str
    state: Literal["online", "offline"]
    version: str | None = None
    config_hash: str | None = None
    backlog_samples: int | None = None
    backlog_age_s: float | None = None
    last_status: float = 0.0
    last_seen: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id, "site": self.site, "state": self.state, "version": self.version,
            "config_hash": self.config_hash, "backlog_samples": self.backlog_samples,
            "backlog_age_s": self.backlog_age_s, "last_status": _iso(self.last_status),
            "last_seen": _iso(self.last_seen),
        }


def _iso(t: float) -> str | None:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t else None


def parse_status(agent_id: str, payload: bytes, default_site: str) -> AgentState:
    """An :class:`AgentState` from one status payload; ``StatusError`` naming the bad key."""
    if not valid_segment(agent_id):
        raise StatusError(f"agent id {agent_id!r} in the topic is not a valid path segment")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise StatusError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StatusError("status must be a JSON object")
    state = doc.get("status", doc.get("state"))
    if state not in ("online", "offline"):
        raise StatusError(f"status: must be 'online' or 'offline', got {state!r}")
    site = doc.get("site", default_site)
    if not isinstance(site, str) or not valid_segment(site):
        raise StatusError(f"site: {site!r} is not a valid path segment")
    out = AgentState(agent_id, site, state)
    for key, kind in (("version", str), ("config_hash", str)):
        value = doc.get(key)
        if value is not None:
            if not isinstance(value, kind) or len(value) > 256:
                raise StatusError(f"{key}: must be a string of at most 256 characters")
            setattr(out, key, value)
    for key in ("backlog_samples", "backlog_age_s"):
        value = doc.get(key, doc.get("backlog") if key == "backlog_samples" else None)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise StatusError(f"{key}: must be a number >= 0, got {value!r}")
            setattr(out, key, int(value) if key == "backlog_samples" else float(value))
    return out


def status_batch(topic: str, payload: bytes, st: AgentState, ts: datetime) -> Batch:
    """The fleet samples of one status message, as a batch with a deterministic identity."""
    asset = convention.fleet_asset(st.site, st.agent_id, "agents")
    values: list[tuple[str, int | float | str, str | None]] = [
        (convention.UP, 1 if st.state == "online" else 0, None)]
    if st.backlog_samples is not None:
        values.append((convention.BACKLOG_SAMPLES, st.backlog_samples, None))
    if st.backlog_age_s is not None:
        values.append((convention.BACKLOG_AGE_S, st.backlog_age_s, "s"))
    if st.version is not None:
        values.append((VERSION, st.version, None))
    if st.config_hash is not None:
        values.append((CONFIG_HASH, st.config_hash, None))
    digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=12).hexdigest()
    samples = tuple(Sample(asset, signal, ts, value, unit) for signal, value, unit in values)
    return Batch(f"{AGENT_PREFIX}{st.agent_id}", f"status-{digest}", 0, samples)


class FleetState:
    """Every agent the gateway has heard of (status messages and data batches).

    ``last_seen`` is the time of the agent's last status message or data batch (by producer id).
    """

    def __init__(self) -> None:
        self.agents: dict[str, AgentState] = {}

    def status(self, st: AgentState, now: float | None = None) -> None:
        now = now or time.time()
        st.last_status = st.last_seen = now
        self.agents[st.agent_id] = st

    def seen(self, producer: str, now: float | None = None) -> None:
        agent = self.agents.get(producer)
        if agent is not None:
            agent.last_seen = now or time.time()

    def counts(self) -> dict[str, int]:
        out = {"online": 0, "offline": 0}
        for a in self.agents.values():
            out[a.state] += 1
        return out

    def to_list(self) -> list[dict[str, Any]]:
        return [self.agents[k].to_dict() for k in sorted(self.agents)]
