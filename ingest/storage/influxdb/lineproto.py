"""Serialising frames and events into InfluxDB line protocol (zhizao's schema, see the README).

Tag values are asset-path segments and signal names, which by construction need no escaping;
string field values escape ``"`` and ``\\``. Timestamps are written with ``precision=u``.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate, chain, compress, count, repeat
from operator import is_not
from typing import Final

import orjson

from ingest.storage.base import SampleFrame

_STR_ESCAPE: Final = str.maketrans({'"': '\\"', "\\": "\\\\"})
_TAG_ESCAPE: Final = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\", "\n": " "})


def field_str(text: str) -> str:
    """A quoted string field value."""
    return '"' + text.translate(_STR_ESCAPE) + '"'


def tag_value(text: str) -> str:
    """An escaped tag value (never empty: ``_`` stands for the empty string)."""
    return text.translate(_TAG_ESCAPE) if text else "_"


class LineCache:
    """What a store has written before, as bytes (each map bounded): the head of each kind of
    point — series key and every field but the value, for one (asset, signal, value type, unit,
    quality) — and quoted string values. A batch repeats all of them."""

    def __init__(self, measurement: str, max_size: int = 100_000) -> None:
        self.measurement = measurement
        self.heads: dict[tuple[str, str, str, str | None, str], bytes] = {}
        self.strings: dict[str | None, bytes] = {}
        """Quoted string values: states, recipes and messages repeat."""
        self.max_size = max_size

    def fill(self, frame: SampleFrame) -> None:
        """Add the heads ``frame`` needs that are not cached yet."""
        if len(self.heads) > self.max_size:
            self.heads.clear()
        kinds = set(zip(frame.asset, frame.signal, frame.vtype, frame.unit, frame.quality, strict=True))
        for asset, signal, vtype, unit, quality in kinds - self.heads.keys():
            site, area, line, machine = asset.split("/")
            marks = f'vtype="{vtype}",' if vtype != "f" else ""
            units = f"unit={field_str(unit)}," if unit is not None else ""
            field = "value_str" if vtype == "s" else "value"
            # tags sorted by key, as InfluxDB recommends (it sorts them otherwise, per point); the
            # value is the last field, so that a line is head + value + " <time>\n"
            self.heads[(asset, signal, vtype, unit, quality)] = (
                f"{self.measurement},area={area},line={line},machine={machine},signal={signal},site={site} "
                f'{marks}{units}quality="{quality}",{field}=').encode()


def frame_lines(frame: SampleFrame, cache: LineCache) -> bytes:
    """Line protocol for ``frame`` (``precision=u``), one point per sample, in order.

    Built column-wise, without a Python-level loop per sample: numbers and timestamps are
    formatted by orjson (shortest round-trip floats, which InfluxDB reads exactly; ints and
    bools are written as their float with ``vtype``), each point's head comes from ``cache``,
    and the three pieces of every line (head, value, `` <time>\n``) are interleaved by one
    ``bytes.join``. A frame that knows its runs of one kind of point (:meth:`SampleFrame.kind_runs`,
    as decoded version-2 batches do) has its heads looked up once per run.
    """
    if not len(frame):
        return b""
    heads = _heads(frame, cache)
    values = orjson.dumps(frame.value)[1:-1].split(b",")  # "null" where the value is a string
    if "s" in frame.vtype:
        texts = frame.value_str
        quoted = cache.strings
        if len(quoted) > cache.max_size:
            quoted.clear()
        for i in compress(count(), map(is_not, texts, repeat(None))):
            text = texts[i]
            value = quoted.get(text)
            if value is None:
                value = quoted[text] = field_str(text).encode()  # type: ignore[arg-type]
            values[i] = value
    # " t1\n t2\n ...": orjson writes the integers, one replace puts the separators in place
    times = (b" " + orjson.dumps(frame.ts_us)[1:-1].replace(b",", b"\n ") + b"\n").splitlines(keepends=True)
    return b"".join(chain.from_iterable(zip(heads, values, times, strict=True)))


def _heads(frame: SampleFrame, cache: LineCache) -> list[bytes]:
    """Each point's head, from ``cache`` (filled first with what it lacks)."""
    runs = frame.kind_runs()
    asset, signal, vtype, unit, quality = frame.asset, frame.signal, frame.vtype, frame.unit, frame.quality

    def kinds() -> Iterable[tuple[str, str, str, str | None, str]]:
        if runs is None:
            return zip(asset, signal, vtype, unit, quality, strict=True)
        starts = accumulate(runs[:-1], initial=0)
        return [(asset[i], signal[i], vtype[i], unit[i], quality[i]) for i in starts]

    try:
        heads = list(map(cache.heads.__getitem__, kinds()))
    except KeyError:  # a kind of point not written before
        cache.fill(frame)
        heads = list(map(cache.heads.__getitem__, kinds()))
    return heads if runs is None else list(chain.from_iterable(map(repeat, heads, runs)))
