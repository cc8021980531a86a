"""``zhizao gateway``: run a site gateway (plant broker's unified namespace → durable buffer → ingest).

Usage: ``zhizao gateway --config gateway.toml [--check] [--log-level info]``. ``--check``
validates the configuration and exits; ``zhizao gateway check-config --config gateway.toml`` is the
same, spelled as the agent's (``zhizao agent check-config``). Exit codes: 0 clean stop
(SIGTERM/SIGINT), 1 failure, 2 usage or configuration error. Also runnable as ``python -m gateway``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from zhizao.errors import ConfigError, ZhizaoError
from zhizao.liblogs import quiet_libraries


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhizao gateway",
        description="Run a site gateway: plant broker's unified namespace -> durable buffer -> ingest.",
        epilog="Every option: gateway/sample-gateway.toml. Exit codes: 0 clean stop, 1 failure, "
               "2 usage or configuration error.")
    p.add_argument("--config", "-c", required=True, help="gateway TOML/YAML file (see sample-gateway.toml)")
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


async def _run(config_path: str) -> int:
    from gateway.config import load
    from gateway.service import Gateway

    config = load(config_path, on_this_host=True)
    for warning in config.plaintext_warnings():
        logging.getLogger("gateway").warning("%s", warning)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Gateway(config) as gw:
        task = asyncio.create_task(gw.run())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task in done:
            await task  # it failed: re-raise
            return 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    logging.getLogger("gateway").info("stopped cleanly")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["check-config"]:  # the agent's spelling of --check
        argv = [*argv[1:], "--check"]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    try:
        if args.check:
            from gateway.config import load

            cfg = load(args.config, on_this_host=True)
            print(f"configuration OK: gateway {cfg.id} at site {cfg.site}, broker {cfg.broker.host}:"
                  f"{cfg.broker.port}, ingest {cfg.uplink.http.url}")
            sys.stdout.flush()  # the OK line first, also when both streams go to one log
            for warning in cfg.plaintext_warnings():
                print(f"WARNING {warning}", file=sys.stderr)
            return 0
        return asyncio.run(_run(args.config))
    except ConfigError as exc:
        print(f"zhizao gateway: {exc}", file=sys.stderr)
        return 2
    except ZhizaoError as exc:  # e.g. a TLS file gone since the config was checked: one line
        logging.getLogger("gateway").error("gateway failed: %s", exc)
        return 1
