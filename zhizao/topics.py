"""The MQTT unified-namespace topic tree zhizao publishes and subscribes.

- ``zhizao/v1/<site>/<area>/<line>/<machine>``: batches (wire format) of that machine's samples
- ``zhizao/v1/alerts/<asset>/<source>/<rule>``: alert/anomaly events (JSON) of a site, area, line
  or machine, one topic per rule (:func:`event_topic`), so each rule's retained message is that
  rule's last episode state; subscribe ``zhizao/v1/alerts/<asset>/#`` for an asset's events (with
  those of the assets below it) or :data:`ALERTS_FILTER` for all
- ``zhizao/v1/agents/<agent-id>/status``: an agent's birth and last-will status (JSON, retained)

Data topics have exactly four levels below ``zhizao/v1`` and status three. Alert topics have three
to six levels below ``zhizao/v1/alerts`` (an event's asset is a site, area, line or machine, then
source and rule), so some, e.g. a site's ``zhizao/v1/alerts/<site>/kpi/<rule>``, *do* match
:data:`DATA_FILTER` (as does :func:`alert_topic` of a line): a subscriber to it must skip
:func:`is_alert_topic` topics (the site gateway does). For the same
reason ``alerts`` and ``agents`` are namespaces, not sites (:data:`RESERVED_SITES`): a site so
named would publish its data where alerts or agent status are read; :func:`asset_of_data_topic`
refuses such a topic.
"""

from __future__ import annotations

from typing import Final

from zhizao.events import Event
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
    """The alerts prefix of ``asset``: its events are published below it (:func:`event_topic`);
    subscribe ``alert_topic(asset) + "/#"``."""
    return f"{ROOT}/alerts/{asset}"


_LEVEL_ESCAPES: Final = str.maketrans({"%": "%25", "/": "%2F", "+": "%2B", "#": "%23"})


def event_topic(event: Event) -> str:
    """The topic of ``event``: ``zhizao/v1/alerts/<asset>/<source>/<rule>``, one per rule (and
    source) of an asset, so retained messages of two rules never replace each other. ``%``, ``/``,
    ``+`` and ``#`` in the rule are percent-encoded (one level, never a wildcard)."""
    return f"{alert_topic(event.asset)}/{event.source.value}/{event.rule.translate(_LEVEL_ESCAPES)}"


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
