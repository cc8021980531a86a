"""``zhizao analytics kpi-feed --config feed.toml`` (or ``python -m analytics.kpi_feed``): run the
KPI feed until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from analytics.kpi_feed.config import load_feed_config
from analytics.kpi_feed.runner import serve
from zhizao.errors import ConfigError
from zhizao.liblogs import quiet_libraries


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zhizao analytics kpi-feed",
                                     description="Write KPIs back to the store for Grafana.")
    parser.add_argument("--config", required=True, help="feed config (TOML/YAML), see sample.toml")
    args = parser.parse_args(argv)
    try:
        cfg = load_feed_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()  # httpx would log every request to ingest or InfluxDB at INFO
    try:
        asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0
    except ConfigError as exc:  # a file the config names (KPI config, plant file) is missing or invalid
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
