"""``zhizao dashboards generate | check | push`` — Grafana dashboards as code.

* ``generate [--out DIR]`` writes ``generated/<uid>.json`` from the Python boards.
* ``check`` fails (exit 1) when the committed JSON is stale or a board breaks the structure rules;
  with ``--influx-url`` it also runs every panel's query against that InfluxDB over ``--hours``
  (default 8) ending at ``--end`` — by default the newest sample in the database (simulated data
  is stamped in the scenario's time, not now), else ``now`` or a given time — says which window
  it used and where the data lies, and fails on any query that errors or returns no rows.
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
    chk.add_argument("--hours", type=_hours, default=8.0,
                     help="length of the time range to query, hours (default: %(default)s)")
    chk.add_argument("--end", type=_end, default="latest", metavar="latest|now|TIME",
                     help="end of the time range: 'latest' = the newest sample in the database (default; "
                          "a simulator run is stamped in its scenario's time), 'now', or an RFC 3339 time "
                          "with offset, e.g. 2026-11-23T08:00:00Z")
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


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not 0 < hours <= 24 * 366:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {24 * 366} hours, got {text}")
    return hours


def _end(text: str) -> str | datetime:
    if text in ("latest", "now"):
        return text
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not 'latest', 'now' or an RFC 3339 time: {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; append 'Z' for UTC")
    return when.astimezone(UTC)


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


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_queries(args: argparse.Namespace) -> list[str]:
    from dashboards.influxql import MEASUREMENT
    from dashboards.verify import InfluxQL, data_span, run_board

    overrides = dict(v.split("=", 1) for v in args.var if "=" in v)
    client = InfluxQL(args.influx_url, args.database, args.influx_token)
    failed: list[str] = []
    try:
        span = data_span(client, MEASUREMENT)
        where = f'"{MEASUREMENT}" of database {args.database!r}'
        held = f"samples in {where}: {_iso(span[0])} .. {_iso(span[1])}" if span else f"no samples in {where}"
        if isinstance(args.end, datetime):
            end, how = args.end, "ending at --end"
        elif args.end == "latest" and span is not None:
            # just past the newest sample: the time filter's end is exclusive
            end, how = span[1] + timedelta(seconds=1), "ending at the newest sample"
        else:
            end, how = datetime.now(UTC), "ending now"
        start = end - timedelta(hours=args.hours)
        print(f"window {_iso(start)} .. {_iso(end)} ({args.hours:g} h {how}); {held}")
        for doc in boards().values():
            for run in run_board(client, doc, start, end, overrides=overrides):
                status = "ok" if run.ok else f"FAIL {run.error or 'no rows'}"
                print(f"{run.board} {run.where}: {run.rows} rows {status}")
                if not run.ok:
                    failed.append(f"{run.board} {run.where}: {run.error or 'no rows'}")
    finally:
        client.close()
    note = None
    if failed and span is None:
        note = f"{held}: every panel is empty until data arrives (check --influx-url and --database)"
    elif failed and span is not None and (span[1] < start or span[0] >= end):
        note = (f"the window {_iso(start)} .. {_iso(end)} holds no samples ({held}): "
                "run with --end latest (the default) or an --end inside the data")
    if note is not None:
        print(f"problem: {note}", file=sys.stderr)
        failed.append(note)
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
