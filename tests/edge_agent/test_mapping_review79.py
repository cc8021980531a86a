"""Payload mappings, review 79: the bound "ahead of the agent's clock" is opt-in (simulated data is
stamped with scenario time, which runs ahead of the wall clock), a fixed upper bound the stores hold
(InfluxDB: 2262-04-11) catches epoch milliseconds read as seconds; topics starting with ``$`` are
matched as a broker matches them (MQTT §4.7.2: a filter starting with a wildcard matches none)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.mapping import JsonMapping, MappingError, PayloadMapper, check_mappings
from edge_agent.mapping import payload as payload_module
from edge_agent.mapping.topics import TopicPattern, filter_covers, filters_overlap
from ingest.lineproto import MAX_NS
from zhizao.model import AssetPath

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)

ACME = '''name = "a"
topic = "acme/+line/+machine/telemetry"
asset = "plant1/a1/{line}/{machine}"
timestamp = { field = "ts", format = "FMT"EXTRA }
values = { layout = "object", path = "metrics" }
'''


def acme(fmt: str = "epoch_ms", extra: str = "") -> PayloadMapper:
    doc = tomllib.loads(ACME.replace("FMT", fmt).replace("EXTRA", extra))
    return PayloadMapper([JsonMapping.model_validate(doc)])


def stamp(raw: bytes, fmt: str = "epoch_ms", extra: str = "") -> datetime:
    res = acme(fmt, extra).map("acme/l1/m1/telemetry", b'{"ts": %s, "metrics": {"t": 1.5}}' % raw,
                               received=NOW)
    assert res.problems == []
    return res.samples[0].ts


def ms(ts: datetime) -> bytes:
    return str(int(ts.timestamp() * 1000)).encode()


# --- 1. the clock bound is opt-in ------------------------------------------------------------------


def test_a_payload_25_hours_ahead_of_the_clock_is_stored_by_default() -> None:
    ahead = NOW + timedelta(hours=25)
    assert stamp(ms(ahead)) == ahead
    # and by the clock itself (no ``received``): a simulated scenario starting next year
    next_year = datetime.now(UTC).replace(microsecond=0) + timedelta(days=400)
    res = acme().map("acme/l1/m1/telemetry", b'{"ts": %s, "metrics": {"t": 1.5}}' % ms(next_year))
    assert [s.ts for s in res.samples] == [next_year]


def test_with_max_ahead_s_set_a_payload_ahead_of_the_clock_is_refused() -> None:
    ahead = NOW + timedelta(hours=25)
    with pytest.raises(MappingError, match=r"more than 86400 s \(timestamp.max_ahead_s\) ahead of this "
                                           r"agent's clock \(2026-11-25T03:00:00Z\)"):
        stamp(ms(ahead), extra=", max_ahead_s = 86400")
    assert stamp(ms(NOW + timedelta(hours=23)), extra=", max_ahead_s = 86400") == NOW + timedelta(hours=23)
    with pytest.raises(MappingError, match="ahead of this agent's clock"):
        stamp(b'"2026-11-26T04:00:00Z"', "iso8601", extra=", max_ahead_s = 86400")


def test_max_ahead_s_is_unset_by_default_and_must_be_positive() -> None:
    assert JsonMapping.model_validate(tomllib.loads(ACME.replace("FMT", "epoch_ms").replace("EXTRA", ""))
                                      ).timestamp.max_ahead_s is None
    with pytest.raises(ValueError, match="greater than 0"):
        acme(extra=", max_ahead_s = 0")


@pytest.mark.parametrize(
    ("raw", "fmt", "message"),
    [
        (b"1795574693907", "epoch_s", r"1795574693907 read as epoch_s is beyond the year 9999, after "
                                      r"2262-04-11, the latest the stores hold; the value looks like "
                                      r"epoch milliseconds \(format = 'epoch_ms'\)"),
        (b'"1795574693907"', "epoch_s", "after 2262-04-11.*looks like epoch milliseconds"),
        (b"1795574693907000", "epoch_s", "after 2262-04-11.*looks like epoch microseconds"),
        (b"1795574693907000", "epoch_ms", "after 2262-04-11.*looks like epoch microseconds"),
    ],
)
def test_epoch_milliseconds_read_as_seconds_are_refused_naming_the_unit(
    raw: bytes, fmt: str, message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        stamp(raw, fmt)
    with pytest.raises(MappingError, match=message):  # with a clock bound, the same hint
        stamp(raw, fmt, extra=", max_ahead_s = 86400")


def test_the_fixed_upper_bound_is_what_influxdb_stores() -> None:
    latest = payload_module.LATEST
    assert (latest - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000 <= MAX_NS
    assert (latest + timedelta(microseconds=1) - datetime(1970, 1, 1, tzinfo=UTC)
            ) // timedelta(microseconds=1) * 1000 > MAX_NS
    assert stamp(b'"2262-04-11T00:00:00Z"', "iso8601") == datetime(2262, 4, 11, tzinfo=UTC)
    with pytest.raises(MappingError, match=r"2262-04-12T00:00:00Z, after 2262-04-11"):
        stamp(b'"2262-04-12T00:00:00Z"', "iso8601")
    with pytest.raises(MappingError, match="after 2262-04-11"):
        stamp(b"9300000000", "epoch_s")  # 2264


def test_the_lower_bound_still_names_the_unit() -> None:
    with pytest.raises(MappingError, match=r"before 2000-01-01.*looks like epoch seconds"):
        stamp(b"1795574693")


# --- 2. topics starting with $ --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "covers"),
    [
        ("#", "$aws/things/+/telemetry", False),
        ("#", "$SYS/#", False),
        ("+/#", "$SYS/broker/load", False),
        ("+/things/+/telemetry", "$aws/things/+/telemetry", False),
        ("$aws/#", "$aws/things/+/telemetry", True),
        ("$aws/things/+/telemetry", "$aws/things/cnc-1/telemetry", True),
        ("$aws/#", "#", False),
        ("#", "a/$b/c", True),  # '$' matters only at the start of a topic
        ("#", "acme/+/+/telemetry", True),
    ],
)
def test_a_filter_starting_with_a_wildcard_covers_no_dollar_topic(a: str, b: str, covers: bool) -> None:
    assert filter_covers(a, b) is covers


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("#", "$aws/things/+/telemetry", False),
        ("+/things/+/telemetry", "$aws/things/+/telemetry", False),
        ("$SYS/#", "+/#", False),
        ("$aws/#", "$aws/things/+/telemetry", True),
        ("$aws/+/x", "$aws/y/+", True),
        ("#", "+/x", True),
        ("a/#", "a/$b", True),
    ],
)
def test_a_filter_starting_with_a_wildcard_overlaps_no_dollar_filter(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


def test_a_pattern_starting_with_a_wildcard_matches_no_dollar_topic() -> None:
    assert TopicPattern("#rest").match("$aws/things/cnc-1/telemetry") is None
    assert TopicPattern("+site/#rest").match("$SYS/broker/load") is None
    assert TopicPattern("#rest").match("acme/$x") == {"rest": "acme/$x"}
    assert TopicPattern("$aws/things/+machine/telemetry").match("$aws/things/cnc-1/telemetry") == {
        "machine": "cnc-1"}
    assert TopicPattern("$aws/#").match("$aws/x") == {}


DOLLAR = '''
[[mappings]]
name = "aws"
topic = "$aws/things/+machine/telemetry"
asset = "plant1/a1/line1/{machine}"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }
[[mappings]]
name = "rest"
topic = "#rest"
asset = "plant1/a1/line9/other"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }
'''


def dollar_mappings(reverse: bool = False) -> list[JsonMapping]:
    ms_ = [JsonMapping.model_validate(m) for m in tomllib.loads(DOLLAR)["mappings"]]
    return ms_[::-1] if reverse else ms_


def test_a_dollar_mapping_before_a_catch_all_is_subscribed_on_its_own() -> None:
    mapper = PayloadMapper(dollar_mappings())
    assert mapper.filters == ["#", "$aws/things/+/telemetry"] and mapper.covered_filters == []
    check_mappings(dollar_mappings())
    res = mapper.map("$aws/things/cnc-1/telemetry", b'{"ts": 1795392000000, "temp": 1.5}', received=NOW)
    assert (res.mapping, res.samples[0].asset) == ("aws", AssetPath("plant1", "a1", "line1", "cnc-1"))
    assert mapper.map("other/x", b'{"ts": 1795392000000, "t": 1}', received=NOW).mapping == "rest"
    with pytest.raises(MappingError, match="no mapping matches"):  # the catch-all does not take it
        mapper.map("$aws/things/cnc-1/shadow", b'{"ts": 1795392000000, "temp": 1.5}', received=NOW)


def test_a_catch_all_listed_before_a_dollar_mapping_does_not_make_it_unused() -> None:
    check_mappings(dollar_mappings(reverse=True))  # '#' never delivers $aws/...: both are used
    mapper = PayloadMapper(dollar_mappings(reverse=True))
    res = mapper.map("$aws/things/m/telemetry", b'{"ts": 1795392000000, "x": 1}', received=NOW)
    assert res.mapping == "aws"
