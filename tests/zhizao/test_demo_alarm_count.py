"""The demo panel's ``alarms`` figure counts anomaly episodes — what the store and
``GET /api/v1/events`` hold — not event updates (a review saw ``alarms 1286`` beside 5 episodes:
each open, each new peak and each resolve was counted).

Real components: an hour of the compact line with its faults, stored in DuckDB, scored by the
one-box stack's :class:`LiveAnalytics` rounds with models trained on a fault-free reference run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any, cast

from rich.console import Console

from ingest.storage.base import EventQuery, SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from simulator.engine import generate
from simulator.scenario import load_scenario
from zhizao.events import EventSource
from zhizao.plant import PlantConfig
from zhizao.stack.analytics import LiveAnalytics
from zhizao.stack.models import reference_models
from zhizao.stack.status import status_table

ROOT = Path(__file__).resolve().parents[2]


def _panel_alarms(live: LiveAnalytics, scenario: Any) -> str:
    """The ``alarms`` figure of the demo's panel (its flow table's last column) for a line whose
    analytics is ``live``."""
    line = NS(
        options=NS(scenario=scenario, data_dir=Path("/data"), duration_s=3600.0, speed=30.0),
        sim=NS(endpoint=None, mqtt_published=0, mqtt_dropped=0, ticks_done=3600, lag_s=0.0),
        broker=None,
        agent=NS(buffer_path=Path("/data/agent.sqlite"), samples_read=1, backlog=0,
                 forwarder=NS(stats=NS(sent_samples=1))),
        ingest=NS(url="http://127.0.0.1:8080"), analytics=live,
        sim_now=lambda: scenario.start + timedelta(hours=1))
    console = Console(width=160, record=True, force_terminal=False)
    console.print(status_table(cast(Any, line), "http://127.0.0.1:8080/", "stopped"))
    rows = console.export_text().splitlines()
    at = next(i for i, row in enumerate(rows) if "alarms" in row)
    assert rows[at].strip("│ ").split()[-2:] == ["scored", "alarms"], rows[at]
    return rows[at + 1].strip("│ ").split()[-1]


async def test_the_panel_counts_alarms_as_episodes_not_updates(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "examples" / "compact.yaml")   # tool wear, overheating, an air leak...
    models = reference_models(scenario, 1, 3600.0)
    shift = {"name": "a", "start": "00:00", "end": "08:00"}
    plant = PlantConfig.model_validate({"calendar": {"shifts": [shift]}})
    site = scenario.site
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(list(generate(scenario, 1, 3600))))
        live = LiveAnalytics(store, plant, [site], models, start=scenario.start, lag_s=0)
        for minute in range(2, 61, 2):
            await live.round(scenario.start + timedelta(minutes=minute), lag=timedelta(0))
        await live.final_round(scenario.start + timedelta(hours=1, minutes=1))
        stored = await store.query_events(EventQuery(asset=site, source=EventSource.ANOMALY, limit=10_000))
    assert live.stats.failures == 0, live.stats
    episodes = len({e.id for e in stored})
    assert episodes >= 2, stored                                  # the scenario's faults raise several
    assert live.stats.events > 2 * episodes                       # opens, peaks and resolves: updates
    assert _panel_alarms(live, scenario) == str(episodes), (live.stats.events, episodes)
    assert live.stats.episodes == episodes
