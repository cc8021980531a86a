"""InfluxDB line protocol → samples, by zhizao's documented convention.

Convention (also in ``ingest/README.md``):

* tags ``site``, ``area``, ``line``, ``machine`` are required and form the asset path;
* tag ``unit`` (optional) becomes the unit of every field of the line, tag ``quality`` (optional,
  ``good``/``uncertain``/``bad``) its quality; any other tag (Telegraf's ``host`` ...) is ignored
  and counted in ``zhizao_ingest_lineprotocol_ignored_tags_total``;
* each field is one sample; its signal is the field key when the measurement is ``telemetry``
  or ``zhizao``, else ``<measurement>.<field key>`` (``cpu,...  usage_idle=3`` → ``cpu.usage_idle``);
* integer (``5i``), unsigned (``5u``), float, boolean and string field values keep their type;
* a missing timestamp means "now" at the server; ``precision`` is ``ns`` (default), ``us``,
  ``ms``, ``s`` (v2 names) or ``n``, ``u``, ``ms``, ``s``, ``m``, ``h`` (v1 names);
* points are split as influxd 1.x splits them (its ``scanLine``; :func:`points`): a point ends at a
  ``\\n`` that is neither inside a double-quoted string field value nor escaped by a backslash — so
  a string value may hold line breaks (a log message, a stack trace) — and at no other break of
  ``str.splitlines``. Double quotes mean something only in field values: a ``"`` opens or closes a
  string only after more ``=`` than ``,`` of the field section (outside strings), so one in the
  measurement, a tag or a field key is a character of it. A string left open runs to the end of the
  body, which is then one point, refused (influxd does the same). One deviation: a comment line
  (``#`` first) ends at its ``\\n`` whatever quotes it holds (influxd reads ``# a=1 "x`` as opening a
  string and silently drops every later line of the body);
* ``\\r\\n`` line ends are accepted: a ``\\r`` just before the ``\\n`` that ends a point (or at the end
  of the body) is dropped. It stands after the point's last token — a timestamp, a number, a boolean
  or a closed string — where it can be part of no value (influxd refuses the point, or stores a
  closed string's value mangled: ``s="q"\\r`` as ``q"``), so no value changes meaning; inside a
  string value a ``\\r\\n`` is kept, as influxd keeps it.

A bad point is rejected with its line number (the first line of a point spanning several) and
reason; the other points are stored (like InfluxDB's partial write).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from ingest.storage.base import SampleFrame
from zhizao.model import INT_MAX, INT_MIN, MAX_STR_VALUE, MAX_UNIT, QUALITY_NAMES, AssetPath, valid_signal

PRECISION_NS: Final = {
    "ns": 1, "n": 1, "us": 1_000, "u": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000,
}
_PRECISION_NAMES: Final = {scale: name for name, scale in reversed(PRECISION_NS.items())}
PLAIN_MEASUREMENTS: Final = frozenset({"telemetry", "zhizao"})
_ASSET_TAGS: Final = ("site", "area", "line", "machine")
MAX_NS: Final = 9_223_372_036_854_775_806
"""InfluxDB's range of timestamps (``models.MaxNanoTime``; ``-MAX_NS`` the least): 1677-09-21 to
2262-04-11, as nanoseconds since the epoch in a signed 64-bit integer."""
_INT: Final = re.compile(r"-?[0-9]+")
_UINT: Final = re.compile(r"[0-9]+")
_FLOAT: Final = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""Line protocol's numbers as influxd reads them, ASCII digits only: Python's ``int``/``float`` also
take ``1_7``, ``١٧``, ``nan``, `` 7`` or ``+7``, which InfluxDB refuses (a field value starting
with ``+`` is read as a boolean by influxd's ``scanFields``: "invalid boolean"; a sign is allowed
only first as ``-``, and after the exponent's ``e``)."""


@dataclass
class ParsedLines:
    frame: SampleFrame = field(default_factory=SampleFrame)
    errors: list[tuple[int, str]] = field(default_factory=list)
    """``(1-based line number, reason)`` per rejected point (the number of its first line)."""
    ignored_tags: int = 0
    over_limit: bool = False
    """More field values than :func:`parse`'s ``max_values``: parsing stopped there (the frame holds
    the values read before; it is not to be stored)."""


class _OverLimit(Exception):
    """A point's field section holds more fields than :func:`parse` may still take (not a
    ``ValueError``: no line error, the whole body is refused)."""


def _split(text: str, sep: str, *, maxsplit: int = -1) -> list[str]:
    """Split on unescaped ``sep`` (backslash escapes); quotes mean nothing (measurement, tags, key=value)."""
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            cur.append(c)
            cur.append(text[i + 1])
            i += 2
            continue
        if c == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


_FIELD_MARKS: Final = re.compile(r'[\\"=, ]')
"""The characters influxd's line and field scanners act on (``scanLine``, ``scanFields``)."""


def _split_fields(text: str, sep: str, budget: int | None = None) -> list[str]:
    """Split a point's field section (``fields [timestamp]``) on unescaped ``sep`` (``" "`` or ``","``)
    outside string values, by influxd's rule: a ``"`` opens or closes a string only where more ``=``
    than ``,`` have been seen outside strings (in a field value), elsewhere it is a character.
    ``ValueError`` for a string left open; :class:`_OverLimit` as soon as the ``,`` outside strings
    make more than ``budget`` fields (the rest of ``text`` is not read)."""
    parts: list[str] = []
    start = i = equals = commas = 0
    quoted = False
    while (mark := _FIELD_MARKS.search(text, i)) is not None:
        j = mark.start()
        c = text[j]
        i = j + 1
        if c == "\\":
            i = j + 2
        elif c == '"':
            if equals > commas:
                quoted = not quoted
        elif not quoted:
            if c == sep:
                parts.append(text[start:j])
                start = i
            if c == "=":
                equals += 1
            elif c == ",":
                commas += 1
                if budget is not None and commas >= budget:
                    raise _OverLimit
    if quoted:
        raise ValueError("unterminated string field value")
    parts.append(text[start:])
    return parts


class _PointScan:
    """influxd 1.x's ``scanLine`` (``models/points.go``) over one point, fed a physical line at a time:
    after the first unescaped space (the field section) it counts ``=`` and ``,`` outside strings and
    toggles "in a string" at a ``"`` while more ``=`` than ``,`` were seen; a backslash escapes the
    next character, a line break too."""

    __slots__ = ("commas", "equals", "fields", "quoted")

    def __init__(self) -> None:
        self.fields = False
        self.quoted = False
        self.equals = 0
        self.commas = 0

    def feed(self, text: str) -> bool:
        """Scan ``text`` (one physical line, without its ``\\n``); ``True`` when it ends with a backslash
        that escapes that ``\\n``."""
        i, n = 0, len(text)
        while (mark := _FIELD_MARKS.search(text, i)) is not None:
            j = mark.start()
            c = text[j]
            i = j + 1
            if c == "\\":
                if i >= n:
                    return True
                i += 1
            elif c == " ":
                self.fields = True
            elif not self.fields:
                continue
            elif c == '"':
                if self.equals > self.commas:
                    self.quoted = not self.quoted
            elif not self.quoted:
                if c == "=":
                    self.equals += 1
                else:
                    self.commas += 1
        return False


@dataclass(frozen=True, slots=True)
class Point:
    """One point's text as :func:`points` cuts it from a body."""

    first: int
    """1-based number of its first line."""
    last: int
    """1-based number of its last line (``first`` unless a string value or an escape holds a ``\\n``;
    a body's final ``\\n`` swallowed by an open string does not count)."""
    text: str
    """Its text, the ``\\n`` inside it kept, the one ending it not; a ``\\r`` before that one too."""
    unterminated: bool
    """A string value opened in it is never closed: it runs to the end of the body."""


def points(body: str) -> Iterator[Point]:
    """The points of ``body`` (blank and comment lines included), cut where influxd 1.x cuts them
    (``scanLine``): at a ``\\n`` outside string field values and not escaped by a backslash (one
    before the body's final ``\\n`` does not escape it, as in influxd). A comment line (``#`` first,
    after spaces and tabs) ends at its ``\\n``: influxd would let a quote in it swallow the rest of
    the body, silently. A line without ``"`` or ``\\`` is one point on its own, not scanned."""
    segments = body.split("\n")
    end = len(segments) - 1
    i = 0
    while i <= end:
        first = i
        text = segments[i]
        if ('"' not in text and "\\" not in text) or text.lstrip(" \t").startswith("#"):
            yield Point(i + 1, i + 1, text, unterminated=False)
            i += 1
            continue
        scan = _PointScan()
        escaped = scan.feed(text)
        while (scan.quoted or escaped) and i < end:
            if not scan.quoted and i + 1 == end and not segments[end]:
                break  # influxd: a backslash escapes only when two more bytes follow it
            i += 1
            escaped = scan.feed(segments[i])
        text = "\n".join(segments[first:i + 1])
        last = first + text.rstrip("\r\n").count("\n")
        yield Point(first + 1, last + 1, text, unterminated=scan.quoted)
        i += 1


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",= \\\"":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _field_value(raw: str) -> float | int | bool | str:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise ValueError(f"string field value {raw!r} is not closed by a double quote")
        text = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if len(text) > MAX_STR_VALUE:
            raise ValueError(f"string value longer than {MAX_STR_VALUE} characters")
        return text
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith(("i", "u")):
        if not (_INT if raw.endswith("i") else _UINT).fullmatch(raw[:-1]):
            raise ValueError(f"{raw[:40]!r} is not an integer (ASCII digits, then i or u)")
        value = int(raw[:-1])
        if not INT_MIN <= value < INT_MAX:
            raise ValueError("integer value outside the signed 64-bit range")
        return value
    if not _FLOAT.fullmatch(raw):
        raise ValueError(f"{raw[:40]!r} is not a number, a boolean or a double-quoted string")
    number = float(raw)
    if not math.isfinite(number):
        raise ValueError("value must be finite")
    return number


def parse(body: str, precision: str = "ns", now_ns: int | None = None,
          max_values: int | None = None) -> ParsedLines:
    """Parse a line-protocol body into a frame; ``ValueError`` only for an unknown precision. With
    ``max_values``, parsing stops as soon as the frame would hold more values than that
    (``over_limit``), within a point too — its fields are counted while they are split, before any
    is read: a body refused for its size costs the parse of ``max_values`` values, not of all of it
    (a point with more fields than the limit leaves is refused so even if a later field of it is
    bad)."""
    if precision not in PRECISION_NS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISION_NS)}")
    scale = PRECISION_NS[precision]
    default_ns = time.time_ns() if now_ns is None else now_ns
    out = ParsedLines()
    budget: int | None = None
    for point in points(body):
        text = point.text
        line = (text[:-1] if text.endswith("\r") else text).strip(" \t")
        if not line or line.startswith("#"):
            continue
        if point.unterminated:
            out.errors.append((point.first, _unterminated(point)))
            continue
        if max_values is not None:
            budget = max_values - len(out.frame)
        try:
            _parse_line(line, scale, default_ns, out, budget)
        except _OverLimit:
            out.over_limit = True
            break
        except ValueError as exc:
            where = f" (the point spans lines {point.first}-{point.last})" if point.last > point.first else ""
            out.errors.append((point.first, f"{exc}{where}"))
        if max_values is not None and len(out.frame) > max_values:
            out.over_limit = True
            break
    return out


def _unterminated(point: Point) -> str:
    """The reason refusing ``point``, whose string value is never closed."""
    reason = "unterminated string field value"
    if point.last == point.first:
        return reason
    return (f"{reason}: a double quote opened in its field values is never closed, so lines "
            f"{point.first}-{point.last} (to the end of the body) are read as one point, as InfluxDB "
            "reads them — refused, none of them stored")


def _head_end(line: str) -> int:
    """Index of the first unescaped space: the end of the measurement and tags (-1 if none).

    Quotes mean nothing there (only in string field values): ``descr=12"_pipe`` is a tag value."""
    i = line.find(" ")
    while i > 0 and line[i - 1] == "\\":
        j = i - 1  # the run of backslashes before the space, counted without copying: the runs
        while j > 0 and line[j - 1] == "\\":  # before successive spaces are disjoint, so this is
            j -= 1  # linear in the line (``line[:i].rstrip`` copied the line per escaped space)
        if (i - j) % 2 == 0:
            break
        i = line.find(" ", i + 1)
    return i


def _parse_line(line: str, scale: int, default_ns: int, out: ParsedLines, budget: int | None = None) -> None:
    """Parse one point into ``out``; ``ValueError`` for a bad one, :class:`_OverLimit` (found while
    its fields are split, before they are read) for one with more than ``budget`` fields."""
    end = _head_end(line)
    sections = [line[:end], *_split_fields(line[end + 1:], " ", budget)] if end > 0 else [line]
    sections = [s for s in sections if s]
    if len(sections) not in (2, 3):
        raise ValueError("expected 'measurement,tags fields [timestamp]'")
    head = _split(sections[0], ",")
    measurement = _unescape(head[0])
    if not measurement:
        raise ValueError("missing measurement name")
    tags: dict[str, str] = {}
    for pair in head[1:]:
        kv = _split(pair, "=", maxsplit=1)
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ValueError(f"tag {pair!r} is not key=value")
        key = _unescape(kv[0])
        if key in tags:  # influxd refuses the point too ("duplicate tags"); last-wins hid a value
            raise ValueError(f"duplicate tag key {key!r}: a tag may appear once per point")
        tags[key] = _unescape(kv[1])
    missing = [t for t in _ASSET_TAGS if t not in tags]
    if missing:
        raise ValueError(f"missing tag(s) {', '.join(missing)}: "
                         "tags site, area, line, machine name the asset")
    asset = AssetPath(*(tags[t] for t in _ASSET_TAGS))
    unit = tags.get("unit")
    if unit is not None and len(unit) > MAX_UNIT:
        raise ValueError(f"tag unit must be at most {MAX_UNIT} characters")
    quality = tags.get("quality", "good")
    if quality not in QUALITY_NAMES:
        raise ValueError(f"tag quality must be one of good, uncertain, bad; got {quality!r}")
    ignored = len(set(tags) - {*_ASSET_TAGS, "unit", "quality"})
    if len(sections) == 3:
        raw_ts = sections[2]
        if not _INT.fullmatch(raw_ts):
            raise ValueError(f"timestamp {raw_ts[:40]!r} is not an integer (ASCII digits)")
        ts_ns = int(raw_ts) * scale
        if not -MAX_NS <= ts_ns <= MAX_NS:
            raise ValueError(f"timestamp {raw_ts[:40]} (precision {_PRECISION_NAMES[scale]}) is outside "
                             "InfluxDB's range, 1677-09-21 to 2262-04-11")
    else:
        ts_ns = default_ns
    fields: list[tuple[str, float | int | bool | str]] = []
    for pair in _split_fields(sections[1], ",", budget):
        kv = _split(pair, "=", maxsplit=1)
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ValueError(f"field {pair!r} is not key=value")
        key = _unescape(kv[0])
        signal = key if measurement in PLAIN_MEASUREMENTS else f"{measurement}.{key}"
        if not valid_signal(signal):
            raise ValueError(f"signal name {signal!r} (from field {key!r}) is invalid")
        try:
            fields.append((signal, _field_value(kv[1])))
        except ValueError as exc:
            raise ValueError(f"field {key!r}: {exc}") from None
    a = str(asset)
    for signal, value in fields:
        out.frame.append_raw(a, signal, ts_ns // 1000, value, unit=unit, quality=quality)
    out.ignored_tags += ignored
