"""Payload mappings, review 71: receive-time and one-value-per-topic payloads in TOML, boolean
quality words, plausible timestamps (numeric strings, epoch unit mistakes), static mistakes refused
at validation, overlapping topic filters."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent import mapping as mapping_module  # the filter helpers: looked up per test
from edge_agent.connectors.mqtt import MqttConnectorConfig
from edge_agent.mapping import JsonMapping, MappingError, PayloadMapper
from zhizao.model import AssetPath, Quality

MQTT_DIR = Path(__file__).resolve().parents[2] / "edge_agent" / "connectors" / "mqtt"
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def mapping(toml: str) -> JsonMapping:
    return JsonMapping.model_validate(tomllib.loads(toml))


def refused(toml: str) -> str:
    with pytest.raises(ValidationError) as info:
        mapping(toml)
    return str(info.value)


# --- 1. receive time in TOML; one value per topic ---------------------------------------------------

RECEIVE = '''name = "plain"
topic = "sensors/+machine/state"
asset = "plant1/a1/line1/{machine}"
timestamp = { source = "receive" }
values = { layout = "flat" }
'''


def test_receive_time_is_expressible_in_toml() -> None:
    m = mapping(RECEIVE)
    assert m.timestamp.source == "receive" and m.timestamp.field is None
    res = PayloadMapper([m]).map("sensors/m1/state", b'{"temp": 23.5}', received=NOW)
    assert res.problems == [] and [(s.signal, s.value, s.ts) for s in res.samples] == [("temp", 23.5, NOW)]


def test_the_yaml_null_form_still_means_receive_time() -> None:
    m = JsonMapping.model_validate({"name": "n", "topic": "n/+machine", "asset": "p/a/l/{machine}",
                                    "timestamp": {"field": None}, "values": {"layout": "flat"}})
    assert m.timestamp.source == "receive"


def test_an_empty_or_contradictory_timestamp_field_is_refused_with_a_pointer() -> None:
    assert 'source = "receive"' in refused(RECEIVE.replace('{ source = "receive" }', '{ field = "" }'))
    both = RECEIVE.replace('source = "receive"', 'source = "receive", field = "ts"')
    assert "takes no field" in refused(both)


def test_a_missing_timestamp_field_points_at_receive_time() -> None:
    m = mapping(RECEIVE.replace('timestamp = { source = "receive" }\n', ""))
    with pytest.raises(MappingError, match='source = "receive"'):
        PayloadMapper([m]).map("sensors/m1/state", b'{"temp": 23.5}')


SCALAR = '''name = "scalar"
topic = "sensors/+machine/+signal"
asset = "plant1/a1/line1/{machine}"
timestamp = { source = "receive" }
values = { layout = "value", signal = "{signal}" }
units = { temp = "degC" }
'''


@pytest.mark.parametrize(
    ("topic", "payload", "signal", "value"),
    [
        ("sensors/m1/temp", b"23.5", "temp", 23.5),
        ("sensors/m1/count", b"12\n", "count", 12),
        ("sensors/m1/door", b"true", "door", True),
        ("sensors/m1/state", b'"running"', "state", "running"),
        ("sensors/m1/state", b"running", "state", "running"),  # plain text: a string
    ],
)
def test_scalar_payloads_take_the_signal_from_the_topic(
    topic: str, payload: bytes, signal: str, value: Any
) -> None:
    res = PayloadMapper([mapping(SCALAR)]).map(topic, payload, received=NOW)
    assert res.problems == [] and len(res.samples) == 1
    s = res.samples[0]
    asset = AssetPath("plant1", "a1", "line1", "m1")
    assert (s.asset, s.signal, s.value, s.ts) == (asset, signal, value, NOW)
    assert type(s.value) is type(value)
    assert s.unit == ("degC" if signal == "temp" else None)


def test_scalar_payloads_that_are_not_values_are_explained() -> None:
    mapper = PayloadMapper([mapping(SCALAR)])
    assert "got list" in mapper.map("sensors/m1/temp", b"[1, 2]", received=NOW).problems[0]
    with pytest.raises(MappingError, match="not valid JSON"):
        mapper.map("sensors/m1/temp", b"{broken", received=NOW)
    with pytest.raises(MappingError, match="empty"):
        mapper.map("sensors/m1/temp", b"  ", received=NOW)


def test_value_layout_reads_one_field_with_the_payload_timestamp() -> None:
    m = mapping(SCALAR.replace('timestamp = { source = "receive" }', 'timestamp = { field = "ts" }')
                .replace('signal = "{signal}"', 'path = "v", signal = "{signal}"'))
    res = PayloadMapper([m]).map("sensors/m1/temp", b'{"ts": 1795392000250, "v": 21.0}', received=NOW)
    assert [(s.signal, s.value, s.ts.isoformat()) for s in res.samples] == [
        ("temp", 21.0, "2026-11-23T00:00:00.250000+00:00")]


def test_value_layout_needs_a_signal_template_over_the_captures() -> None:
    assert "values.signal is required" in refused(SCALAR.replace(', signal = "{signal}"', ""))
    assert "does not capture" in refused(SCALAR.replace('"{signal}"', '"{sig}"'))
    assert 'layout = "value" only' in refused(SCALAR.replace('"value"', '"flat"'))


# --- 3. boolean quality -----------------------------------------------------------------------------

BOOLQ = '''name = "b"
topic = "boolq/+machine"
asset = "plant1/a1/line4/{machine}"
timestamp = { field = "time", format = "iso8601" }
values = { layout = "list", path = "data", name_field = "tag", value_field = "val", quality_field = "ok" }
quality = { map = { "true" = "good", "False" = "bad", "192" = "good" } }
'''


def test_boolean_quality_matches_the_map() -> None:
    payload = (b'{"time": "2026-11-25T02:45:00Z", "data": [{"tag": "x", "val": 1, "ok": true},'
               b' {"tag": "y", "val": 2, "ok": false}, {"tag": "z", "val": 3, "ok": 192.0}]}')
    res = PayloadMapper([mapping(BOOLQ)]).map("boolq/m3", payload, received=NOW)
    assert res.problems == []
    assert [(s.signal, s.quality) for s in res.samples] == [
        ("x", Quality.GOOD), ("y", Quality.BAD), ("z", Quality.GOOD)]


# --- 4. timestamps ----------------------------------------------------------------------------------

ACME = '''name = "a"
topic = "acme/+line/+machine/telemetry"
asset = "plant1/a1/{line}/{machine}"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "object", path = "metrics" }
'''


def acme_ts(ts: Any, fmt: str = "epoch_ms", extra: str = "") -> datetime:
    m = mapping(ACME.replace('format = "epoch_ms"', f'format = "{fmt}"{extra}'))
    res = PayloadMapper([m]).map("acme/l1/m1/telemetry", b'{"ts": %s, "metrics": {"t": 1.5}}' % ts,
                                 received=NOW)
    assert res.problems == []
    return res.samples[0].ts


def test_epoch_timestamps_sent_as_strings_are_read() -> None:
    assert acme_ts(b'"1795574693907"') == datetime(2026, 11, 25, 2, 44, 53, 907000, tzinfo=UTC)
    assert acme_ts(b'"1795574693.5"', "epoch_s") == datetime(2026, 11, 25, 2, 44, 53, 500000, tzinfo=UTC)
    with pytest.raises(MappingError, match="not a number"):
        acme_ts(b'"soon"')


@pytest.mark.parametrize(
    ("raw", "fmt", "message"),
    [
        (b"1795574693", "epoch_ms", "1795574693 read as epoch_ms is 1970-01-21T.*before 2000-01-01"
                                    ".*looks like epoch seconds"),
        (b'"1795574693"', "epoch_us", "before 2000-01-01.*looks like epoch seconds"),
        (b"1795574693907", "epoch_s", "after 2262-04-11.*looks like epoch milliseconds"),
        (b"1795574693907000", "epoch_ms", "after 2262-04-11.*looks like epoch microseconds"),
        (b"86400000", "epoch_ms", "1970-01-02T00:00:00Z, before 2000-01-01"),
    ],
)
def test_implausible_epochs_are_refused_naming_the_likely_unit(raw: bytes, fmt: str, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        acme_ts(raw, fmt)


def test_the_future_bound_is_configurable_and_applies_to_text_formats() -> None:
    in_two_days = b"1795747493000"  # NOW + 2 days, in ms
    assert acme_ts(in_two_days) == datetime(2026, 11, 27, 2, 44, 53, tzinfo=UTC)  # no bound by default
    with pytest.raises(MappingError, match="more than 86400 s"):
        acme_ts(in_two_days, extra=", max_ahead_s = 86400")
    later = acme_ts(in_two_days, extra=", max_ahead_s = 259200")
    assert later == datetime(2026, 11, 27, 2, 44, 53, tzinfo=UTC)
    with pytest.raises(MappingError, match="before 2000-01-01"):
        acme_ts(b'"1999-12-31T23:59:59Z"', "iso8601")
    with pytest.raises(MappingError, match="ahead of this agent's clock"):
        acme_ts(b'"2027-01-01T00:00:00Z"', "iso8601", extra=", max_ahead_s = 86400")


# --- 5. static mistakes refused at validation ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (('"plant1/a1/{line}/{machine}"', '"plant1/a1/{lin}/{machine}"'), "asset", "uses {lin}, which topic"),
        (('"plant1/a1/{line}/{machine}"', '"plant1/{machine}"'), "asset", "must have 4 levels"),
        (('"plant1/a1/{line}/{machine}"', '"plant1/a1/{0}/{machine}"'), "asset", "not a topic capture"),
        (('"plant1/a1/{line}/{machine}"', '"plant 1/a1/{line}/{machine}"'), "asset", "site 'plant 1'"),
        (('"epoch_ms"', '"epoch_msec"'), "timestamp.format", "unknown format 'epoch_msec'"),
    ],
)
def test_static_mistakes_are_refused_naming_the_key(change: tuple[str, str], key: str, message: str) -> None:
    text = refused(ACME.replace(*change))
    assert f"\n{key}\n" in text and message in text


def test_a_multi_level_capture_is_not_counted_as_one_level() -> None:
    m = mapping('name = "r"\ntopic = "v/#rest"\nasset = "plant1/{rest}"\n')
    assert PayloadMapper([m]).map("v/a1/l1/m1", b'{"ts": 1795392000000, "x": 1}').samples


def mqtt_config(mappings: list[dict[str, Any]]) -> MqttConnectorConfig:
    return MqttConnectorConfig.model_validate({"host": "127.0.0.1", "mappings": mappings})


def m(name: str, topic: str) -> dict[str, Any]:
    return {"name": name, "topic": topic, "asset": "p/a/l/m"}


def test_duplicate_mapping_names_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"mappings\[0\] and mappings\[1\] are both named 'a'"):
        mqtt_config([m("a", "x/#"), m("a", "y/#")])


# --- 2. overlapping filters ------------------------------------------------------------------------


def test_filter_relations() -> None:
    filter_covers, filters_overlap = mapping_module.filter_covers, mapping_module.filters_overlap
    cover_filters = mapping_module.cover_filters
    assert filter_covers("ovl/#", "ovl/+/+/telemetry") and not filter_covers("ovl/+/+/telemetry", "ovl/#")
    assert filter_covers("a/#", "a") and filter_covers("+/b", "a/b") and not filter_covers("a/+", "a/b/c")
    assert filters_overlap("a/+/x", "a/y/+") and filters_overlap("a/#", "a")
    assert not filters_overlap("a/+", "a") and not filters_overlap("a/b", "a/c")
    assert cover_filters(["ovl/+/+/telemetry", "ovl/#", "b/+", "b/+"]) == ["b/+", "ovl/#"]


def test_a_covered_mapping_filter_is_not_subscribed() -> None:
    cfg = mqtt_config([m("specific", "ovl/+line/+machine/telemetry"), m("catchall", "ovl/#rest")])
    mapper = PayloadMapper(cfg.mappings)
    assert mapper.filters == ["ovl/#"]
    assert mapper.covered_filters == ["ovl/+/+/telemetry"]
    assert mapper.map("ovl/l1/m1/telemetry", b'{"ts": 1795392000000, "x": 1}').mapping == "specific"
    assert mapper.map("ovl/other", b'{"ts": 1795392000000, "x": 1}').mapping == "catchall"


def test_overlapping_filters_that_deliver_twice_or_never_map_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"'a' \(a/\+/x\) and 'b' \(a/y/\+\) overlap"):
        mqtt_config([m("a", "a/+/x"), m("b", "a/y/+")])
    with pytest.raises(ValidationError, match=r"mapping 'specific' .* is never used"):
        mqtt_config([m("catchall", "ovl/#"), m("specific", "ovl/+/m/telemetry")])
    with pytest.raises(ValidationError, match="never used"):
        mqtt_config([m("one", "x/+"), m("two", "x/+")])
    # a third filter covering both partial overlaps: one subscription, delivered once
    cfg = mqtt_config([m("a", "a/+/x"), m("b", "a/y/+"), m("all", "a/#")])
    assert PayloadMapper(cfg.mappings).filters == ["a/#"]


def test_shipped_samples_validate() -> None:
    for name in ("sample", "acme", "brightline"):
        doc = tomllib.loads((MQTT_DIR / f"{name}.toml").read_text())
        mappings = doc["connectors"][0]["mappings"] if name == "sample" else doc["connectors"]["mappings"]
        cfg = mqtt_config(mappings)
        assert PayloadMapper(cfg.mappings).filters


AGENT = """
[agent]
id = "cell-1"
state_dir = "."
[[connectors]]
type = "mqtt"
name = "vendors"
host = "127.0.0.1"
[[connectors.mappings]]
name = "typo"
topic = "typo/+line/+machine"
asset = "plant1/a1/{lin}/{machine}"
timestamp = { field = "ts", format = "epoch_msec" }
values = { layout = "flat", exclude = ["ts"] }
[[connectors.mappings]]
name = "short"
topic = "short/+machine"
asset = "plant1/{machine}"
[[connectors.mappings]]
name = "short"
topic = "other/+machine"
asset = "plant1/a1/l1/{machine}"
[uplink]
type = "http"
url = "http://127.0.0.1:8080"
token = "t"
"""


def test_check_config_exits_2_naming_each_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.cli import main

    path = tmp_path / "agent.toml"
    path.write_text(AGENT)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "connectors[0].mqtt.mappings[0].asset: template 'plant1/a1/{lin}/{machine}' uses {lin}" in err
    assert "connectors[0].mqtt.mappings[0].timestamp.format: unknown format 'epoch_msec'" in err
    assert "connectors[0].mqtt.mappings[1].asset: template 'plant1/{machine}'" in err
    assert "must have 4 levels" in err
    fixed = AGENT.replace("{lin}", "{line}").replace("epoch_msec", "epoch_ms").replace(
        '"plant1/{machine}"', '"plant1/a1/l1/{machine}"')
    path.write_text(fixed)
    assert main(["check-config", "--config", str(path)]) == 2
    assert "mappings[1] and mappings[2] are both named 'short'" in capsys.readouterr().err
