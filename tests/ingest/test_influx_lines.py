"""Line-protocol encoding of frames: a frame's run hint changes how heads are found, never the
bytes; the hint survives only the operations that keep it true."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.storage.base import SampleFrame
from ingest.storage.influxdb.lineproto import LineCache, frame_lines, point_fields, point_lines
from zhizao.model import Value

KINDS = [("plant/a1/line1/m1", "power_kw", "kW", "good"), ("plant/a1/line1/m2", "power_kw", "kW", "bad"),
         ("plant/a1/line2/m1", "state", None, "good"), ("plant/a1/line2/m1", "parts", None, "uncertain")]
VALUES: dict[str, st.SearchStrategy[Value]] = {
    "f": st.floats(allow_nan=False, allow_infinity=False), "i": st.integers(-(2**53), 2**53),
          "b": st.booleans(), "s": st.text(max_size=6)}
"""String values may hold line breaks: a point's line is then more than one line of text."""


@st.composite
def runs_of_points(draw: st.DrawFn) -> tuple[SampleFrame, list[int]]:
    """A frame made of runs, each of one kind of point (kind and value type drawn per run)."""
    frame = SampleFrame()
    runs = []
    t = 1_795_392_000_000_000
    for _ in range(draw(st.integers(0, 8))):
        asset, signal, unit, quality = draw(st.sampled_from(KINDS))
        vtype = draw(st.sampled_from(sorted(VALUES)))
        n = draw(st.integers(1, 6))
        for value in draw(st.lists(VALUES[vtype], min_size=n, max_size=n)):
            t += draw(st.integers(1, 10**6))
            frame.append_raw(asset, signal, t, value, unit=unit, quality=quality)
        runs.append(n)
    return frame, runs


@settings(max_examples=200, deadline=None)
@given(runs_of_points())
def test_the_run_hint_gives_the_same_lines(drawn: tuple[SampleFrame, list[int]]) -> None:
    frame, runs = drawn
    plain = frame_lines(frame, LineCache("samples"))
    frame.runs = runs
    assert frame.kind_runs() == runs
    assert frame_lines(frame, LineCache("samples")) == plain
    warm = LineCache("samples")
    frame_lines(frame, warm)
    assert frame_lines(frame, warm) == plain  # heads from the cache
    assert plain.count(b"\n") >= len(frame) and plain.endswith(b"\n" if len(frame) else b"")
    points = point_lines(frame, LineCache("samples"))  # one per point, for writing chosen ones again
    assert len(points) == len(frame) and b"".join(points) == plain
    for line, vtype, unit in zip(points, frame.vtype, frame.unit, strict=True):
        assert line.endswith(b"\n")
        fields = line.rsplit(b" ", 1)[0].split(b" ", 1)[1]  # a string value may hold a space: count keys
        assert all(f"{name}=".encode() in fields for name in point_fields(vtype, unit)), (line, vtype, unit)


def _frame(n: int, runs: list[int] | None) -> SampleFrame:
    frame = SampleFrame()
    for i in range(n):
        frame.append_raw("plant/a1/line1/m1", "power_kw", i, float(i), unit="kW", quality="good")
    frame.runs = runs
    return frame


def test_the_hint_is_dropped_or_joined_as_the_columns_change() -> None:
    frame = _frame(3, [3])
    assert frame.kind_runs() == [3]
    frame.append_raw("plant/a1/line1/m1", "power_kw", 9, 1.0, unit="kW", quality="good")
    assert frame.runs is None  # appending drops it

    a, b = _frame(2, [2]), _frame(3, [1, 2])
    a.extend(b)
    assert a.kind_runs() == [2, 1, 2]
    empty = SampleFrame()
    empty.extend(_frame(2, [2]))
    assert empty.kind_runs() == [2]
    unknown = _frame(2, None)
    unknown.extend(_frame(2, [2]))
    assert unknown.kind_runs() is None

    stale = _frame(4, [3])  # not covering the frame: ignored, the lines stay right
    assert stale.kind_runs() is None
    assert frame_lines(stale, LineCache("m")) == frame_lines(_frame(4, None), LineCache("m"))
