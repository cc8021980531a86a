"""The MQTT topic tree: data, alert and status topics are told apart whatever their level count."""

from __future__ import annotations

import pytest

from zhizao import topics
from zhizao.model import AssetPath


def test_a_lines_alert_topic_matches_the_data_filter_but_is_no_data_topic() -> None:
    topic = topics.alert_topic("plant1/a1/line1")
    assert topic == "zhizao/v1/alerts/plant1/a1/line1"
    assert len(topic.split("/")) == len(topics.DATA_FILTER.split("/"))  # why the gateway must skip it
    assert topics.is_alert_topic(topic)
    with pytest.raises(ValueError, match="namespace of alerts, no site may be named 'alerts'"):
        topics.asset_of_data_topic(topic)
    assert not topics.is_alert_topic(topics.data_topic(AssetPath("plant1", "a1", "line1", "cnc-1")))


def test_alerts_and_agents_are_namespaces_not_sites() -> None:
    assert {"alerts", "agents"} == topics.RESERVED_SITES
    for site in topics.RESERVED_SITES:
        with pytest.raises(ValueError, match=f"no site may be named '{site}'"):
            topics.asset_of_data_topic(f"zhizao/v1/{site}/a1/line1/m1")
    asset = AssetPath("plant1", "a1", "line1", "cnc-1")
    assert topics.asset_of_data_topic(topics.data_topic(asset)) == asset


def test_status_topics_have_exactly_one_agent_level() -> None:
    assert topics.agent_of_status_topic(topics.status_topic("agent-7")) == "agent-7"
    assert topics.agent_of_status_topic("zhizao/v1/agents/a1/line1/status") is None  # 4 levels: not status
    assert topics.agent_of_status_topic("zhizao/v1/agents//status") is None
    assert topics.agent_of_status_topic("zhizao/v1/plant1/a1/line1/status") is None
