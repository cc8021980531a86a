"""Compact row encoding of one :class:`~zhizao.model.Sample` for the SQLite buffer.

A row is the orjson array ``[asset, signal, ts_us, value, unit, quality]`` with ``ts_us`` the
source timestamp in integer microseconds since the Unix epoch (UTC). Decoding re-validates
through ``Sample`` so a damaged row is an error, never a wrong value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from zhizao.model import AssetPath, Quality, Sample

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_QUALITIES: Final = {q.value: q for q in Quality}


def encode_sample(s: Sample) -> bytes:
    """The row bytes of ``s`` (see the module docstring)."""
    delta = s.ts - _EPOCH
    ts_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return orjson.dumps([str(s.asset), s.signal, ts_us, s.value, s.unit, s.quality.value])


class SampleDecoder:
    """Decodes rows back into samples, caching parsed asset paths (there are few distinct ones)."""

    def __init__(self) -> None:
        self._assets: dict[str, AssetPath] = {}

    def decode(self, data: bytes) -> Sample:
        """The sample of a row; ``ValueError`` when the row is damaged."""
        try:
            asset_text, signal, ts_us, value, unit, quality = orjson.loads(data)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"undecodable buffer row: {exc}") from exc
        asset = self._assets.get(asset_text)
        if asset is None:
            asset = AssetPath.parse(asset_text)
            self._assets[asset_text] = asset
        if not isinstance(ts_us, int) or quality not in _QUALITIES:
            raise ValueError("damaged buffer row: bad timestamp or quality")
        ts = _EPOCH + timedelta(microseconds=ts_us)
        return Sample(asset, signal, ts, value, unit, _QUALITIES[quality])
