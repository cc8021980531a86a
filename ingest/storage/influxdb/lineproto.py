"""Serialising frames and events into InfluxDB line protocol (zhizao's schema, see the README).

Tag values are asset-path segments and signal names, which by construction need no escaping;
string field values escape ``"`` and ``\\``. Timestamps are written with ``precision=u``.
"""

from __future__ import annotations

from typing import Final

from ingest.storage.base import SampleFrame

_STR_ESCAPE: Final = str.maketrans({'"': '\\"', "\\": "\\\\"})
_TAG_ESCAPE: Final = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\", "\n": " "})


def field_str(text: str) -> str:
    """A quoted string field value."""
    return '"' + text.translate(_STR_ESCAPE) + '"'


def tag_value(text: str) -> str:
    """An escaped tag value (never empty: ``_`` stands for the empty string)."""
    return text.translate(_TAG_ESCAPE) if text else "_"


_QUALITY: Final = {q: f',quality="{q}" ' for q in ("good", "uncertain", "bad")}
_VTYPE: Final = {"i": ',vtype="i"', "b": ',vtype="b"'}


def frame_lines(frame: SampleFrame, measurement: str, keys: dict[tuple[str, str], str]) -> bytes:
    """Line protocol for ``frame``; ``keys`` caches the series key of each (asset, signal)."""
    out: list[str] = []
    append = out.append
    units: dict[str | None, str] = {None: ""}
    for asset, signal, ts, vtype, value, text, unit, quality in zip(
            frame.asset, frame.signal, frame.ts_us, frame.vtype, frame.value, frame.value_str, frame.unit,
            frame.quality, strict=True):
        key = keys.get((asset, signal))
        if key is None:
            site, area, line, machine = asset.split("/")
            # tags sorted by key, as InfluxDB recommends (it sorts them otherwise, per point)
            key = f"{measurement},area={area},line={line},machine={machine},signal={signal},site={site} "
            if len(keys) > 100_000:
                keys.clear()
            keys[(asset, signal)] = key
        u = units.get(unit)
        if u is None:
            assert unit is not None
            u = units[unit] = ",unit=" + field_str(unit)
        if vtype == "f":
            append(f"{key}value={value!r}{u}{_QUALITY[quality]}{ts}")
        elif vtype == "s":
            assert text is not None
            append(f'{key}value_str={field_str(text)},vtype="s"{u}{_QUALITY[quality]}{ts}')
        else:
            append(f"{key}value={value!r}{_VTYPE[vtype]}{u}{_QUALITY[quality]}{ts}")
    return "\n".join(out).encode()
