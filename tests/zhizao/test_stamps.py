"""``canonical_epoch_us`` agrees with ``parse_ts`` wherever it answers, and refuses the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.storage.base import to_us
from zhizao.stamps import canonical_epoch_us
from zhizao.wire import format_ts, parse_ts


def reference(text: str) -> int | None:
    try:
        return to_us(parse_ts(text))
    except ValueError:
        return None


instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999),
                        timezones=st.just(UTC))


@given(st.lists(instants, min_size=1, max_size=50))
@settings(max_examples=300)
def test_valid_canonical_stamps_read_exactly(values: list[datetime]) -> None:
    stamps = [format_ts(v) for v in values]
    got = canonical_epoch_us(stamps)
    assert got is not None
    assert got.tolist() == [reference(s) for s in stamps]


def _mutate(text: str, at: int, char: str, how: str) -> str:
    if how == "replace":
        return text[:at] + char + text[at + 1:]
    if how == "insert":
        return text[:at] + char + text[at:]
    return text[:at] + text[at + 1:]


def _mutations(text: str) -> st.SearchStrategy[str]:
    chars = st.sampled_from(list("0123456789-T:.Z tz+\u0661\uff11/\n"))
    hows = st.sampled_from(["replace", "insert", "delete"])
    return st.tuples(st.integers(0, len(text) - 1), chars, hows).map(lambda m: _mutate(text, *m))


@given(instants.map(format_ts).flatmap(_mutations), st.lists(instants.map(format_ts), max_size=5))
@settings(max_examples=600)
def test_near_misses_are_never_misread(stamp: str, others: list[str]) -> None:
    """Whatever it accepts, it reads as ``parse_ts`` does; what it refuses the caller re-checks."""
    stamps = [*others, stamp]
    got = canonical_epoch_us(stamps)
    if got is not None:
        assert got.tolist() == [reference(s) for s in stamps]


def test_calendar_edges() -> None:
    good = ["2024-02-29T23:59:59.999999Z", "2000-02-29T00:00:00.000000Z", "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z", "1970-01-01T00:00:00.000000Z", "1969-12-31T23:59:59.999999Z"]
    got = canonical_epoch_us(good)
    assert got is not None and got.tolist() == [reference(s) for s in good]
    for bad in ["2023-02-29T00:00:00.000000Z", "1900-02-29T00:00:00.000000Z", "2024-04-31T00:00:00.000000Z",
                "2024-13-01T00:00:00.000000Z", "2024-00-01T00:00:00.000000Z", "2024-01-00T00:00:00.000000Z",
                "2024-01-01T24:00:00.000000Z", "2024-01-01T23:60:00.000000Z", "2024-01-01T23:59:60.000000Z",
                "0000-01-01T00:00:00.000000Z", "2024-01-01 00:00:00.000000Z", "2024-01-01T00:00:00.000000z",
                "2024-01-01T00:00:00.00000Z", "2024-01-01T00:00:00.000000+00:00"]:
        assert canonical_epoch_us(["2024-01-01T00:00:00.000000Z", bad]) is None, bad
    stamp = "2024-01-01T00:00:00.000000Z"
    for misaligned in ([stamp + "\n" + stamp, ""], [stamp[:-1], stamp + "Z"], [stamp + "\n", stamp[:-1]]):
        assert canonical_epoch_us(misaligned) is None, misaligned
    assert canonical_epoch_us([]) is not None
    assert reference(format_ts(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=1))) == \
        canonical_epoch_us(["2026-01-01T00:00:00.000001Z"]).tolist()[0]  # type: ignore[union-attr]
