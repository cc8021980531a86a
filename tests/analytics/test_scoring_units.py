"""A signal reported in two units is scored from all its points (review item 6).

Ingest's ``GET /api/v1/series`` answers one series per (asset, signal, unit); the scoring
service's :class:`IngestApiIO` used to hand them on as they came and :func:`aligned_rows` kept the
last series per signal — the other unit's samples silently dropped (rows missing, a machine not
scored while its unit was being fixed). Chosen behaviour: merge — a unit is a label on the same
quantity to a model (the store reads a signal as one series whatever its units, and so was the
model trained) — in time order, with one WARNING per machine and signal naming the units.
Against a real ingest server (uvicorn, DuckDB).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from analytics.scoring import rows as rows_module
from analytics.scoring.rows import aligned_rows
from analytics.scoring.service.config import IngestApiConfig
from analytics.scoring.service.source import IngestApiIO
from ingest.storage.base import Agg, Series, SeriesQuery, to_us
from ingest.testing import run_server, server_settings
from zhizao.model import AssetPath, Batch, Sample
from zhizao.wire import encode_batch

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
M = AssetPath("plant", "a1", "line1", "cnc-7")


def _post(url: str) -> None:
    """power_kw each second for 10 minutes: 'kW' for the first 5, 'KW' (a fixed config) after;
    spindle_rpm throughout in one unit."""
    samples = [Sample(M, "power_kw", T0 + timedelta(seconds=i), 10.0 + i % 7, "kW" if i < 300 else "KW")
               for i in range(600)]
    samples += [Sample(M, "spindle_rpm", T0 + timedelta(seconds=i), 1000.0 + i, "rpm") for i in range(600)]
    r = httpx.post(f"{url}/api/v1/batches", content=encode_batch(Batch("agent-1", "b-1", 1, tuple(samples))),
                   headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1200, r.text


async def test_rows_keep_both_units(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # forget warnings given by other tests of this process
    monkeypatch.setattr(rows_module, "_WARNED", {}, raising=False)
    settings = server_settings(tmp_path)
    with run_server(settings) as url:
        _post(url)
        async with httpx.AsyncClient(base_url=url) as c:
            split = (await c.get("/api/v1/series", params={
                "asset": str(M), "signal": "power_kw", "agg": "mean", "bucket": "60s",
                "start": T0.isoformat(), "end": (T0 + timedelta(minutes=10)).isoformat()})).json()
            assert [s["unit"] for s in split["series"]] == ["KW", "kW"]  # what the scorer must merge
        caplog.set_level(logging.WARNING, logger="analytics.scoring.rows")
        async with IngestApiIO(IngestApiConfig(url=url)) as io:
            q = SeriesQuery(asset=str(M), start=T0, end=T0 + timedelta(minutes=10), signals=("power_kw",),
                            agg=Agg.MEAN, bucket=timedelta(seconds=60), limit=100)
            got = await io.query(q)
            assert [(s.signal, len(s)) for s in got] == [("power_kw", 10)]
            assert got[0].unit == "KW"  # the newest point's
            assert np.all(np.diff(got[0].ts_us) > 0)
            for step in range(2):  # each step reads again: one warning in all
                rows = await aligned_rows(io.query, str(M), ["power_kw", "spindle_rpm"],
                                          start_us=to_us(T0), end_us=to_us(T0 + timedelta(minutes=10)),
                                          read_from_us=to_us(T0), bucket_s=60.0, carry=None, carry_state=None)
                assert len(rows.ts) == 10, step  # every minute, both units' (5 of them before the fix)
        warnings = [r.getMessage() for r in caplog.records if r.name == "analytics.scoring.rows"]
        assert len(warnings) == 1, warnings
        assert "plant/a1/line1/cnc-7: signal power_kw comes in 2 units ('KW', 'kW')" in warnings[0]


def _series(unit: str | None, ts: list[int], values: list[float]) -> Series:
    n = len(ts)
    return Series("s/a/l/m", "p", unit, np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64),
                  np.full(n, None, dtype=object), np.full(n, "f"), None)


@pytest.mark.parametrize(("agg", "shared"), [(Agg.MEAN, 3.0), (Agg.MIN, 2.0), (Agg.MAX, 4.0),
                                             (Agg.COUNT, 6.0)])
def test_merge_combines_a_shared_bucket(agg: Agg, shared: float) -> None:
    """The bucket where the unit changed holds both units' aggregates: combined by ``agg``."""
    merge_units = rows_module.merge_units
    got = merge_units([_series("W", [0, 60], [1.0, 2.0]), _series("kW", [60, 120], [4.0, 5.0])], agg)
    assert len(got) == 1
    assert got[0].ts_us.tolist() == [0, 60, 120]
    assert got[0].value.tolist() == [1.0, shared, 5.0]
    assert got[0].unit == "kW"
