"""The one-box stack's live scoring on a real DuckDB store: signals and a state that stay quiet
for longer than the look-back are carried, so every running second is scored exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from analytics.scoring import AnomalyModel, ModelSpec
from ingest.storage.base import SampleFrame, SeriesQuery
from ingest.storage.duckdb.store import DuckDBStore
from zhizao import signals as sig
from zhizao.model import AssetPath, Sample
from zhizao.plant import PlantConfig
from zhizao.stack.analytics import LiveAnalytics

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
M = AssetPath("plant", "a1", "line1", "cnc-1")


def _samples() -> list[Sample]:
    """30 min: running for 20 min (state reported once), then idle; vibration every second,
    a coolant temperature reported once at the start and never again (a deadband)."""
    rng = np.random.default_rng(3)
    out = [Sample(M, sig.STATE, T0, "running"), Sample(M, "coolant_temp", T0, 21.0),
           Sample(M, sig.STATE, T0 + timedelta(minutes=20), "idle")]
    out += [Sample(M, "vibration_rms", T0 + timedelta(seconds=i), float(1.0 + 0.05 * rng.standard_normal()))
            for i in range(1800)]
    return out


async def test_quiet_signals_and_state_are_carried_across_rounds(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = np.column_stack([1.0 + 0.05 * rng.standard_normal(600), np.full(600, 21.0)])
    model = AnomalyModel(ModelSpec()).fit(train, columns=["vibration_rms", "coolant_temp"])
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(_samples()))
        plant = PlantConfig.model_validate({"calendar": {"shifts": [{"name": "a", "start": "06:00",
                                                                      "end": "14:00"}]}})
        live = LiveAnalytics(store, plant, [str(M)], {str(M): model}, start=T0, lag_s=0)
        for minute in range(2, 31, 2):  # rounds every 2 simulated minutes: the 5-minute look-back
            await live.round(T0 + timedelta(minutes=minute), lag=timedelta(0))  # is soon past the state
        assert live.stats.failures == 0, live.stats
        scores = await store.query(SeriesQuery(str(M), T0, T0 + timedelta(hours=1), (sig.ANOMALY_SCORE,)))
    stamps = scores[0].timestamps()
    assert len(stamps) == len(set(stamps)) == 20 * 60  # each running second once, none while idle
    assert stamps[0] == T0 and stamps[-1] == T0 + timedelta(minutes=20) - timedelta(seconds=1)
