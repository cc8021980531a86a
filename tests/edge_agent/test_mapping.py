"""Payload mapping: both simulator vendor shapes by configuration alone; bad payloads explained."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from edge_agent.mapping import JsonMapping, MappingError, PayloadMapper, TopicPattern, get_path
from zhizao.model import AssetPath, Quality, Sample

MQTT_DIR = Path(__file__).resolve().parents[2] / "edge_agent" / "connectors" / "mqtt"


def sample_mapping(name: str) -> JsonMapping:
    doc = tomllib.loads((MQTT_DIR / f"{name}.toml").read_text())
    return JsonMapping.model_validate(doc["connectors"]["mappings"][0])


@pytest.fixture
def mapper() -> PayloadMapper:
    return PayloadMapper([sample_mapping("acme"), sample_mapping("brightline")])


def test_topic_patterns() -> None:
    p = TopicPattern("acme/+line/+machine/telemetry")
    assert p.filter == "acme/+/+/telemetry"
    assert p.match("acme/line2/imm-3/telemetry") == {"line": "line2", "machine": "imm-3"}
    assert p.match("acme/line2/imm-3/other") is None and p.match("acme/line2/telemetry") is None
    assert TopicPattern("v/+/#rest").match("v/a/b/c") == {"rest": "b/c"}
    with pytest.raises(ValueError, match="last level"):
        TopicPattern("a/#/b")


def test_acme_shape(mapper: PayloadMapper) -> None:
    payload = {
        "ts": 1795392000250,
        "machine": "imm-3",
        "metrics": {
            "melt_temp": {"value": 231.5, "unit": "degC"},
            "parts_total": {"value": 12, "unit": "pcs"},
            "state": {"value": "running", "unit": None},
        },
        "status": {"melt_temp": "stale", "parts_total": "ok", "state": "fault"},
    }
    res = mapper.map("acme/line2/imm-3/telemetry", orjson.dumps(payload))
    assert res.problems == [] and res.mapping == "acme"
    by = {s.signal: s for s in res.samples}
    asset = AssetPath("plant1", "a1", "line2", "imm-3")
    assert by["melt_temp"].asset == asset and by["melt_temp"].unit == "degC"
    assert by["melt_temp"].quality is Quality.UNCERTAIN and by["state"].quality is Quality.BAD
    assert by["parts_total"].value == 12 and by["parts_total"].quality is Quality.GOOD
    assert by["melt_temp"].ts == datetime(2026, 11, 23, 0, 0, 0, 250000, tzinfo=UTC)


def test_brightline_shape(mapper: PayloadMapper) -> None:
    payload = {
        "timestamp": "2026-11-23T08:00:00.250+08:00",
        "device": "asm-1",
        "values": [
            {"name": "power_kw", "v": 3.2, "uom": "kW", "q": 192},
            {"name": "parts_good", "v": 7, "uom": "pcs", "q": 64},
            {"name": "vibration_rms", "v": 0.0, "uom": "mm/s", "q": 0},
        ],
    }
    res = mapper.map("brightline/plant1/asm-1/data", orjson.dumps(payload))
    assert res.problems == []
    by = {s.signal: s for s in res.samples}
    assert by["power_kw"].asset == AssetPath("plant1", "a1", "line2", "asm-1")
    assert by["power_kw"].ts == datetime(2026, 11, 23, 0, 0, 0, 250000, tzinfo=UTC)
    assert [by[n].quality for n in ("power_kw", "parts_good", "vibration_rms")] == [
        Quality.GOOD,
        Quality.UNCERTAIN,
        Quality.BAD,
    ]
    assert by["power_kw"].unit == "kW"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("acme/line2/imm-3/telemetry", b"{not json", "not valid JSON"),
        ("acme/line2/imm-3/telemetry", b'{"metrics": {}}', "timestamp"),
        ("acme/line2/imm-3/telemetry", b'{"ts": "yesterday", "metrics": {}}', "not a number"),
        ("acme/line2/imm-3/telemetry", b'{"ts": 1, "metrics": [1]}', "not an object"),
        ("acme/line2/bad machine!/telemetry", b'{"ts": 1, "metrics": {}}', "asset"),
        ("other/topic", b"{}", "no mapping matches"),
    ],
)
def test_unmappable_payloads_explain_why(
    mapper: PayloadMapper, topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(MappingError, match=reason):
        mapper.map(topic, payload)


def test_partly_bad_payload_keeps_the_good_signals(mapper: PayloadMapper) -> None:
    payload = {
        "ts": 1795392000000,
        "metrics": {"a": {"value": 1.0}, "b": {"value": None}, "c": {"value": [1]}, "d": {"nope": 1}},
        "status": {"a": "weird"},
    }
    res = mapper.map("acme/line2/imm-3/telemetry", orjson.dumps(payload))
    assert res.samples == []
    assert len(res.problems) == 4 and "quality 'weird'" in res.problems[0]


def test_get_path() -> None:
    doc = {"a": {"b": [{"c": 5}]}}
    assert get_path(doc, "a.b[0].c") == 5 and get_path(doc, "") is doc
    with pytest.raises(KeyError, match="no element"):
        get_path(doc, "a.b[3]")


def test_mapped_samples_equal_the_ones_sample_builds_with_its_checks(mapper: PayloadMapper) -> None:
    """The mapper checks each field once and builds samples without ``Sample.__post_init__``
    checking them again: the samples are those the checking constructor gives, and ``Sample``'s
    fields are the ones the mapper sets (a new field must be set there too)."""
    fields = [f.name for f in dataclasses.fields(Sample)]
    assert fields == ["asset", "signal", "ts", "value", "unit", "quality"]
    payload = {
        "ts": 1795392000250,
        "metrics": {
            "melt_temp": {"value": 231.5, "unit": "degC"},
            "parts_total": {"value": 12, "unit": ""},
            "door_open": {"value": True},
            "state": {"value": "running", "unit": None},
            "bad": {"value": [1]},
        },
        "status": {"melt_temp": "stale"},
    }
    res = mapper.map("acme/line2/imm-3/telemetry", orjson.dumps(payload))
    assert [s.signal for s in res.samples] == ["melt_temp", "parts_total", "door_open", "state"]
    assert res.problems == ["signal 'bad': value must be a number, boolean or string, got list"]
    for s in res.samples:
        checked = Sample(s.asset, s.signal, s.ts, s.value, s.unit, s.quality)
        assert type(s) is Sample and s == checked and hash(s) == hash(checked)
    assert res.samples[1].unit is None and res.samples[0].quality is Quality.UNCERTAIN


def test_a_receive_time_that_is_not_utc_is_refused_for_each_signal() -> None:
    """Without a timestamp field the receive time is used: one that is not aware UTC is refused by
    ``Sample``, per signal, as before the mapper checked it once per message."""
    m = JsonMapping.model_validate({"name": "n", "topic": "n/+machine", "asset": "p/a/l/{machine}",
                                    "timestamp": {"field": None}, "values": {"layout": "flat"}})
    res = PayloadMapper([m]).map("n/m1", b'{"x": 1, "y": 2.5}', received=datetime(2026, 1, 1))
    assert res.samples == [] and res.problems == [
        "signal 'x': ts must be timezone-aware UTC", "signal 'y': ts must be timezone-aware UTC"]
    ok = PayloadMapper([m]).map("n/m1", b'{"x": 1}', received=datetime(2026, 1, 1, tzinfo=UTC))
    assert ok.problems == [] and ok.samples[0].ts == datetime(2026, 1, 1, tzinfo=UTC)


def test_topics_are_cached_only_when_they_map(mapper: PayloadMapper) -> None:
    payload = b'{"ts": 1795392000000, "metrics": {"a": 1.0}}'  # 2026-11-23 (before 2000 is refused)
    for _ in range(2):
        with pytest.raises(MappingError, match="asset from topic"):
            mapper.map("acme/line2/bad machine!/telemetry", payload)
        with pytest.raises(MappingError, match="no mapping matches"):
            mapper.map("other/topic", payload)
    first = mapper.map("acme/line2/imm-3/telemetry", payload).samples[0]
    again = mapper.map("acme/line2/imm-3/telemetry", payload).samples[0]
    assert first == again and first.asset is again.asset
    assert mapper.map("acme/line2/imm-4/telemetry", payload).samples[0].asset.machine == "imm-4"
