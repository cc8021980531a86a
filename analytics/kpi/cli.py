"""``zhizao analytics kpi``: KPIs of a scope over a range, as tables or JSON.

    zhizao analytics kpi --plant plant.toml --duckdb data.duckdb --scope plant1/a1/line1 \\
        --from 2026-11-23T00:00:00Z --to 2026-11-23T08:00:00Z [--group-by shift|day|machine] [--json]
    zhizao analytics kpi ... --baseline-from F --baseline-to T     (improvement vs baseline)
    zhizao analytics kpi --plant P --duckdb F --watch events.toml [--state FILE] [--once [--at T]]
        (KPI alerts: evaluate the rules of events.toml every interval_s and emit events to its
        sinks until interrupted; open episodes, debounce timers and undelivered events persist in
        --state, default kpi-alerts.state beside events.toml (its folder must exist), so a restart
        continues the same episodes; --once evaluates as of --at or now, prints the events and
        neither reads nor writes the state: each rule is evaluated at --at minus its for_s, then
        every interval_s up to --at, from the stored data, so a breach held for for_s opens its
        event as a running watcher's would; a breach held for less is printed as pending on
        stderr; exit 1 if a rule could not be read)

The store is ingest's: ``--ingest-config ingest.toml`` (its ``[storage]``: DuckDB or InfluxDB), or
``--duckdb FILE`` for a DuckDB file directly. Times (``--from``, ``--to``, ``--baseline-*``, ``--at``)
are ISO-8601 dates or date-times, UTC when they carry no offset (as ``zhizao analytics train``'s).
A ``--scope`` with no machine under it, in the plant file or in the store, is refused naming the
known lines and machines. Tables fit the console's width (``COLUMNS``): the widest columns are
dropped first (``--json`` has every field). Exit codes: 0 ok, 1 store unavailable, 2 usage or
configuration error (an unknown ``--scope`` too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from analytics.errors import DataError
from analytics.kpi.config import KpiConfig, load_kpi_config
from analytics.kpi.render import render, render_improvement
from analytics.kpi.service import improvement_report, kpi_report
from analytics.kpi.windows import GroupBy
from analytics.storeargs import read_storage
from zhizao.config import load_config
from zhizao.errors import ConfigError, StoreUnavailable
from zhizao.plant import PlantConfig
from zhizao.timeargs import TIME_HELP, parse_time
from zhizao.wire import format_ts

STATE_FILE = "kpi-alerts.state"
"""Default name of the KPI alerter's state file, in the folder of the ``--watch`` file."""


def _ts(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zhizao analytics kpi", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ingest-config", help="ingest settings file (TOML/YAML) naming the store")
    src.add_argument("--duckdb", help="a DuckDB store file written by ingest")
    cfg = p.add_mutually_exclusive_group(required=True)
    cfg.add_argument("--config", help="KPI config (analytics/kpi/sample.toml), which names the plant file")
    cfg.add_argument("--plant", help="plant file (zhizao.plant.PlantConfig; 'zhizao sim export-plant')")
    p.add_argument("--scope", help="asset prefix: site, site/area, site/area/line or machine")
    p.add_argument("--from", dest="start", type=_ts, help=f"range start: {TIME_HELP}")
    p.add_argument("--to", dest="end", type=_ts, help="range end (same forms)")
    p.add_argument("--group-by", choices=[g.value for g in GroupBy], default="shift")
    p.add_argument("--baseline-from", type=_ts, help="improvement mode: baseline start (same forms)")
    p.add_argument("--baseline-to", type=_ts, help="improvement mode: baseline end (same forms)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--watch", metavar="EVENTS_CONFIG", help="run the KPI alert rules of this file")
    p.add_argument("--state", metavar="FILE",
                   help=f"with --watch: the alerter's state file (default: {STATE_FILE} in the folder of "
                        "the --watch file; the folder must exist)")
    p.add_argument("--once", action="store_true", help="with --watch: evaluate once and exit")
    p.add_argument("--at", type=_ts,
                   help="with --watch --once: evaluate as of this time (same forms; default now)")
    return p


def _open_store(args: argparse.Namespace) -> Any:
    from ingest.storage.registry import open_store

    return open_store(read_storage(args.duckdb, args.ingest_config))  # a DuckDB file must exist


async def _run(args: argparse.Namespace, plant: PlantConfig, cfg: KpiConfig) -> dict[str, Any]:
    async with _open_store(args) as store:
        if args.baseline_from is not None:
            return await improvement_report(store, plant, cfg, args.scope,
                                            baseline=(args.baseline_from, args.baseline_to),
                                            current=(args.start, args.end), strict=True, where="--scope")
        return await kpi_report(store, plant, cfg, args.scope, start=args.start, end=args.end,
                                group_by=GroupBy(args.group_by), strict=True, where="--scope")


async def _watch(args: argparse.Namespace, plant: PlantConfig, cfg: KpiConfig) -> int:
    from analytics.events.config import EventsConfig, build_emitter
    from analytics.kpi.alerts import KpiAlerter

    events_cfg = load_config(EventsConfig, args.watch)
    state = None if args.once else Path(args.state or Path(args.watch).parent / STATE_FILE)
    alerter = KpiAlerter(events_cfg.rules, state_path=state)  # a missing folder: ValueError, exit 2
    async with _open_store(args) as store, build_emitter(events_cfg.sinks) as emitter:
        if args.once:
            at = args.at or datetime.now(UTC)
            events = await alerter.evaluate_once(store, plant, cfg, at, interval_s=events_cfg.interval_s)
            delivered = await emitter.emit(events)
            for e in events:
                print(e.model_dump_json())
            print(f"{len(events)} events; delivered: {delivered or 'nothing to send'}", file=sys.stderr)
            for rule, asset, since, for_s in alerter.pending_breaches(at):
                held = (at - since).total_seconds()
                print(f"zhizao analytics kpi: rule {rule}: {asset} breached since {format_ts(since)}, "
                      f"held {held:g} s of its for_s {for_s:g} s: no event yet", file=sys.stderr)
            for rule, reason in alerter.unavailable.items():
                print(f"zhizao analytics kpi: rule {rule}: store unavailable: {reason}", file=sys.stderr)
            return 1 if alerter.unavailable else 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"watching {len(alerter.rules)} KPI rules every {events_cfg.interval_s:g} s; Ctrl-C stops",
              file=sys.stderr)
        await alerter.run(store, plant, cfg, emitter, interval_s=events_cfg.interval_s, stop=stop)
    return 0


PIPED_WIDTH = 220
"""Table width when stdout is not a terminal and ``COLUMNS`` is not set (a file, a pipe): every
column fits, as before tables were fitted to the console."""


def _console() -> Console:
    """The terminal's width (``COLUMNS`` if set); :data:`PIPED_WIDTH` when writing to a file or pipe."""
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(width=PIPED_WIDTH if piped else None)


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.watch is None:
        given = (("scope", args.scope), ("from", args.start), ("to", args.end))
        missing = [f"--{n}" for n, v in given if v is None]
        if missing:
            parser.error(f"{', '.join(missing)} required (or --watch)")
        if args.end <= args.start:
            parser.error("--to must be after --from")
    if args.state is not None and (args.watch is None or args.once):
        parser.error("--state goes with --watch (not --once: it neither reads nor writes the state)")
    if (args.baseline_from is None) != (args.baseline_to is None):
        parser.error("--baseline-from and --baseline-to go together")
    try:
        if args.config:
            cfg, plant = load_kpi_config(args.config)
        else:
            cfg, plant = KpiConfig(), load_config(PlantConfig, args.plant)
        if args.watch is not None:
            return asyncio.run(_watch(args, plant, cfg))
        report = asyncio.run(_run(args, plant, cfg))
    except (ConfigError, DataError) as exc:  # an unknown --scope, a --duckdb file that does not exist
        print(f"zhizao analytics kpi: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"zhizao analytics kpi: store unavailable: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"zhizao analytics kpi: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
    elif args.baseline_from is not None:
        render_improvement(report, _console())
    else:
        render(report, _console())
    return 0
