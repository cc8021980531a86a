"""JSON payload mappings: vendor MQTT messages → :class:`~zhizao.model.Sample` s, by configuration.

A :class:`JsonMapping` says, for the topics matching ``topic``:

- ``asset``: a template ``"plant1/a1/{line}/{machine}"`` filled from the topic's named wildcards
  (and fixed levels), with ``assets`` overriding the whole path per machine name;
- ``timestamp``: the field path (``ts``, ``header.time``, ``values[0].t``) and its format
  (``epoch_ms``, ``epoch_s``, ``epoch_us``, ``iso8601`` or a ``strftime`` pattern, with ``tz`` for
  zoneless values);
- ``values``: where the signals are — ``layout = "object"`` (``{"<signal>": {"value": v, "unit": u}}``
  or ``{"<signal>": v}``), ``"list"`` (``[{"name": s, "v": v, "uom": u, "q": 192}]``) or ``"flat"``
  (the named fields of an object are the signals);
- quality: a per-entry field (``values.quality_field``) or a per-signal object
  (``quality.path`` → ``{"<signal>": "ok"}``), translated with ``quality.map``.

:meth:`PayloadMapper.map` returns the samples it could build and a problem per part it could not;
a payload that does not parse or whose topic/asset/timestamp does not map raises
:class:`MappingError`. Nothing here imports an MQTT library: the gateway reuses it for raw
vendor topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import isfinite
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import Field, field_validator

from edge_agent.mapping.topics import TopicPattern
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
_ZERO: Final = timedelta(0)
_CACHE_MAX: Final = 10_000
"""Entries of each per-mapper cache (topics, valid signal names); emptied when full."""
_PATHS: dict[str, list[tuple[str, str]]] = {}
"""Field path -> its parsed parts (paths come from configuration: few)."""


class MappingError(ZhizaoError):
    """A message could not be mapped at all; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


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

    field: str | None = "ts"
    """Field path; ``None`` = no timestamp in the payload: the receive time is used."""
    format: str = "epoch_ms"
    """``epoch_s`` | ``epoch_ms`` | ``epoch_us`` | ``iso8601`` | a ``strftime`` pattern."""
    tz: str = "UTC"
    """Zone for timestamps written without an offset."""

    @field_validator("tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    def parse(self, raw: Any) -> datetime:
        if self.format in _EPOCH_SCALE:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"timestamp {raw!r} is not a number ({self.format})")
            if self.format == "epoch_ms" and isinstance(raw, int):
                return _EPOCH + timedelta(milliseconds=raw)
            return _EPOCH + timedelta(seconds=raw * _EPOCH_SCALE[self.format])
        if not isinstance(raw, str):
            raise ValueError(f"timestamp {raw!r} is not a string ({self.format})")
        if self.format == "iso8601":
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
        else:
            ts = datetime.strptime(raw, self.format)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=ZoneInfo(self.tz))
        return ts.astimezone(UTC)


class ValuesSpec(StrictModel):
    """Where the signals of a payload are (see the module docstring for the layouts)."""

    layout: Literal["object", "list", "flat"] = "object"
    path: str = ""
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
        self._routes: dict[str, tuple[JsonMapping, AssetPath]] = {}
        """Topic -> its mapping and asset path (only topics that mapped; at most ``_CACHE_MAX``)."""
        self._signals: set[str] = set()
        """Signal names seen valid (at most ``_CACHE_MAX``)."""

    @property
    def filters(self) -> list[str]:
        """The MQTT subscription filters of all mappings."""
        return sorted({p.filter for _, p in self.mappings})

    def map(self, topic: str, payload: bytes, received: datetime | None = None) -> MapResult:
        """Map one message; ``MappingError`` when nothing of it can be used."""
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        return self._apply(route[0], route[1], payload, received)

    def _route(self, topic: str) -> tuple[JsonMapping, AssetPath]:
        for mapping, pattern in self.mappings:
            captures = pattern.match(topic)
            if captures is not None:
                route = (mapping, self._asset(mapping, captures))
                if len(self._routes) >= _CACHE_MAX:
                    self._routes.clear()
                self._routes[topic] = route
                return route
        raise MappingError(f"no mapping matches topic {topic!r}")

    def _asset(self, mapping: JsonMapping, captures: dict[str, str]) -> AssetPath:
        override = mapping.assets.get(captures.get("machine", ""))
        try:
            text = override or mapping.asset.format(**captures)
        except KeyError as exc:
            raise MappingError(
                f"asset template {mapping.asset!r} uses {exc} which the topic does not capture"
            ) from None
        asset = self._assets.get(text)
        if asset is None:
            try:
                asset = AssetPath.parse(text)
            except ValueError as exc:
                raise MappingError(f"asset from topic: {exc}") from None
            self._assets[text] = asset
        return asset

    def _apply(
        self, mapping: JsonMapping, asset: AssetPath, payload: bytes, received: datetime | None
    ) -> MapResult:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise MappingError(f"payload is not valid JSON: {exc}") from None
        spec = mapping.timestamp
        if spec.field is None:
            ts = received or datetime.now(UTC)
        else:
            try:
                ts = spec.parse(get_path(doc, spec.field))
            except KeyError as exc:
                raise MappingError(f"timestamp: {exc.args[0]}") from None
            except (ValueError, OverflowError) as exc:
                raise MappingError(f"timestamp field {spec.field!r}: {exc}") from None
        vs = mapping.values
        try:
            entries = self._entries(vs, doc)
        except KeyError as exc:
            raise MappingError(f"values: {exc.args[0]}") from None
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
                    key = str(quality_raw).lower() if not isinstance(quality_raw, bool) else str(quality_raw)
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
            raise MappingError(f"no signals found at values.path {vs.path!r} ({vs.layout} layout)")
        return result

    @staticmethod
    def _entries(vs: ValuesSpec, doc: Any) -> list[tuple[str, Any]]:
        where = get_path(doc, vs.path)
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


