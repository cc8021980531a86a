"""Payload mapping: both simulator vendor shapes by configuration alone; bad payloads explained."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from edge_agent.mapping import JsonMapping, MappingError, PayloadMapper, TopicPattern, get_path
from zhizao.model import AssetPath, Quality

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
