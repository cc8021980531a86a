"""``python -m analytics.kpi_feed --config feed.toml``: run the KPI feed until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from analytics.kpi_feed.config import load_feed_config
from analytics.kpi_feed.runner import serve
from zhizao.errors import ConfigError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m analytics.kpi_feed",
                                     description="Write KPIs back to the store for Grafana.")
    parser.add_argument("--config", required=True, help="feed config (TOML/YAML), see sample.toml")
    args = parser.parse_args(argv)
    try:
        cfg = load_feed_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
