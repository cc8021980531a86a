"""The ``zhizao`` command: one entry point, one subcommand per component.

Each subcommand lives in its component (``simulator.cli``, ``edge_agent.cli`` ...) as a
``main(argv: list[str]) -> int`` function and is imported only when used, so ``zhizao --help``
is instant and a component's dependencies load only for that component.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Callable, Sequence
from typing import Final

from zhizao import __version__

# subcommand -> (module with main(argv) -> int, one-line description)
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "sim": (
        "simulator.cli",
        "run the simulated digital-workshop line (OPC UA server, MQTT, ground-truth ledger)",
    ),
    "agent": (
        "edge_agent.cli",
        "run an edge agent: OPC UA/MQTT in, durable buffer, out to ingest or a broker",
    ),
    "gateway": ("gateway.cli", "run a site gateway: plant broker's unified namespace -> ingest"),
    "ingest": ("ingest.cli", "run the ingest API (DuckDB or InfluxDB), manage tokens"),
    "analytics": ("analytics.cli", "KPIs (OEE, energy, scrap, MTBF/MTTR), anomaly models, SKAB evaluation"),
    "dashboards": ("dashboards.cli", "generate Grafana dashboards and push them to a Grafana"),
    "demo": ("zhizao.demo", "the whole line on one box: simulator, agent, ingest, analytics, web dashboard"),
    "check": ("zhizao.check", "QA: play a scenario through the whole stack and check its expectations"),
}

EPILOG = """\
Start with:  zhizao demo            (everything on this box; open the printed URL)
Then:        zhizao sim --help      (the simulated line)   zhizao agent --help   (edge agent)
Each subcommand has its own --help. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhizao",
        description="zhizao (智造): edge-to-cloud telemetry for smart factories.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zhizao {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def load_command(name: str) -> Callable[[list[str]], int] | None:
    """The ``main`` of subcommand ``name``, or ``None`` if that component is not built yet."""
    module_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    main_fn: Callable[[list[str]], int] = module.main
    return main_fn


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if args else 2
    if args[0] == "--version":
        parser.parse_args(args)
    name = args[0]
    if name not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"zhizao: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    command = load_command(name)
    if command is None:
        print(f"zhizao {name}: not built yet in this version", file=sys.stderr)
        return 2
    try:
        return command(args[1:])
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket's, not the reader of our output's
        return 141  # as a command killed by SIGPIPE: `zhizao analytics score ... --out - | head`


def _stdout_closed() -> bool:
    """True when standard output is a pipe whose reader went away (its write end polls as an
    error); then points stdout at /dev/null, so the interpreter's final flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        closed = any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):  # no real stdout (a test's capture)
        return False
    if closed:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
    return closed


if __name__ == "__main__":
    raise SystemExit(main())
