"""The MQTT unified-namespace topic tree zhizao publishes and subscribes.

- ``zhizao/v1/<site>/<area>/<line>/<machine>``: batches (wire format) of that machine's samples
- ``zhizao/v1/alerts/<asset>``: alert/anomaly events (JSON) of a site, area, line or machine
- ``zhizao/v1/agents/<agent-id>/status``: an agent's birth and last-will status (JSON, retained)

Data topics have exactly four levels below ``zhizao/v1`` and status three. Alert topics have one
to four levels below ``zhizao/v1/alerts`` (an event's asset is a site, area, line or machine), so a
line's alerts, ``zhizao/v1/alerts/<site>/<area>/<line>``, *do* match :data:`DATA_FILTER`: a
subscriber to it must skip :func:`is_alert_topic` topics (the site gateway does). For the same
reason ``alerts`` and ``agents`` are namespaces, not sites (:data:`RESERVED_SITES`): a site so
named would publish its data where alerts or agent status are read; :func:`asset_of_data_topic`
refuses such a topic.
"""

from __future__ import annotations

from typing import Final

from zhizao.model import AssetPath

ROOT: Final = "zhizao/v1"
DATA_FILTER: Final = f"{ROOT}/+/+/+/+"
ALERTS_FILTER: Final = f"{ROOT}/alerts/#"
STATUS_FILTER: Final = f"{ROOT}/agents/+/status"
ALERTS_PREFIX: Final = f"{ROOT}/alerts/"
STATUS_PREFIX: Final = f"{ROOT}/agents/"
RESERVED_SITES: Final = frozenset({"alerts", "agents"})
"""Levels under ``zhizao/v1`` that are namespaces: no site may be named so on MQTT."""


def data_topic(asset: AssetPath) -> str:
    return f"{ROOT}/{asset}"


def alert_topic(asset: AssetPath | str) -> str:
    return f"{ROOT}/alerts/{asset}"


def status_topic(agent_id: str) -> str:
    return f"{ROOT}/agents/{agent_id}/status"


def is_alert_topic(topic: str) -> bool:
    """``topic`` is under ``zhizao/v1/alerts/`` (events, whatever their level count)."""
    return topic.startswith(ALERTS_PREFIX)


def agent_of_status_topic(topic: str) -> str | None:
    """The agent id of ``zhizao/v1/agents/<agent-id>/status``, ``None`` for any other topic."""
    if not (topic.startswith(STATUS_PREFIX) and topic.endswith("/status")):
        return None
    agent_id = topic[len(STATUS_PREFIX):-len("/status")]
    return agent_id if agent_id and "/" not in agent_id else None


def asset_of_data_topic(topic: str) -> AssetPath:
    """The asset of a data topic; ``ValueError`` if ``topic`` is not one (also for a topic under
    the ``alerts`` or ``agents`` namespace, :data:`RESERVED_SITES`)."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        raise ValueError(f"topic {topic!r} is not under {ROOT}")
    asset = AssetPath.parse(topic[len(prefix) :])
    if asset.site in RESERVED_SITES:
        kind = "alerts" if asset.site == "alerts" else "agent status"
        raise ValueError(f"topic {topic!r} is not a data topic: {ROOT}/{asset.site}/ is the namespace of "
                         f"{kind}, no site may be named {asset.site!r}")
    return asset
