"""The analytics loops of the one-box stack: KPI feed and live anomaly scoring, on ingest's store.

:class:`LiveAnalytics` runs in the same event loop as ingest and uses its open store. Every
``interval_s`` (wall time) one round: each machine's new rows are scored by its
:class:`~analytics.scoring.live.MachineScorer` — ``anomaly_score`` samples written back, anomaly
episodes upserted as events. KPIs need no loop on one box: the KPI API mounted on ingest computes
them from the raw data on request (the web dashboard asks it). The KPI feed (``kpi.*`` series for
Grafana) is not run here: there is no Grafana on one box.
Time is the *line's* time (``clock()``, the simulated clock), and
scoring stays ``lag_s`` behind it so rows still in the agent's buffer are not skipped;
:meth:`final_round` scores everything up to the end once the data is drained. A failed round
(store busy) is logged and counted and the next round retries; the loop never dies of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from analytics.kpi.config import KpiConfig
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from analytics.scoring import AnomalyModel
from analytics.scoring.live import MachineScorer
from ingest.storage.base import Agg, SeriesQuery, Store
from zhizao import signals as sig
from zhizao.errors import StoreUnavailable
from zhizao.plant import PlantConfig

log = logging.getLogger(__name__)
LOOKBACK = timedelta(minutes=5)
"""Rows before the last scored one read again so forward-filled values are known."""


@dataclass
class ScoringState:
    scorer: MachineScorer
    last: datetime
    rows: int = 0
    events: int = 0
    carry: dict[str, float] = field(default_factory=dict)
    """Each model signal's value at ``last`` (forward-filled), for signals quiet longer than the look-back."""
    carry_state: str | None = None
    """The machine state at ``last``: ``state`` is reported only when it changes."""


@dataclass
class AnalyticsStats:
    rounds: int = 0
    failures: int = 0
    scored_rows: int = 0
    events: int = 0
    last_error: str = ""
    per_machine: dict[str, int] = field(default_factory=dict)


class LiveAnalytics:
    """See the module docstring."""

    def __init__(self, store: Store, plant: PlantConfig, scopes: list[str], models: dict[str, AnomalyModel],
                 *, start: datetime, interval_s: float = 5.0, lag_s: float = 30.0,
                 watch_flags: bool = False) -> None:
        self.store = store
        self.plant = plant
        self.scopes = scopes
        self.start = start
        self.watch_flags = watch_flags
        self.flags_seen: dict[tuple[str, str, str], datetime] = {}
        """``(machine, flag kind, signal or "")`` -> line time a data-quality flag was first seen."""
        self.kpi_cfg = KpiConfig()
        self.interval_s = interval_s
        self.lag = timedelta(seconds=lag_s)
        self.stats = AnalyticsStats()
        self.scoring = {
            asset: ScoringState(MachineScorer(asset, model, rule="anomaly", clear_after_s=60.0),
                                last=start - timedelta(microseconds=1))
            for asset, model in models.items()
        }

    async def run(self, clock: Callable[[], datetime]) -> None:
        """Rounds every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.round(clock(), lag=self.lag)

    async def final_round(self, now: datetime) -> None:
        """Score everything up to ``now`` (after the agent drained)."""
        await self.round(now, lag=timedelta(0))

    async def round(self, now: datetime, *, lag: timedelta) -> None:
        self.stats.rounds += 1
        try:
            for asset, state in self.scoring.items():
                await self._score(asset, state, now - lag)
            if self.watch_flags:
                await self._watch_flags(now - lag)
        except StoreUnavailable as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            log.warning("analytics round failed (store unavailable), retrying next round: %s", exc)

    async def _watch_flags(self, until: datetime) -> None:
        """Record when each data-quality flag of the run so far is first seen (the QA check's
        detection time for telemetry faults: gaps, counter resets, clock skew)."""
        if until <= self.start + timedelta(seconds=60):
            return
        for scope in self.scopes:
            report = await kpi_report(self.store, self.plant, self.kpi_cfg, scope, start=self.start,
                                      end=until, group_by=GroupBy.MACHINE)
            for rec in report["windows"][0]["machines"]:
                for flag in rec["data_quality"]["flags"]:
                    key = (rec["machine"], str(flag["kind"]), str(flag.get("signal", "")))
                    self.flags_seen.setdefault(key, until)

    async def _score(self, asset: str, st: ScoringState, until: datetime) -> None:
        if until <= st.last:
            return
        columns = st.scorer.model.columns
        q = SeriesQuery(asset=asset, start=st.last - LOOKBACK, end=until, signals=(*columns, sig.STATE),
                        agg=Agg.MEAN, bucket=timedelta(seconds=1), limit=10_000_000)
        numeric: dict[str, pd.Series] = {}
        state: pd.Series | None = None
        for s in await self.store.query(q):
            if s.signal == sig.STATE:
                state = s.to_pandas()
            elif s.signal in columns and not s.is_string:
                numeric[s.signal] = s.to_pandas().astype(float)
        if not numeric:
            return
        last_ts = pd.Timestamp(st.last)
        df = pd.concat(numeric, axis=1).reindex(columns=columns)
        if st.carry:  # values from before the look-back, for signals that did not change since
            df = df.combine_first(pd.DataFrame([st.carry], index=pd.DatetimeIndex([last_ts])))
        df = df.sort_index().ffill().dropna()
        df = df[df.index > last_ts]
        if df.empty:
            return
        if st.carry_state is not None:
            seed = pd.Series([st.carry_state], index=pd.DatetimeIndex([last_ts]))
            state = seed if state is None else pd.concat([seed, state[state.index > last_ts]])
        if state is not None and len(state):
            known = state.sort_index().reindex(df.index, method="ffill")
            running = (known == sig.MachineState.RUNNING.value).to_numpy()
            if known.notna().any():
                st.carry_state = str(known.dropna().iloc[-1])
        else:
            running = np.ones(len(df), dtype=bool)
        ts_us = df.index.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
        frame, events = st.scorer.process(ts_us, df.to_numpy(dtype=np.float64), running)
        if len(frame):
            await self.store.write(frame)
        if events:
            await self.store.upsert_events(events)
        st.last = df.index[-1].to_pydatetime()
        st.carry = {str(k): float(v) for k, v in df.iloc[-1].items()}
        st.rows += int(running.sum())
        st.events += len(events)
        self.stats.scored_rows += int(running.sum())
        self.stats.events += len(events)
        self.stats.per_machine[asset] = st.rows
