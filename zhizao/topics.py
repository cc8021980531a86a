"""The MQTT unified-namespace topic tree zhizao publishes and subscribes.

- ``zhizao/v1/<site>/<area>/<line>/<machine>``: batches (wire format) of that machine's samples
- ``zhizao/v1/alerts/<site>/<area>/<line>/<machine>``: alert/anomaly events (JSON)
- ``zhizao/v1/agents/<agent-id>/status``: an agent's birth and last-will status (JSON, retained)

Data topics have exactly four levels below ``zhizao/v1``, alerts five and status three, so the
filters below never overlap whatever the site is called.
"""

from __future__ import annotations

from typing import Final

from zhizao.model import AssetPath

ROOT: Final = "zhizao/v1"
DATA_FILTER: Final = f"{ROOT}/+/+/+/+"
ALERTS_FILTER: Final = f"{ROOT}/alerts/#"
STATUS_FILTER: Final = f"{ROOT}/agents/+/status"


def data_topic(asset: AssetPath) -> str:
    return f"{ROOT}/{asset}"


def alert_topic(asset: AssetPath | str) -> str:
    return f"{ROOT}/alerts/{asset}"


def status_topic(agent_id: str) -> str:
    return f"{ROOT}/agents/{agent_id}/status"


def asset_of_data_topic(topic: str) -> AssetPath:
    """The asset of a data topic; ``ValueError`` if ``topic`` is not one."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        raise ValueError(f"topic {topic!r} is not under {ROOT}")
    return AssetPath.parse(topic[len(prefix) :])
