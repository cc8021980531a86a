"""JSON payload mappings: vendor MQTT messages → :class:`~zhizao.model.Sample` s, by configuration.

A :class:`JsonMapping` says, for the topics matching ``topic``:

- ``asset``: a template ``"plant1/a1/{line}/{machine}"`` filled from the topic's named wildcards
  (and fixed levels), with ``assets`` overriding the whole path per machine name;
- ``timestamp``: the field path (``ts``, ``header.time``, ``values[0].t``) and its format
  (``epoch_ms``, ``epoch_s``, ``epoch_us`` — a number or a numeric string —, ``iso8601`` or a
  ``strftime`` pattern with ``%`` directives, with ``tz`` for zoneless values); or
  ``source = "receive"``: the payload has no timestamp, the time the message is mapped is used.
  A payload timestamp before 2000-01-01 or after 2262-04-11 (the last time every store holds) is
  refused, naming the unit the value looks like (an epoch in seconds configured as ``epoch_ms``
  would be stored in January 1970, epoch milliseconds configured as ``epoch_s`` some 57,000 years
  ahead); with ``max_ahead_s`` set, so is one more than that many seconds ahead of the agent's
  clock (off by default: simulated data runs ahead of the wall clock; set it for real devices);
- ``values``: where the signals are — ``layout = "object"`` (``{"<signal>": {"value": v, "unit": u}}``
  or ``{"<signal>": v}``), ``"list"`` (``[{"name": s, "v": v, "uom": u, "q": 192}]``), ``"flat"``
  (the named fields of an object are the signals) or ``"value"`` (one signal per message: the
  value at ``path`` — by default the whole payload: ``23.5``, ``true``, ``"running"`` or plain
  text ``running`` —, named by ``signal``, a template over the topic's captures: ``"{signal}"``);
- quality: a per-entry field (``values.quality_field``) or a per-signal object
  (``quality.path`` → ``{"<signal>": "ok"}``), translated with ``quality.map``.

:meth:`PayloadMapper.map` returns the samples it could build and a problem per part it could not;
a payload that does not parse or whose topic/asset/timestamp does not map raises
:class:`MappingError`. Nothing here imports an MQTT library: the gateway reuses it for raw
vendor topics.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import isfinite
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import Field, ValidationInfo, field_validator, model_validator

from edge_agent.mapping.topics import TopicPattern, filter_covers, filters_overlap
from zhizao.config import StrictModel
from zhizao.errors import ZhizaoError
from zhizao.model import (
    MAX_UNIT,
    AssetPath,
    Quality,
    Sample,
    check_value,
    trusted_sample,
    valid_signal,
)

_PATH_RE: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_SCALE: Final = {"epoch_s": 1.0, "epoch_ms": 1e-3, "epoch_us": 1e-6}
_UNIT_NAMES: Final = {"epoch_s": "seconds", "epoch_ms": "milliseconds", "epoch_us": "microseconds"}
FORMATS: Final = ("epoch_s", "epoch_ms", "epoch_us", "iso8601")
"""The format words; any other format is a ``strftime`` pattern and must hold a ``%`` directive."""
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""Payload timestamps before this are refused (a unit mistake, or a device clock never set)."""
_EARLIEST_S: Final = EARLIEST.timestamp()
LATEST: Final = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
"""Payload timestamps after this are refused: the last microsecond InfluxDB stores (its range ends at
2262-04-11T23:47:16.854775806Z, ``ingest.lineproto.MAX_NS``; ingest refuses nothing before 9999 but
drops what InfluxDB cannot hold). An epoch in milliseconds read as seconds lands far beyond it."""
_LATEST_S: Final = LATEST.timestamp()
_ZERO: Final = timedelta(0)
_CACHE_MAX: Final = 10_000
"""Entries of each per-mapper cache (topics, valid signal names); emptied when full."""
_PATHS: dict[str, list[tuple[str, str]]] = {}
"""Field path -> its parsed parts (paths come from configuration: few)."""


class MappingError(ZhizaoError):
    """A message could not be mapped at all; ``reason`` says why, ``kind`` is its class (``json``,
    ``topic``, ``asset``, ``timestamp``, ``values``), ``mapping`` the name of the mapping that
    matched the topic (``None`` when none did)."""

    def __init__(self, reason: str, kind: str = "payload", mapping: str | None = None) -> None:
        self.reason = reason
        self.kind = kind
        self.mapping = mapping
        super().__init__(reason)


def template_names(template: str, what: str) -> list[str]:
    """The ``{name}`` fields of a template; ``ValueError`` for ``{}``, ``{0}``, ``{a.b}``, ``{a!r}``,
    ``{a:>3}`` or unbalanced braces (``what`` names the template in the message)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{what} {template!r}: {exc}") from None
    for _text, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"{what} {template!r}: {{{name}}} is not a topic capture name "
                             "(write {name} for a +name or #name level of the topic)")
        names.append(name)
    return names


def _iso(seconds: float) -> str:
    try:
        return (_EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return "beyond the year 9999" if seconds > 0 else "before the year 1"


def get_path(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` (``a.b[2].c``; ``""`` is ``doc``); ``KeyError`` names what is missing."""
    if not path:
        return doc
    parts = _PATHS.get(path)
    if parts is None:
        parts = _PATH_RE.findall(path)
        if len(_PATHS) < _CACHE_MAX:
            _PATHS[path] = parts
    cur = doc
    for key, index in parts:
        if key:
            if not isinstance(cur, dict) or key not in cur:
                raise KeyError(f"field {path!r}: no {key!r}")
            cur = cur[key]
        else:
            i = int(index)
            if not isinstance(cur, list) or i >= len(cur):
                raise KeyError(f"field {path!r}: no element [{i}]")
            cur = cur[i]
    return cur


class TimestampSpec(StrictModel):
    """Where the source timestamp is and how it is written."""

    source: Literal["payload", "receive"] = "payload"
    """``payload``: the timestamp is the payload's ``field``; ``receive``: the payload has none, the
    time the message is mapped is used (``field`` is then not given)."""
    field: str | None = "ts"
    """Field path (``None`` only with ``source = "receive"``; YAML/JSON ``field: null`` still means
    ``source = "receive"``)."""
    format: str = "epoch_ms"
    """``epoch_s`` | ``epoch_ms`` | ``epoch_us`` | ``iso8601`` | a ``strftime`` pattern."""
    tz: str = "UTC"
    """Zone for timestamps written without an offset."""
    max_ahead_s: float | None = Field(None, gt=0)
    """When set, a payload timestamp more than this many seconds ahead of the agent's clock is
    refused (a device clock far ahead); unset (the default), only times after :data:`LATEST` are —
    simulated data is stamped with scenario time, which may run ahead of the wall clock (a future
    start, ``--speed``). Times before :data:`EARLIEST` are refused either way."""

    @model_validator(mode="before")
    @classmethod
    def _receive(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "field" in data and data["field"] is None:  # the YAML/JSON null form
            if data.get("source", "receive") != "receive":
                raise ValueError('field null means the receive time: source must be "receive"')
            return {**data, "source": "receive"}
        if data.get("source") == "receive":
            if "field" in data:
                raise ValueError('source = "receive" takes no field (the payload has no timestamp): '
                                 "remove field, or remove source to read the timestamp from the payload")
            return {**data, "field": None}
        return data

    @field_validator("field")
    @classmethod
    def _field(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError('field is empty: name the payload field holding the timestamp, or write '
                             'timestamp = { source = "receive" } for payloads without one')
        return v

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v not in FORMATS and "%" not in v:
            raise ValueError(f"unknown format {v!r}: use one of {', '.join(FORMATS)} or a strftime "
                             "pattern with % directives (e.g. '%d.%m.%Y %H:%M:%S')")
        return v

    @field_validator("tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    def parse(self, raw: Any, now: float | None = None) -> datetime:
        """The UTC time of payload value ``raw``; ``ValueError`` when it does not parse, is before
        :data:`EARLIEST` or after :data:`LATEST`, or (``max_ahead_s`` set) more than ``max_ahead_s``
        ahead of ``now`` (epoch seconds; default: the clock)."""
        fmt = self.format
        scale = _EPOCH_SCALE.get(fmt)
        latest = _LATEST_S
        if self.max_ahead_s is not None:
            if now is None:
                now = time.time()
            latest = min(latest, now + self.max_ahead_s)
        if scale is not None:
            num: int | float
            if isinstance(raw, str):  # "1795574693907": vendors quote numbers
                try:
                    num = int(raw.strip())
                except ValueError:
                    try:
                        num = float(raw.strip())
                    except ValueError:
                        raise ValueError(f"timestamp {raw!r} is not a number ({fmt})") from None
            elif isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"timestamp {raw!r} is not a number ({fmt})")
            else:
                num = raw
            if not isfinite(num):
                raise ValueError(f"timestamp {raw!r} is not a finite number ({fmt})")
            seconds = num * scale
            if not _EARLIEST_S <= seconds <= latest:
                raise ValueError(self._implausible(raw, seconds, now, latest, num))
            if fmt == "epoch_ms" and isinstance(num, int):
                return _EPOCH + timedelta(milliseconds=num)
            return _EPOCH + timedelta(seconds=seconds)
        if not isinstance(raw, str):
            raise ValueError(f"timestamp {raw!r} is not a string ({fmt})")
        if fmt == "iso8601":
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
        else:
            ts = datetime.strptime(raw, fmt)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=ZoneInfo(self.tz))
        ts = ts.astimezone(UTC)
        seconds = ts.timestamp()
        if not _EARLIEST_S <= seconds <= latest:
            raise ValueError(self._implausible(raw, seconds, now, latest, None))
        return ts

    def _implausible(
        self, raw: Any, seconds: float, now: float | None, latest: float, num: float | None
    ) -> str:
        """Why a timestamp is refused, with the epoch unit the number looks like (if one fits
        between :data:`EARLIEST` and ``latest``)."""
        if seconds < _EARLIEST_S:
            why = "before 2000-01-01, the earliest accepted"
        elif seconds > _LATEST_S or now is None:
            why = "after 2262-04-11, the latest the stores hold"
        else:
            why = (f"more than {self.max_ahead_s:g} s (timestamp.max_ahead_s) ahead of this agent's clock "
                   f"({_iso(now)})")
        text = f"{raw!r} read as {self.format} is {_iso(seconds)}, {why}"
        if num is not None:
            for fmt, scale in _EPOCH_SCALE.items():
                if fmt != self.format and _EARLIEST_S <= num * scale <= latest:
                    return f"{text}; the value looks like epoch {_UNIT_NAMES[fmt]} (format = {fmt!r})"
        return text


class ValuesSpec(StrictModel):
    """Where the signals of a payload are (see the module docstring for the layouts)."""

    layout: Literal["object", "list", "flat", "value"] = "object"
    path: str = ""
    signal: str | None = None
    """Layout ``value`` only (and required there): the one signal's name, a template over the
    topic's captures (``"{signal}"`` for ``sensors/+machine/+signal``) or a fixed name."""
    name_field: str = "name"
    value_field: str | None = "value"
    """Field of an entry holding the value; ``None`` when the entry is the value itself."""
    unit_field: str | None = "unit"
    quality_field: str | None = None
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)


class QualitySpec(StrictModel):
    """How payload quality words/codes become :class:`~zhizao.model.Quality`."""

    path: str | None = None
    """Path of a per-signal quality object (``status`` → ``{"<signal>": "ok"}``), if any."""
    map: dict[str, Quality] = Field(default_factory=dict)
    """Payload value (as text: ``"ok"``, ``"192"``) → ``good`` | ``uncertain`` | ``bad``."""
    default: Quality = Quality.GOOD
    """Quality when the payload says nothing about a signal."""

    @field_validator("map")
    @classmethod
    def _lower(cls, v: dict[str, Quality]) -> dict[str, Quality]:
        return {k.lower(): q for k, q in v.items()}


def quality_key(raw: Any) -> str:
    """The ``quality.map`` key of a payload quality value: its text lower-cased (``true``/``false``
    for JSON booleans, ``192`` for ``192`` and ``192.0``)."""
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw).lower()


class JsonMapping(StrictModel):
    """One vendor shape (see the module docstring and ``connectors/mqtt/*.toml``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    topic: str
    asset: str
    assets: dict[str, str] = Field(default_factory=dict)
    timestamp: TimestampSpec = Field(default_factory=TimestampSpec)
    values: ValuesSpec = Field(default_factory=ValuesSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    units: dict[str, str] = Field(default_factory=dict)
    rename: dict[str, str] = Field(default_factory=dict)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        TopicPattern(v)
        return v

    @field_validator("asset")
    @classmethod
    def _asset(cls, v: str, info: ValidationInfo) -> str:
        topic = info.data.get("topic")
        if topic is None:  # the topic is invalid: reported on its own
            return v
        pattern = TopicPattern(topic)
        names = template_names(v, "template")
        unknown = [n for n in names if n not in pattern.names]
        if unknown:
            have = ", ".join(pattern.names) or "none"
            raise ValueError(f"template {v!r} uses {{{unknown[0]}}}, which topic {topic!r} does not "
                             f"capture (its captures: {have}; +name captures a level)")
        if pattern.rest_name not in names:  # each capture fills one level: the levels are known
            filled = v.format(**{n: "x" for n in names})
            try:
                AssetPath.parse(filled)
            except ValueError as exc:
                raise ValueError(f"template {v!r}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _signal(self) -> JsonMapping:
        vs = self.values
        if vs.layout != "value":
            if vs.signal is not None:
                raise ValueError('values.signal is for layout = "value" only (the other layouts name '
                                 "their signals in the payload)")
            return self
        if vs.signal is None:
            raise ValueError('values.signal is required with layout = "value": the signal name, e.g. '
                             '"{signal}" for a topic like sensors/+machine/+signal')
        pattern = TopicPattern(self.topic)
        names = template_names(vs.signal, "values.signal")
        unknown = [n for n in names if n not in pattern.names]
        if unknown:
            raise ValueError(f"values.signal {vs.signal!r} uses {{{unknown[0]}}}, which topic "
                             f"{self.topic!r} does not capture")
        return self

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: dict[str, str]) -> dict[str, str]:
        for path in v.values():
            AssetPath.parse(path)
        return v


@dataclass
class MapResult:
    """Samples built from one message, and one problem text per part that could not be mapped."""

    mapping: str
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_mappings(mappings: Sequence[JsonMapping]) -> None:
    """``ValueError`` naming the mappings when two share a name, when one is never used (an
    earlier one's topic matches every topic it does) or when the subscription filters overlap
    without one covering the other (a broker would deliver such a message once per matching
    subscription: stored twice). A filter covered by another is not subscribed to
    (:attr:`PayloadMapper.filters`): one subscription delivers it, the first matching mapping maps
    it."""
    seen: dict[str, int] = {}
    for i, m in enumerate(mappings):
        if m.name in seen:
            raise ValueError(f"mappings[{seen[m.name]}] and mappings[{i}] are both named {m.name!r}: "
                             "mapping names must be unique")
        seen[m.name] = i
    filters = [TopicPattern(m.topic).filter for m in mappings]
    for j, later in enumerate(mappings):
        for i in range(j):
            if filter_covers(filters[i], filters[j]):
                raise ValueError(
                    f"mapping {later.name!r} (topic {later.topic!r}) is never used: mapping "
                    f"{mappings[i].name!r} (topic {mappings[i].topic!r}) is listed before it and matches "
                    "every topic it does (the first matching mapping maps a message): list the more "
                    "specific mapping first")
    cover = cover_filters(filters)
    for j, b in enumerate(cover):
        for a in cover[:j]:
            if filters_overlap(a, b):
                na = next(m.name for m, f in zip(mappings, filters, strict=True) if f == a)
                nb = next(m.name for m, f in zip(mappings, filters, strict=True) if f == b)
                raise ValueError(
                    f"the topics of mappings {na!r} ({a}) and {nb!r} ({b}) overlap and neither covers "
                    "the other: the broker would deliver a message matching both twice (stored "
                    "twice); make them disjoint, or add a mapping whose topic covers both after them")


def cover_filters(filters: Sequence[str]) -> list[str]:
    """The filters not covered by another one (sorted, each once): subscribing to these alone
    delivers every topic any of ``filters`` matches, once when they do not overlap."""
    unique = sorted(set(filters))
    return [f for f in unique if not any(g != f and filter_covers(g, f) for g in unique)]


class PayloadMapper:
    """Applies the first mapping whose topic pattern matches a message.

    Per message, the topic's mapping and asset path are looked up in a cache (topics repeat), and
    each field :class:`~zhizao.model.Sample` checks is checked once: the signal name (valid names
    cached), the value, the unit here and the timestamp once per message; the samples are then
    built without ``Sample.__post_init__`` running the same checks again
    (:func:`~zhizao.model.trusted_sample`).
    A timestamp that is not UTC (a naive ``received``) goes through ``Sample`` and fails there, for
    each sample, as before."""

    def __init__(self, mappings: list[JsonMapping]) -> None:
        self.mappings = [(m, TopicPattern(m.topic)) for m in mappings]
        self._assets: dict[str, AssetPath] = {}
        self._routes: dict[str, tuple[JsonMapping, AssetPath, str | None]] = {}
        """Topic -> its mapping and asset path (only topics that mapped; at most ``_CACHE_MAX``)."""
        self._signals: set[str] = set()
        """Signal names seen valid (at most ``_CACHE_MAX``)."""

    @property
    def filters(self) -> list[str]:
        """The MQTT subscription filters: those of the mappings not covered by another mapping's
        (:func:`cover_filters`; a message is then delivered once, see :func:`check_mappings`)."""
        return cover_filters([p.filter for _, p in self.mappings])

    @property
    def covered_filters(self) -> list[str]:
        """The mappings' filters not subscribed to (covered by another): an earlier version
        subscribed to them, a persistent session may still hold them."""
        cover = set(self.filters)
        return sorted({p.filter for _, p in self.mappings} - cover)

    def map(self, topic: str, payload: bytes, received: datetime | None = None) -> MapResult:
        """Map one message; ``MappingError`` when nothing of it can be used. ``received``: the
        receive time (``timestamp.source = "receive"``, and the clock payload timestamps are
        checked against; default now)."""
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        return self._apply(route[0], route[1], route[2], payload, received)

    def _route(self, topic: str) -> tuple[JsonMapping, AssetPath, str | None]:
        for mapping, pattern in self.mappings:
            captures = pattern.match(topic)
            if captures is not None:
                signal = mapping.values.signal
                route = (mapping, self._asset(mapping, captures),
                         signal.format(**captures) if signal is not None else None)
                if len(self._routes) >= _CACHE_MAX:
                    self._routes.clear()
                self._routes[topic] = route
                return route
        raise MappingError(f"no mapping matches topic {topic!r}", "topic")

    def _asset(self, mapping: JsonMapping, captures: dict[str, str]) -> AssetPath:
        override = mapping.assets.get(captures.get("machine", ""))
        try:
            text = override or mapping.asset.format(**captures)
        except KeyError as exc:
            raise MappingError(
                f"asset template {mapping.asset!r} uses {exc} which the topic does not capture",
                "asset", mapping.name,
            ) from None
        asset = self._assets.get(text)
        if asset is None:
            try:
                asset = AssetPath.parse(text)
            except ValueError as exc:
                raise MappingError(f"asset from topic: {exc}", "asset", mapping.name) from None
            self._assets[text] = asset
        return asset

    @staticmethod
    def _document(mapping: JsonMapping, payload: bytes) -> Any:
        """The payload parsed as JSON; with layout ``value`` on the whole payload, a body that is
        not JSON is a string (plain text ``running``), unless it looks like a JSON object/array."""
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            vs = mapping.values
            if vs.layout == "value" and not vs.path:
                try:
                    text = payload.decode().strip()
                except UnicodeDecodeError:
                    raise MappingError("payload is neither JSON nor UTF-8 text", "json",
                                       mapping.name) from None
                if not text:
                    raise MappingError("payload is empty", "json", mapping.name) from None
                if not text.startswith(("{", "[", '"')):
                    return text
            raise MappingError(f"payload is not valid JSON: {exc}", "json", mapping.name) from None

    def _apply(
        self, mapping: JsonMapping, asset: AssetPath, one_signal: str | None, payload: bytes,
        received: datetime | None,
    ) -> MapResult:
        doc = self._document(mapping, payload)
        vs = mapping.values
        try:
            entries = self._entries(vs, doc, one_signal)
        except KeyError as exc:
            raise MappingError(f"values: {exc.args[0]}", "values", mapping.name) from None
        spec = mapping.timestamp
        if spec.field is None:
            ts = received or datetime.now(UTC)
        else:
            try:
                ts = spec.parse(get_path(doc, spec.field),
                                received.timestamp() if received is not None else None)
            except KeyError as exc:
                hint = ' (a payload without a timestamp: timestamp = { source = "receive" })'
                raise MappingError(f"timestamp: {exc.args[0]}{hint}", "timestamp", mapping.name) from None
            except (ValueError, OverflowError) as exc:
                raise MappingError(f"timestamp field {spec.field!r}: {exc}", "timestamp",
                                   mapping.name) from None
        qualities: Any = {}
        if mapping.quality.path:
            try:
                qualities = get_path(doc, mapping.quality.path)
            except KeyError:
                qualities = {}
        result = MapResult(mapping.name)
        samples, problems = result.samples, result.problems
        # what each sample needs, read once per message (the checks and their order are those of
        # the one-sample-at-a-time version: name, value field, quality, value, unit)
        include, exclude, rename, units = vs.include, vs.exclude, mapping.rename, mapping.units
        entry_fields = vs.layout != "flat"
        value_field, unit_field, quality_field = vs.value_field, vs.unit_field, vs.quality_field
        qmap, quality_default = mapping.quality.map, mapping.quality.default
        per_signal = qualities if isinstance(qualities, dict) else None
        build = trusted_sample if ts.tzinfo is not None and ts.utcoffset() == _ZERO else Sample
        valid = self._signals
        for name, entry in entries:
            if (include is not None and name not in include) or name in exclude:
                continue
            try:
                signal = rename.get(name, name)
                if signal not in valid:
                    if not valid_signal(signal):
                        raise ValueError("not a valid signal name")
                    if len(valid) >= _CACHE_MAX:
                        valid.clear()
                    valid.add(signal)
                unit: Any = units.get(signal)
                quality_raw: Any = None
                if entry_fields and isinstance(entry, dict):
                    if value_field is None or value_field not in entry:
                        raise KeyError(f"no value field {value_field!r}")
                    value = entry[value_field]
                    if unit_field and entry.get(unit_field) is not None:
                        unit = entry[unit_field]
                    if quality_field:
                        quality_raw = entry.get(quality_field)
                else:
                    value = entry
                if per_signal is not None and name in per_signal:
                    quality_raw = per_signal[name]
                quality = quality_default
                if quality_raw is not None:
                    key = quality_key(quality_raw)
                    if key not in qmap:
                        raise ValueError(f"quality {quality_raw!r} is not in quality.map")
                    quality = qmap[key]
                if value is None:
                    raise ValueError("value is null")
                if type(value) is not float or not isfinite(value):
                    check_value(value)  # a finite float is valid: the common case skips the call
                if unit == "":
                    unit = None  # vendors write "" for unitless signals
                if unit is not None and (not isinstance(unit, str) or len(unit) > MAX_UNIT):
                    raise ValueError(f"unit {unit!r} is not a string of at most {MAX_UNIT} characters")
                samples.append(build(asset, signal, ts, value, unit, quality))
            except (ValueError, KeyError) as exc:
                reason = exc.args[0] if exc.args else str(exc)
                problems.append(f"signal {name!r}: {reason}")
        if not samples and not problems:
            raise MappingError(f"no signals found at values.path {vs.path!r} ({vs.layout} layout)",
                               "values", mapping.name)
        return result

    @staticmethod
    def _entries(vs: ValuesSpec, doc: Any, one_signal: str | None) -> list[tuple[str, Any]]:
        where = get_path(doc, vs.path)
        if one_signal is not None:  # layout "value": the one signal named from the topic
            return [(one_signal, where)]
        if vs.layout == "list":
            if not isinstance(where, list):
                raise KeyError(f"{vs.path!r} is not a list")
            out = []
            for i, item in enumerate(where):
                if not isinstance(item, dict) or not isinstance(item.get(vs.name_field), str):
                    out.append((f"[{i}]", item))
                else:
                    out.append((item[vs.name_field], item))
            return out
        if not isinstance(where, dict):
            raise KeyError(f"{vs.path!r} is not an object")
        return list(where.items())


