"""``zhizao dashboards generate | check | push`` — Grafana dashboards as code.

* ``generate [--out DIR]`` writes ``generated/<uid>.json`` from the Python boards.
* ``check`` fails (exit 1) when the committed JSON is stale or a board breaks the structure rules;
  with ``--influx-url`` it also runs every panel's query against that InfluxDB over the last
  ``--hours`` and fails on any query that errors or returns no rows.
* ``push --url URL --token TOKEN [--influx-url ...]`` publishes to an existing Grafana (idempotent:
  datasource and folder created when missing, dashboards overwritten by uid).

Exit codes: 0 ok, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashboards.generate import GENERATED_DIR, boards, stale, write_all
from dashboards.structure import check_all
from zhizao.errors import ZhizaoError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhizao dashboards", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    gen = sub.add_parser("generate", help="write the dashboard JSON files from the Python boards")
    gen.add_argument("--out", type=Path, default=GENERATED_DIR, help="directory (default: %(default)s)")
    chk = sub.add_parser("check", help="fail if the committed JSON is stale or malformed")
    chk.add_argument("--dir", type=Path, default=GENERATED_DIR)
    chk.add_argument("--influx-url", help="also run every panel query against this InfluxDB")
    chk.add_argument("--database", default="zhizao")
    chk.add_argument("--influx-token", default=os.environ.get("ZHIZAO_INFLUX_TOKEN"))
    chk.add_argument("--hours", type=float, default=8.0, help="time range to query (default: %(default)s)")
    chk.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                     help="template variable value (default: the first value found)")
    push = sub.add_parser("push", help="publish the dashboards to an existing Grafana")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    push.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                      help="service account token (default: $GRAFANA_TOKEN)")
    push.add_argument("--influx-url",
                      help="InfluxDB URL as Grafana reaches it (creates/updates the datasource)")
    push.add_argument("--database", default="zhizao")
    push.add_argument("--influx-token", default=os.environ.get("ZHIZAO_INFLUX_TOKEN"))
    push.add_argument("--folder", default="zhizao", help="folder uid and title (default: %(default)s)")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.action == "generate":
            for path in write_all(args.out):
                print(f"wrote {path}")
            return 0
        if args.action == "check":
            return _check(args)
        return _push(args, parser)
    except ZhizaoError as exc:
        print(f"zhizao dashboards {args.action}: {exc}", file=sys.stderr)
        return 1


def _check(args: argparse.Namespace) -> int:
    problems = stale(args.dir) + check_all(boards())
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    if not problems:
        print(f"{len(boards())} dashboards current and well-formed")
    if args.influx_url:
        problems += _run_queries(args)
    return 1 if problems else 0


def _run_queries(args: argparse.Namespace) -> list[str]:
    from dashboards.verify import InfluxQL, run_board

    overrides = dict(v.split("=", 1) for v in args.var if "=" in v)
    end = datetime.now(UTC)
    start = end - timedelta(hours=args.hours)
    client = InfluxQL(args.influx_url, args.database, args.influx_token)
    failed: list[str] = []
    try:
        for doc in boards().values():
            for run in run_board(client, doc, start, end, overrides=overrides):
                status = "ok" if run.ok else f"FAIL {run.error or 'no rows'}"
                print(f"{run.board} {run.where}: {run.rows} rows {status}")
                if not run.ok:
                    failed.append(f"{run.board} {run.where}: {run.error or 'no rows'}")
    finally:
        client.close()
    return failed


def _push(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from dashboards.push import InfluxSource, push

    if not args.token:
        parser.error("--token (or $GRAFANA_TOKEN) is required")
    influx = InfluxSource(args.influx_url, args.database, args.influx_token) if args.influx_url else None
    report = push(args.url, args.token, boards(), influx=influx, folder_uid=args.folder,
                  folder_title=args.folder)
    for line in report.actions:
        print(line)
    return 0
