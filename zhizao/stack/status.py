"""The live status panel of ``zhizao demo``: what runs where, and how the data flows.

:func:`status_table` renders one snapshot of a running :class:`~zhizao.stack.line.Line` (rich);
the demo refreshes it every second with ``rich.live.Live``.
"""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from zhizao.stack.line import Line


def _count(n: int) -> str:
    """Exact below a million, then 3 significant digits (``18.8M``): eight columns fit 80 characters;
    the exact counts are in the summary printed at the stop."""
    return str(n) if n < 1_000_000 else f"{n / 1e6:.3g}M" if n < 1_000_000_000 else f"{n / 1e9:.3g}G"


def status_table(line: Line, url: str, state: str) -> Panel:
    o = line.options
    sc = o.scenario
    sim = line.sim
    agent = line.agent
    where = Table.grid(padding=(0, 2))
    where.add_column(style="bold", no_wrap=True)
    where.add_column(overflow="fold")  # a narrow terminal wraps a long path instead of cutting it
    opc = sim.endpoint or "—"
    mqtt = line.broker.url if line.broker else "—"
    where.add_row("simulator", f"{sc.name}: {len(sc.machines())} machines · OPC UA {opc} · MQTT → {mqtt}")
    where.add_row("MQTT broker", f"{mqtt} (embedded amqtt)" if line.broker else "— (no MQTT machines)")
    where.add_row("edge agent", f"buffer {agent.buffer_path}")
    where.add_row("ingest", f"{line.ingest.url} · DuckDB {o.data_dir / 'zhizao.duckdb'}")
    scopes = list(line.analytics.scoring)
    energy = sum(scope.endswith("#energy") for scope in scopes)
    models = (f"health for {len(scopes) - energy} machines, energy for {energy}" if scopes
              else "training on a clean simulated day of the line ...")
    where.add_row("analytics", f"KPI API {line.ingest.url}/api/v1/kpis · anomaly models: {models}")
    where.add_row("dashboard", Text(url, style="bold underline cyan"))
    flow = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    # alarms: anomaly episodes raised (as GET /api/v1/events lists them), not their updates
    for col in ("time UTC", "ticks", "MQTT msgs", "read", "buffered", "delivered", "scored",
                "alarms"):
        flow.add_column(col, justify="right", overflow="fold")  # never "1877…" for 18774
    now = line.sim_now()
    mqtt = _count(sim.mqtt_published) + (f" ({sim.mqtt_dropped} dropped)" if sim.mqtt_dropped else "")
    flow.add_row(f"{now:%H:%M:%S}", _count(sim.ticks_done), mqtt, _count(agent.samples_read),
                 _count(agent.backlog), _count(agent.forwarder.stats.sent_samples),
                 _count(line.analytics.stats.scored_rows), _count(line.analytics.stats.episodes))
    done = (now - sc.start).total_seconds()
    bar = ProgressBar(total=max(o.duration_s, 1.0), completed=min(done, o.duration_s))
    speed = f"×{o.speed:g}" if o.speed else "as fast as possible"
    progress = Text(f"line time {now:%Y-%m-%d %H:%M:%S} UTC · {done / 60:.1f} of "
                    f"{o.duration_s / 60:.0f} simulated minutes at {speed}"
                    + (f" · lagging {sim.lag_s:.0f} s" if sim.lag_s > 5 else ""))
    return Panel(Group(where, Text(""), flow, Text(""), progress, bar),
                 title=f"zhizao demo · {state}", subtitle="Ctrl-C stops everything cleanly")
