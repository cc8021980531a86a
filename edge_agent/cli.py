"""``zhizao agent``: run the edge agent, check its config, manage its OPC UA certificates.

    zhizao agent --config agent.toml                 run (same as: zhizao agent run --config ...)
    zhizao agent check-config --config agent.toml    validate; print every problem with its key
    zhizao agent certs --config agent.toml           create (once) and show the client certificates
    zhizao agent certs --config agent.toml --server  also show each server's certificate (to pin it)
    zhizao agent certs --server opc.tcp://host:4840  show a server's certificates (no config needed)

Before anything runs, the config is validated for this machine: the folders and files it names
(``state_dir``, ``buffer.path``, ``deadletter.path``, ``token_file``, TLS files) are checked,
each problem named by its key (exit 2); ``${NAME}`` in string values comes from the environment
(a variable not set is such a problem: :mod:`edge_agent.config`). ``certs`` accepts a secure
OPC UA connector with nothing pinned yet: it is how the server certificate to pin is found
(trust on first use).

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
        s.add_argument("--config", "-c", required=name != "certs", type=Path, help="agent TOML config")
        if name == "certs":
            s.add_argument(
                "--server", nargs="?", const=True, default=False, metavar="ENDPOINT",
                help="also fetch and show each connector's server certificate (fingerprint, subject, "
                     "validity, pinned or not); with opc.tcp://... that server's instead (no --config "
                     "needed): to pin it before anything is trusted",
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

    if args.cmd == "certs":
        return _certs(args.config, args.server)
    try:
        cfg, digest = load_agent_config(args.config, on_this_host=True)
    except ConfigError as exc:
        print(f"zhizao agent: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "check-config":
        kinds = ", ".join(f"{c.name} ({c.type})" for c in cfg.connectors)
        print(
            f"{args.config}: OK ({digest}); agent {cfg.agent.id}; connectors: {kinds}; "
            f"uplink: {cfg.uplink.type}"
        )
        sys.stdout.flush()  # the OK line first, also when both streams go to one log
        for warning in cfg.plaintext_warnings():
            print(f"WARNING {warning}", file=sys.stderr)
        return 0
    _logging(cfg.agent.log_level)
    for warning in cfg.plaintext_warnings():
        log.warning("%s", warning)
    try:
        return asyncio.run(_run(cfg, digest))
    except ZhizaoError as exc:  # e.g. a TLS file gone since the config was checked: one line
        log.error("agent failed: %s", exc)
        return 1


def _certs(config: Path | None, server: bool | str) -> int:
    from edge_agent.certs import show_certificates
    from edge_agent.config import AgentConfig, load_agent_config

    if isinstance(server, str) and not server.startswith("opc.tcp://"):
        print(f"zhizao agent certs: --server takes an opc.tcp:// endpoint, not {server!r}", file=sys.stderr)
        return 2
    if config is None and not isinstance(server, str):
        print("zhizao agent certs: give --config, or --server opc.tcp://... to see a server's "
              "certificates", file=sys.stderr)
        return 2
    cfg: AgentConfig | None = None
    if config is not None:
        try:
            cfg, _ = load_agent_config(config, on_this_host=True, untrusted_servers_ok=True)
        except ConfigError as exc:
            print(f"zhizao agent: {exc}", file=sys.stderr)
            return 2
    _logging(cfg.agent.log_level if cfg else "info")
    try:
        return asyncio.run(show_certificates(cfg, server=server))
    except ZhizaoError as exc:  # e.g. the client certificate cannot be written: one line
        log.error("agent certs failed: %s", exc)
        return 1


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    quiet_libraries()


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
