"""``zhizao agent``: run the edge agent, check its config, manage its OPC UA certificates.

    zhizao agent --config agent.toml                 run (same as: zhizao agent run --config ...)
    zhizao agent check-config --config agent.toml    validate; print every problem with its key
    zhizao agent certs --config agent.toml           create (once) and show the client certificates
    zhizao agent certs --config agent.toml --server  also show each server's certificate fingerprint

Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from zhizao.errors import ConfigError, ZhizaoError
from zhizao.liblogs import quiet_libraries

log = logging.getLogger("edge_agent")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhizao agent",
        description="Edge agent: OPC UA/MQTT in, durable SQLite buffer, out to ingest or a site broker.",
        epilog="Sample config: edge_agent/sample-agent.toml. Exit codes: 0 ok, 1 failure, 2 config error.",
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    for name, text in (
        ("run", "run the agent (the default)"),
        ("check-config", "validate the config and print every problem with its key"),
        ("certs", "create (once) and show the agent's OPC UA client certificates"),
    ):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--config", "-c", required=True, type=Path, help="agent TOML config")
        if name == "certs":
            s.add_argument(
                "--server", action="store_true", help="also fetch and show each server's certificate"
            )
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``zhizao agent`` (see the module docstring)."""
    args_list = list(argv)
    if args_list and (args_list[0] in ("--config", "-c") or args_list[0].startswith("--config=")):
        args_list.insert(0, "run")
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.cmd is None:
        parser.print_help()
        return 2
    from edge_agent.config import load_agent_config

    try:
        cfg, digest = load_agent_config(args.config)
    except ConfigError as exc:
        print(f"zhizao agent: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "check-config":
        kinds = ", ".join(f"{c.name} ({c.type})" for c in cfg.connectors)
        print(
            f"{args.config}: OK ({digest}); agent {cfg.agent.id}; connectors: {kinds}; "
            f"uplink: {cfg.uplink.type}"
        )
        return 0
    logging.basicConfig(
        level=getattr(logging, cfg.agent.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    quiet_libraries()
    try:
        if args.cmd == "certs":
            from edge_agent.certs import show_certificates

            return asyncio.run(show_certificates(cfg, fetch_server=args.server))
        return asyncio.run(_run(cfg, digest))
    except ZhizaoError as exc:  # e.g. a TLS file gone since the config was checked: one line
        log.error("agent failed: %s", exc)
        return 1


async def _run(cfg: object, digest: str) -> int:
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig

    assert isinstance(cfg, AgentConfig)
    agent = Agent(cfg, digest)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)
    return 0
