"""Serialising frames and events into InfluxDB line protocol (zhizao's schema, see the README).

Safe by construction, whatever validated the names before: every measurement, tag key, tag value
and field key goes through :func:`measurement`, :func:`tag_key`/:func:`tag_value` or
:func:`field_key`, which escape what line protocol lets them escape (``,``, ``=``, space) and
refuse — ``ValueError`` naming the text — what it cannot carry: a line break (LF or CR: it
would end the line, and the rest would become a broken point that makes InfluxDB refuse the whole
write) and a backslash (InfluxDB 1.x keeps backslashes in keys and tag values literally, except
one before a separator or at the end, which escapes it: no escaping round-trips). String field
values escape the double quote and the backslash (they may hold line breaks). Timestamps are
written with ``precision=u``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import accumulate, chain, compress, count, repeat
from operator import is_not
from typing import Final

import orjson

from ingest.storage.base import SampleFrame

_STR_ESCAPE: Final = str.maketrans({'"': '\\"', "\\": "\\\\"})
_TAG_ESCAPE: Final = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
"""Escapes of tag keys, tag values and field keys; what they cannot carry is refused first
(:func:`_unwritable`), never mapped to something else."""
_MEASUREMENT_ESCAPE: Final = str.maketrans({",": "\\,", " ": "\\ "})
_UNWRITABLE: Final = re.compile(r"[\n\r\\]")


def _unwritable(text: str, what: str) -> None:
    """``ValueError`` when ``text`` (a ``what``: "tag value", ...) holds what line protocol cannot carry."""
    bad = _UNWRITABLE.search(text)
    if bad is not None:
        raise ValueError(f"{what} {text[:80]!r} contains {bad.group()!r}, which InfluxDB line protocol "
                         "cannot carry in a name or tag value")


def field_str(text: str) -> str:
    """A quoted string field value."""
    return '"' + text.translate(_STR_ESCAPE) + '"'


def tag_value(text: str) -> str:
    """An escaped tag value (never empty: ``_`` stands for the empty string); ``ValueError`` for a
    line break or a backslash."""
    if not text:
        return "_"
    _unwritable(text, "tag value")
    return text.translate(_TAG_ESCAPE)


def _key(text: str, what: str) -> str:
    if not text:
        raise ValueError(f"a {what} cannot be empty")
    _unwritable(text, what)
    return text.translate(_TAG_ESCAPE)


def tag_key(text: str) -> str:
    """An escaped tag key; ``ValueError`` for an empty one, a line break or a backslash."""
    return _key(text, "tag key")


def field_key(text: str) -> str:
    """An escaped field key; ``ValueError`` for an empty one, a line break or a backslash."""
    return _key(text, "field key")


def measurement(text: str) -> str:
    """An escaped measurement name; ``ValueError`` for an empty one, a line break or a backslash."""
    if not text:
        raise ValueError("a measurement name cannot be empty")
    _unwritable(text, "measurement")
    return text.translate(_MEASUREMENT_ESCAPE)


_SITE, _AREA, _LINE, _MACHINE, _SIGNAL = map(tag_key, ("site", "area", "line", "machine", "signal"))
_VTYPE, _UNIT, _QUALITY, _VALUE, _VALUE_STR = map(
    field_key, ("vtype", "unit", "quality", "value", "value_str"))


FIELD_TYPES: Final = {"value": "float", "value_str": "string", "vtype": "string", "unit": "string",
                      "quality": "string"}
"""Every field a sample's point may carry, with the one InfluxDB type it is always written as
(as InfluxDB names types in its errors): numbers and booleans as a float ``value``."""


def point_fields(vtype: str, unit: str | None) -> tuple[str, ...]:
    """The fields (sorted) of the point of a sample of ``vtype`` with ``unit``, as
    :meth:`LineCache.fill` writes them."""
    fields = ["quality", "value_str" if vtype == "s" else "value"]
    if vtype != "f":
        fields.append("vtype")
    if unit is not None:
        fields.append("unit")
    return tuple(sorted(fields))


class LineCache:
    """What a store has written before, as bytes (each map bounded): the head of each kind of
    point — series key and every field but the value, for one (asset, signal, value type, unit,
    quality) — and quoted string values. A batch repeats all of them."""

    def __init__(self, measurement_name: str, max_size: int = 100_000) -> None:
        self.measurement = measurement_name
        self._head = measurement(measurement_name)
        """The measurement, escaped (``ValueError`` here for one line protocol cannot carry)."""
        self.heads: dict[tuple[str, str, str, str | None, str], bytes] = {}
        self.strings: dict[str | None, bytes] = {}
        """Quoted string values: states, recipes and messages repeat."""
        self.max_size = max_size

    def fill(self, frame: SampleFrame) -> None:
        """Add the heads ``frame`` needs that are not cached yet; ``ValueError`` (nothing added for
        that kind) for an asset that is not four levels or a name line protocol cannot carry."""
        if len(self.heads) > self.max_size:
            self.heads.clear()
        kinds = set(zip(frame.asset, frame.signal, frame.vtype, frame.unit, frame.quality, strict=True))
        for asset, signal, vtype, unit, quality in kinds - self.heads.keys():
            levels = asset.split("/")
            if len(levels) != 4:
                raise ValueError(f"asset {asset[:80]!r} is not site/area/line/machine")
            site, area, line, machine = map(tag_value, levels)
            marks = f"{_VTYPE}={field_str(vtype)}," if vtype != "f" else ""
            units = f"{_UNIT}={field_str(unit)}," if unit is not None else ""
            field = _VALUE_STR if vtype == "s" else _VALUE
            # tags sorted by key, as InfluxDB recommends (it sorts them otherwise, per point); the
            # value is the last field, so that a line is head + value + " <time>\n"
            self.heads[(asset, signal, vtype, unit, quality)] = (
                f"{self._head},{_AREA}={area},{_LINE}={line},{_MACHINE}={machine},{_SIGNAL}={tag_value(signal)},"
                f"{_SITE}={site} {marks}{units}{_QUALITY}={field_str(quality)},{field}=").encode()


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
    return b"".join(chain.from_iterable(_pieces(frame, cache)))


def point_lines(frame: SampleFrame, cache: LineCache) -> list[bytes]:
    """The lines of :func:`frame_lines`, one ``bytes`` per point (each ending with its ``\n``): to
    write chosen points of a frame again (a string value may hold a line break, so the joined
    lines cannot be split)."""
    return list(map(b"".join, _pieces(frame, cache))) if len(frame) else []


def _pieces(frame: SampleFrame, cache: LineCache) -> Iterable[tuple[bytes, bytes, bytes]]:
    """``(head, value, " <time>\n")`` of each point of ``frame`` (not empty), in order."""
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
    return zip(heads, values, times, strict=True)


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
