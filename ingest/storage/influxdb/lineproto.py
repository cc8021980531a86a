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


def frame_lines(frame: SampleFrame, measurement: str, keys: dict[tuple[str, str], str]) -> bytes:
    """Line protocol for ``frame``; ``keys`` caches the series key of each (asset, signal)."""
    out: list[str] = []
    append = out.append
    for asset, signal, ts, vtype, value, text, unit, quality in zip(
            frame.asset, frame.signal, frame.ts_us, frame.vtype, frame.value, frame.value_str, frame.unit,
            frame.quality, strict=True):
        key = keys.get((asset, signal))
        if key is None:
            site, area, line, machine = asset.split("/")
            key = f"{measurement},site={site},area={area},line={line},machine={machine},signal={signal} "
            if len(keys) > 100_000:
                keys.clear()
            keys[(asset, signal)] = key
        if vtype == "f":
            fields = f"value={value!r}"
        elif vtype == "s":
            assert text is not None
            fields = f'value_str={field_str(text)},vtype="s"'
        else:
            fields = f'value={value!r},vtype="{vtype}"'
        if unit is not None:
            fields += f",unit={field_str(unit)}"
        append(f'{key}{fields},quality="{quality}" {ts}')
    return "\n".join(out).encode()
