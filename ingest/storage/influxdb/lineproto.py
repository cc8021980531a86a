"""Serialising frames and events into InfluxDB line protocol (zhizao's schema, see the README).

Tag values are asset-path segments and signal names, which by construction need no escaping;
string field values escape ``"`` and ``\\``. Timestamps are written with ``precision=u``.
"""

from __future__ import annotations

from itertools import chain, compress, count, repeat
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
    """The series keys, field tails and string values a store has written, as bytes (each
    bounded): a batch repeats its (asset, signal) pairs, (value type, unit, quality)
    combinations and string values."""

    def __init__(self, measurement: str, max_size: int = 100_000) -> None:
        self.measurement = measurement
        self.heads: dict[tuple[str, str, str], bytes] = {}
        self.tails: dict[tuple[str, str | None, str], bytes] = {}
        self.strings: dict[str | None, bytes] = {}
        """Quoted string values: states, recipes and messages repeat."""
        self.max_size = max_size

    def fill(self, frame: SampleFrame) -> None:
        """Add the heads and tails ``frame`` needs that are not cached yet."""
        for cache in (self.heads, self.tails):
            if len(cache) > self.max_size:
                cache.clear()
        series = set(zip(frame.asset, frame.signal, frame.vtype, strict=True))
        for asset, signal, vtype in series - self.heads.keys():
            site, area, line, machine = asset.split("/")
            field = "value_str" if vtype == "s" else "value"
            # tags sorted by key, as InfluxDB recommends (it sorts them otherwise, per point)
            self.heads[(asset, signal, vtype)] = (
                f"{self.measurement},area={area},line={line},machine={machine},signal={signal},site={site} "
                f"{field}=").encode()
        fields = set(zip(frame.vtype, frame.unit, frame.quality, strict=True))
        for vtype, unit, quality in fields - self.tails.keys():
            marks = f',vtype="{vtype}"' if vtype != "f" else ""
            units = f",unit={field_str(unit)}" if unit is not None else ""
            self.tails[(vtype, unit, quality)] = f'{marks}{units},quality="{quality}" '.encode()


def frame_lines(frame: SampleFrame, cache: LineCache) -> bytes:
    """Line protocol for ``frame`` (``precision=u``), one point per sample, in order.

    Built column-wise, without a Python-level loop per sample: numbers and timestamps are
    formatted by orjson (shortest round-trip floats, which InfluxDB reads exactly; ints and
    bools are written as their float with ``vtype``), heads and tails come from ``cache``,
    and the pieces are interleaved by one ``bytes.join`` (each line ends with ``\n``).
    """
    if not len(frame):
        return b""
    try:
        heads = list(map(cache.heads.__getitem__, zip(frame.asset, frame.signal, frame.vtype, strict=True)))
        tails = list(map(cache.tails.__getitem__, zip(frame.vtype, frame.unit, frame.quality, strict=True)))
    except KeyError:  # a series or field combination not written before
        cache.fill(frame)
        heads = list(map(cache.heads.__getitem__, zip(frame.asset, frame.signal, frame.vtype, strict=True)))
        tails = list(map(cache.tails.__getitem__, zip(frame.vtype, frame.unit, frame.quality, strict=True)))
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
    stamps = orjson.dumps(frame.ts_us)[1:-1].split(b",")
    return b"".join(chain.from_iterable(zip(heads, values, tails, stamps, repeat(b"\n"))))
