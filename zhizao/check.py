"""``zhizao check``: play a scenario through the whole stack and check the scenario's expectations.

Exit codes: 0 every expectation met, 1 at least one failed, 2 usage/configuration error (the
message names the bad key). The expectations live in the scenario file's ``expectations`` section
(``zhizao/stack/expectations.py`` documents it; a file without one is checked against the defaults:
every line's KPIs vs the ledger, no sample lost, false alarms reported but not limited); the
report is a table on the terminal, and optionally JUnit XML (``--junit``) and JSON (``--json``) for
CI systems.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from zhizao.errors import ConfigError, ZhizaoError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhizao check",
        description="Play a scenario through simulator → agent → ingest → analytics and compare the "
                    "results with the simulator's ground truth (KPIs, faults detected, false alarms, "
                    "data completeness). Exit 0 = every expectation met, 1 = one failed, 2 = bad input.")
    p.add_argument("--scenario", required=True, type=Path,
                   help="scenario file (TOML/YAML); its optional 'expectations' section says what to "
                        "check (without one: every line's KPIs vs the ledger, no sample lost, false "
                        "alarms reported; zhizao/stack/expectations.py)")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--speed", type=float, default=40.0,
                   help="simulated seconds per wall second (default 40; 0 = as fast as the box can, "
                        "which can overrun the embedded broker)")
    p.add_argument("--duration", type=float, default=None,
                   help="simulated seconds to play (default: expectations.run.duration_s, "
                   "else to the end of the first shift)")
    p.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    p.add_argument("--json", type=Path, help="write a JSON report here")
    p.add_argument("--data-dir", type=Path, help="keep the run's store and agent buffer here "
                   "(default: a temporary directory, removed afterwards)")
    p.add_argument("--gateway", action="store_true",
                   help="route the agent through a site gateway: MQTT 5 uplink → Mosquitto (needs the "
                        "mosquitto binary) → gateway → ingest")
    p.add_argument("-v", "--verbose", action="store_true", help="log the components' warnings")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    from zhizao.stack.logs import setup_logging

    setup_logging(args.verbose)
    if args.speed < 0:
        console.print("zhizao check: --speed must be >= 0")
        return 2
    from zhizao.stack.expectations import load_play

    try:
        scenario, exp = load_play(args.scenario, args.duration)
    except ConfigError as exc:
        console.print(f"zhizao check: {exc}", markup=False)
        return 2
    return asyncio.run(_run(args, scenario, exp, console))


async def _run(args: argparse.Namespace, scenario: object, exp: object, console: Console) -> int:
    from zhizao.stack.play import play
    from zhizao.stack.report import passed, render, write_json, write_junit

    started = time.monotonic()

    def say(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {msg}")

    with tempfile.TemporaryDirectory(prefix="zhizao-check-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        try:
            outcome = await play(scenario, exp, seed=args.seed, speed=args.speed or None,  # type: ignore[arg-type]
                                 data_dir=data_dir, duration_s=args.duration, progress=say,
                                 gateway=args.gateway)
        except ZhizaoError as exc:
            console.print(f"zhizao check: the stack failed: {exc}", markup=False)
            return 1
    elapsed = time.monotonic() - started
    title = f"zhizao check · {args.scenario.name} · seed {args.seed} · {elapsed:.0f} s"
    render(outcome.results, console, title)
    meta = {**outcome.meta, "scenario_file": str(args.scenario), "elapsed_s": round(elapsed, 1)}
    if args.junit:
        write_junit(outcome.results, args.junit, f"zhizao-check.{args.scenario.stem}", elapsed)
    if args.json:
        write_json(outcome.results, args.json, meta)
    return 0 if passed(outcome.results) else 1
