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


def test_each_rule_of_an_asset_has_its_own_alert_topic_of_one_level() -> None:
    from datetime import UTC, datetime

    from zhizao.events import Event, EventSource

    start = datetime(2026, 11, 24, tzinfo=UTC)
    kpi = Event(id="e1", source=EventSource.KPI, rule="oee-low", asset="plant1/a1/line1", start=start)
    assert topics.event_topic(kpi) == "zhizao/v1/alerts/plant1/a1/line1/kpi/oee-low"
    assert topics.event_topic(kpi).startswith(topics.alert_topic(kpi.asset) + "/")
    odd = kpi.model_copy(update={"source": EventSource.ANOMALY, "rule": "a/b+#%"})
    assert topics.event_topic(odd) == "zhizao/v1/alerts/plant1/a1/line1/anomaly/a%2Fb%2B%23%25"
    site = kpi.model_copy(update={"asset": "plant1"})  # a site's alerts match the data filter
    assert len(topics.event_topic(site).split("/")) == len(topics.DATA_FILTER.split("/"))


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
