"""Read API: series (raw or bucketed), latest values, catalogue."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from ingest.api.deps import CanRead, StoreDep
from ingest.api.times import QueryTime, aware
from ingest.problems import Problem
from ingest.storage.base import Agg, SeriesQuery
from zhizao.model import AssetPath, check_asset_prefix, valid_signal
from zhizao.wire import format_ts

router = APIRouter(prefix="/api/v1", tags=["read"])
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> timedelta:
    """``"60s"``, ``"5m"``, ``"1h"``, ``"250ms"`` or plain seconds; ``ValueError`` otherwise."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"duration {text!r} is not like 60s, 5m, 1h, 250ms")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 1e-6 <= seconds <= 366 * 86400:
        raise ValueError(f"duration {text!r} must be between 1us and 366d")
    return timedelta(seconds=seconds)


class SeriesOut(BaseModel):
    asset: str
    signal: str
    unit: str | None
    ts: list[str] | list[int]
    values: list[float | int | bool | str | None]
    quality: list[str] | None


class SeriesResponse(BaseModel):
    series: list[SeriesOut]


@router.get("/series", response_model=SeriesResponse)
async def get_series(
    *, store: StoreDep, _auth: CanRead,
    asset: Annotated[str, Query(description="site, site/area, site/area/line or site/area/line/machine")],
    start: Annotated[QueryTime, Query(description="inclusive, RFC 3339 with offset, or a date = 00:00Z")],
    end: Annotated[QueryTime, Query(description="exclusive, RFC 3339 with offset, or a date = 00:00Z")],
    signal: Annotated[list[str] | None, Query(description="repeat for several; none = all")] = None,
    agg: Annotated[Agg | None, Query(description="bucket aggregate; none = raw points")] = None,
    bucket: Annotated[str | None, Query(description="bucket width: 60s, 5m; default range/limit")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000, description="max points per series")] = 100_000,
    epoch: Annotated[Literal["us", "ms"] | None, Query(description="integer timestamps instead of RFC 3339")]
    = None,
) -> Response:
    """Points of the signals of one machine or everything under a line/area/site, in time order.

    One series per (asset, signal, unit): a signal reported in two units, or whose unit changed in
    the range, comes as two series, each with its unit (samples without a unit as one more, unit
    ``null``) — never mixed in one; sorted by asset, signal, unit (``null`` first).
    Raw: the earliest ``limit`` points per series. Bucketed: one point per non-empty bucket aligned
    to the epoch, at most ``limit``; strings are aggregated with ``last`` (``count`` counts them).
    """
    try:
        check_asset_prefix(asset)
    except ValueError as exc:
        raise Problem(422, f"asset: {exc}", reason="bad_query") from None
    for name in signal or ():  # never into a store's query language unchecked
        if not valid_signal(name):
            raise Problem(422, f"signal: {name[:80]!r} is not a valid signal name (letters, digits, _ . -; "
                          "starting with a letter or _; at most 128 characters)", reason="bad_query")
    try:
        q = SeriesQuery(asset=asset, start=aware(start, "start"), end=aware(end, "end"),
                        signals=tuple(signal or ()), agg=agg,
                        bucket=parse_duration(bucket) if bucket else None, limit=limit, by_unit=True)
    except ValueError as exc:
        raise Problem(422, str(exc), reason="bad_query") from None
    result = await store.query(q)
    out: list[dict[str, Any]] = []
    for s in result:
        if epoch == "us":
            ts: list[Any] = s.ts_us.tolist()
        elif epoch == "ms":
            ts = (s.ts_us // 1000).tolist()
        else:
            ts = s.iso_timestamps()
        out.append({"asset": s.asset, "signal": s.signal, "unit": s.unit, "ts": ts, "values": s.values(),
                    "quality": None if s.quality is None else s.quality.tolist()})
    return Response(orjson.dumps({"series": out}), media_type="application/json")


class LatestOut(BaseModel):
    signal: str
    ts: str
    value: float | int | bool | str
    unit: str | None
    quality: str


class LatestResponse(BaseModel):
    asset: str
    values: list[LatestOut]


@router.get("/latest", response_model=LatestResponse)
async def get_latest(store: StoreDep, _auth: CanRead,
                     asset: Annotated[str, Query(description="site/area/line/machine")]) -> LatestResponse:
    """The most recent value of every signal of one machine."""
    try:
        AssetPath.parse(asset)
    except ValueError as exc:
        raise Problem(422, f"asset: {exc}", reason="bad_query") from None
    values = await store.latest(asset)
    return LatestResponse(asset=asset, values=[
        LatestOut(signal=v.signal, ts=format_ts(v.ts), value=v.value, unit=v.unit, quality=v.quality.value)
        for v in values])


class SignalOut(BaseModel):
    asset: str
    site: str
    area: str
    line: str
    machine: str
    signal: str
    unit: str | None
    type: Literal["float", "int", "bool", "string"]
    last_seen: str


class CatalogueResponse(BaseModel):
    sites: list[str]
    lines: list[str]
    machines: list[str]
    signals: list[SignalOut]


_TYPES: dict[str, Literal["float", "int", "bool", "string"]] = {"f": "float", "i": "int", "b": "bool",
                                                                 "s": "string"}


@router.get("/catalogue", response_model=CatalogueResponse)
async def get_catalogue(store: StoreDep, _auth: CanRead,
                        prefix: Annotated[str | None, Query(description="limit to a site/area/line")] = None
                        ) -> CatalogueResponse:
    """Sites, lines (``site/area/line``), machines and their signals with unit and last-seen time."""
    if prefix:
        try:
            check_asset_prefix(prefix)
        except ValueError as exc:
            raise Problem(422, f"prefix: {exc}", reason="bad_query") from None
    entries = await store.catalogue(prefix or None)
    signals = []
    for e in entries:
        p = e.path
        signals.append(SignalOut(asset=e.asset, site=p.site, area=p.area, line=p.line, machine=p.machine,
                                 signal=e.signal, unit=e.unit, type=_TYPES.get(e.vtype, "float"),
                                 last_seen=format_ts(e.last_seen)))
    return CatalogueResponse(
        sites=sorted({s.site for s in signals}),
        lines=sorted({f"{s.site}/{s.area}/{s.line}" for s in signals}),
        machines=sorted({s.asset for s in signals}), signals=signals)
