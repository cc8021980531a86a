"""Vendor-style MQTT payloads (deliberately NOT zhizao's wire format). Pure functions, no I/O.

``acme``: topic ``acme/<line>/<machine>/telemetry``, payload::

    {"ts": 1795392000000, "machine": "imm-3",
     "metrics": {"melt_temp": {"value": 230.1, "unit": "degC"}, "state": {"value": "running", "unit": ""}},
     "status": {"mould_temp": "fault"}}

``ts`` is epoch milliseconds (int) of the time the machine reports; ``status`` is present only
when some listed signal is not ok (``stale`` = uncertain, ``fault`` = bad). Unitless signals have
``"unit": ""``.

``brightline``: topic ``brightline/<site>/<machine>/data``, payload::

    {"timestamp": "2026-11-23T08:00:00.000+08:00", "device": "pack-1",
     "values": [{"name": "conveyor_speed", "v": 12.0, "uom": "m/min", "q": 192}]}

``timestamp`` is ISO 8601 with milliseconds at +08:00; ``q`` is OPC-DA quality: 192 good,
64 uncertain, 0 bad; ``uom`` is ``""`` for unitless signals.

One message per machine per tick carries every value the machine reported in that tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import orjson

from zhizao.model import AssetPath, Quality, Value

VENDORS: Final = ("acme", "brightline")
BRIGHTLINE_TZ: Final = timezone(timedelta(hours=8))
_ACME_STATUS: Final = {Quality.UNCERTAIN: "stale", Quality.BAD: "fault"}
_DA_QUALITY: Final = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}


def topic_for(vendor: str, asset: AssetPath) -> str:
    """The topic a machine of ``vendor`` publishes on."""
    if vendor == "acme":
        return f"acme/{asset.line}/{asset.machine}/telemetry"
    if vendor == "brightline":
        return f"brightline/{asset.site}/{asset.machine}/data"
    raise ValueError(f"unknown vendor {vendor!r}; choose from {', '.join(VENDORS)}")


def payload_dict(
    vendor: str,
    asset: AssetPath,
    ts: datetime,
    values: Sequence[tuple[str, Value, Quality]],
    units: dict[str, str | None],
) -> dict[str, Any]:
    """The JSON object of one message of ``vendor`` for one machine and tick."""
    if vendor == "acme":
        metrics = {name: {"value": v, "unit": units.get(name) or ""} for name, v, _ in values}
        doc: dict[str, Any] = {
            "ts": round(ts.timestamp() * 1000),
            "machine": asset.machine,
            "metrics": metrics,
        }
        status = {name: _ACME_STATUS[q] for name, _, q in values if q is not Quality.GOOD}
        if status:
            doc["status"] = status
        return doc
    if vendor == "brightline":
        return {
            "timestamp": ts.astimezone(BRIGHTLINE_TZ).isoformat(timespec="milliseconds"),
            "device": asset.machine,
            "values": [
                {"name": name, "v": v, "uom": units.get(name) or "", "q": _DA_QUALITY[q]}
                for name, v, q in values
            ],
        }
    raise ValueError(f"unknown vendor {vendor!r}; choose from {', '.join(VENDORS)}")


def encode_payload(
    vendor: str,
    asset: AssetPath,
    ts: datetime,
    values: Sequence[tuple[str, Value, Quality]],
    units: dict[str, str | None],
) -> bytes:
    """The UTF-8 JSON bytes of :func:`payload_dict`."""
    return orjson.dumps(payload_dict(vendor, asset, ts, values, units))
