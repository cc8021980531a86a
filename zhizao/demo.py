"""``zhizao demo``: the whole line on this box — simulator, embedded MQTT broker, edge agent,
ingest on DuckDB, analytics and the web dashboard — with no external service, offline.

Data goes to ``./zhizao-data/<UTC start time>/`` (``--data-dir`` to choose): the DuckDB store
``zhizao.duckdb`` and the agent's buffer ``agent/agent-buffer.sqlite``. Ctrl-C (SIGINT) or SIGTERM
stops the simulator first, lets the agent deliver everything it buffered, then stops ingest: nothing
read is lost (what ingest could not take in time stays in the buffer file, and the summary says so).
A second Ctrl-C stops at once. Exit codes: 0 clean stop, 1 a component failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from zhizao.errors import ConfigError, ZhizaoError

if TYPE_CHECKING:
    from analytics.scoring import AnomalyModel

DEFAULT_SCENARIO = Path(__file__).resolve().parent / "stack" / "scenarios" / "demo.yaml"
DAY_S = 86400.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhizao demo",
        description="Run the whole zhizao line on this box and open the printed URL: simulated "
                    "machines (OPC UA + MQTT), edge agent, ingest on DuckDB, KPIs, anomaly scores and "
                    "the web dashboard. No external service; works offline.")
    p.add_argument("--speed", type=float, default=30.0,
                   help="simulated seconds per wall second (default 30)")
    p.add_argument("--duration", type=float, default=None,
                   help="wall seconds to run, then stop cleanly (default: until Ctrl-C; the line "
                        "simulates one day, then the dashboard stays up)")
    p.add_argument("--scenario", type=Path, default=None,
                   help="scenario file (default: the built-in four-machine line)")
    p.add_argument("--port", type=int, default=8080, help="port of ingest and the dashboard (default 8080)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; auth is off in the demo — keep it local)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the store and the agent buffer go (default ./zhizao-data/<start time>)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the components' warnings")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    if args.speed <= 0 or (args.duration is not None and args.duration <= 0):
        console.print("zhizao demo: --speed and --duration must be > 0")
        return 2
    from zhizao.stack.logs import setup_logging

    setup_logging(args.verbose)
    from zhizao.stack.expectations import load_play

    try:
        scenario, _ = load_play(args.scenario or DEFAULT_SCENARIO)
    except ConfigError as exc:
        console.print(f"zhizao demo: {exc}", markup=False)
        return 2
    started = datetime.now(UTC)
    data_dir = args.data_dir or Path("zhizao-data") / started.strftime("%Y%m%dT%H%M%SZ")
    try:
        return asyncio.run(_run(args, scenario, data_dir.resolve(), console))
    except KeyboardInterrupt:
        console.print("zhizao demo: stopped at once (second Ctrl-C); the agent buffer keeps what was "
                      f"not delivered: {data_dir / 'agent'}")
        return 1


async def _run(args: argparse.Namespace, scenario: object, data_dir: Path, console: Console) -> int:
    from rich.live import Live

    from zhizao.stack.line import Line, LineOptions
    from zhizao.stack.models import demo_models
    from zhizao.stack.offload import in_process
    from zhizao.stack.status import status_table
    from zhizao.stack.timeline import rebase

    sim_s = args.duration * args.speed if args.duration else DAY_S
    sc = rebase(scenario, sim_s, datetime.now(UTC))  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, stop, loop, sig)
    # the models train on a clean simulated day in a worker process (≈ 30 s, a core of its own)
    # while the line starts; scoring then catches up from the start of the run. Stopping earlier
    # ends the training instead of waiting for it.
    async with in_process(demo_models, sc, args.seed) as training:
        opts = LineOptions(scenario=sc, data_dir=data_dir, seed=args.seed, speed=args.speed,
                           duration_s=sim_s, host=args.host, port=args.port, models={})
        try:
            with console.status("starting broker, ingest, simulator and edge agent ..."):
                line = await Line(opts).__aenter__()
        except (ZhizaoError, OSError, TimeoutError) as exc:
            console.print(f"zhizao demo: could not start: {exc} (is port {args.port} free? try --port)",
                          markup=False)
            return 1
        url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}/"
        console.print(f"[bold]zhizao demo[/] is running — open [bold underline cyan]{url}[/]")
        attach = asyncio.create_task(_attach_models(training, line, console))
        reason = "stopped"
        try:
            with Live(status_table(line, url, "running"), console=console, refresh_per_second=2,
                      transient=False) as live:
                waiter = asyncio.create_task(stop.wait())
                deadline = loop.time() + args.duration if args.duration else None
                while not stop.is_set():
                    if deadline is not None and loop.time() >= deadline:
                        reason = f"--duration {args.duration:g} s reached"
                        break
                    await asyncio.wait([waiter], timeout=1.0)
                    live.update(status_table(line, url,
                                             "simulated day complete" if line.sim.done else "running"))
                if stop.is_set():
                    reason = "interrupted"
                waiter.cancel()
                live.update(status_table(line, url, f"{reason} · stopping"))
        finally:
            attach.cancel()
            if not training.done():
                console.print("zhizao demo: model training ended unfinished (the demo stopped first)",
                              style="yellow")
            undelivered = await _shutdown(line, console)
    read, sent = line.agent.samples_read, line.agent.forwarder.stats.sent_samples
    if undelivered:
        console.print(f"[yellow]stopped ({reason}); {undelivered} samples not yet delivered are kept in "
                      f"{line.agent.buffer_path} and sent at the next start[/]")
    else:
        console.print(f"[green]stopped cleanly ({reason}): {read} samples read, {sent} delivered, "
                      "nothing left in the buffer.[/] Data: " + str(data_dir))
    return 0


async def _attach_models(training: asyncio.Future[dict[str, AnomalyModel]], line: object,
                         console: Console) -> None:
    """Hand the trained models to the line's analytics (they score from the start of the run)."""
    from zhizao.stack.line import Line

    assert isinstance(line, Line)
    try:
        models = await training
    except Exception as exc:  # noqa: BLE001 — whatever failed the training, the demo goes on, and says so
        console.print(f"zhizao demo: no anomaly models ({type(exc).__name__}: {exc})", markup=False,
                      style="yellow")
        return
    line.analytics.add_models(models)


async def _shutdown(line: object, console: Console) -> int:
    """Simulator off, agent drained into ingest, then ingest and broker; returns samples left buffered."""
    from zhizao.stack.line import Line

    assert isinstance(line, Line)
    with console.status("stopping: line clock off, agent delivering its buffer, then ingest ..."):
        try:
            left = await line.wind_down(settle_s=1.0, stall_s=30.0)
        finally:
            await line.__aexit__(None, None, None)
    return left


def _on_signal(stop: asyncio.Event, loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    if stop.is_set():  # second Ctrl-C: give up waiting
        loop.remove_signal_handler(sig)
        signal.raise_signal(sig)
        return
    stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
