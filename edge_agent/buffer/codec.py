"""Row encoding of one :class:`~zhizao.model.Sample` in the SQLite buffer: its wire-format JSON.

A row is exactly the sample object of zhizao's wire format (:func:`zhizao.wire.sample_to_dict`,
serialised with orjson), so a batch body for ingest is the rows joined (see
:class:`~edge_agent.buffer.encoded.EncodedBatch`) with no per-sample work. Decoding re-validates
through ``Sample`` so a damaged row is an error, never a wrong value.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

import orjson

from zhizao.model import AssetPath, Quality, Sample
from zhizao.wire import format_ts, parse_ts, sample_to_dict

_QUALITIES: Final = {q.value: q for q in Quality}


def encode_sample(s: Sample) -> bytes:
    """The row bytes of ``s`` (its wire-format JSON object)."""
    return orjson.dumps(sample_to_dict(s))


def encode_samples(samples: Iterable[Sample]) -> list[bytes]:
    """The row bytes of each of ``samples``: exactly ``[encode_sample(s) for s in samples]``, but
    the asset path and timestamp texts are formatted once per run of samples sharing them (the
    samples of one message share both), not once per sample."""
    rows: list[bytes] = []
    append, dumps = rows.append, orjson.dumps
    last_asset: AssetPath | None = None
    last_ts: datetime | None = None
    asset_text = ts_text = ""
    for s in samples:
        asset, ts = s.asset, s.ts
        if asset is not last_asset:
            last_asset, asset_text = asset, str(asset)
        if ts is not last_ts:  # by identity: the samples of one message share their objects
            last_ts, ts_text = ts, format_ts(ts)
        append(dumps(sample_to_dict(s, asset_text, ts_text)))
    return rows


SeriesKey = tuple[object, object, object, object]
"""(asset, signal, unit, quality) of a row, as stored (hashable; not validated)."""


def row_series(data: bytes) -> SeriesKey:
    """The series of row ``data``; ``ValueError`` unless it is a JSON object (a cheap check before
    sending rows as they are — ingest validates every field)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"undecodable buffer row: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("damaged buffer row: not a JSON object")
    key = (doc.get("asset"), doc.get("signal"), doc.get("unit"), doc.get("quality", "good"))
    return key if all(isinstance(k, str | None) for k in key) else tuple(map(repr, key))  # type: ignore[return-value]


class SampleDecoder:
    """Decodes rows back into samples, caching parsed asset paths (there are few distinct ones)."""

    def __init__(self) -> None:
        self._assets: dict[str, AssetPath] = {}

    def decode(self, data: bytes) -> Sample:
        """The sample of a row; ``ValueError`` when the row is damaged."""
        try:
            doc = orjson.loads(data)
            asset_text, signal, ts_text, value = doc["asset"], doc["signal"], doc["ts"], doc["value"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"undecodable buffer row: {exc!r}") from exc
        asset = self._assets.get(asset_text)
        if asset is None:
            asset = AssetPath.parse(asset_text)
            self._assets[asset_text] = asset
        quality = _QUALITIES.get(doc.get("quality", "good"))
        if quality is None or not isinstance(ts_text, str):
            raise ValueError("damaged buffer row: bad timestamp or quality")
        return Sample(asset, signal, parse_ts(ts_text), value, doc.get("unit"), quality)
