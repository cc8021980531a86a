"""``zhizao analytics``: KPIs, anomaly models, CSV scoring, SKAB evaluation.

Subcommands: ``kpi`` (the KPI engine, in :mod:`analytics.kpi.cli`), ``eval skab``, ``score``,
``train``, ``models list|show|promote|rollback``, ``serve`` (the scoring service), ``kpi-feed``
(KPIs written back as series, :mod:`analytics.kpi_feed`). Exit codes: 0 ok,
1 failure (data or model problem, a missing input file or output directory; reported on stderr),
2 usage or configuration error: argparse's, an invalid config file, and a ``DataError`` whose
``where`` is a command-line option (``--warmup``, ``--columns`` naming a column the file lacks, a
``--duckdb`` file that does not exist...) and a ``UsageError`` (a ``models`` scope or version, a
``train --scope`` that is not a machine or that the store has no data of).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from analytics.errors import DataError, ModelMismatch, RegistryError, UsageError
from zhizao.errors import ConfigError, ZhizaoError
from zhizao.liblogs import quiet_libraries
from zhizao.timeargs import TIME_HELP

DEFAULT_REGISTRY = "zhizao-models"


def _kpi(argv: list[str]) -> int:
    try:
        module = importlib.import_module("analytics.kpi.cli")
    except ModuleNotFoundError as exc:
        if exc.name and "analytics.kpi.cli".startswith(exc.name):
            print("zhizao analytics kpi: not built yet in this version", file=sys.stderr)
            return 2
        raise
    main_fn: Callable[[list[str]], int] = module.main
    try:
        return main_fn(argv)
    except SystemExit as exc:  # argparse inside the KPI command (--help, usage errors)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zhizao analytics", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    sub.add_parser("kpi", help="KPI engine: OEE, energy per good part, scrap, MTBF/MTTR", add_help=False)
    sub.add_parser("kpi-feed", help="write KPIs back to the store as series for Grafana (--config FILE)",
                   add_help=False)

    ev = sub.add_parser("eval", help="run a benchmark protocol")
    ev.add_argument("benchmark", choices=["skab", "sim"])
    ev.add_argument("--data", help="skab: SKAB directory (valve1/, valve2/, other/)")
    ev.add_argument("--config", help="TOML/YAML SkabConfig or SimEvalConfig (default: built in)")
    ev.add_argument("--scenario", help="sim: scenario file (default: the source tree's "
                                       "examples/workshop.toml, wherever the command runs)")
    ev.add_argument("--seeds", default="1,2,3", help="sim: comma-separated seeds")
    ev.add_argument("--all", action="store_true", help="also run the alternative detectors tried")
    ev.add_argument("--json", action="store_true", help="print one JSON object per configuration at the end")

    sc = sub.add_parser("score", help="score a CSV online: timestamp,score,is_anomaly")
    sc.add_argument("file", type=Path)
    sc.add_argument("--out", required=True, type=Path, help="output CSV ('-' for stdout)")
    when = sc.add_mutually_exclusive_group()
    when.add_argument("--time-col",
                      help="timestamp column: ISO-8601 date/times or numbers (seconds) (default: the one "
                           "named timestamp/time/datetime/date/ts/_time, else the first column if it "
                           "holds ISO-8601 date/times; otherwise an error); 'Date,Time': two columns "
                           "joined by a space")
    when.add_argument("--no-time", action="store_true",
                      help="no time column: score the rows in file order, the row index as time")
    sc.add_argument("--time-format", help="strftime format of the timestamps when they are neither ISO-8601 "
                                          "nor numbers, e.g. '%%d/%%m/%%Y %%H:%%M:%%S' (no %%z: UTC)")
    which = sc.add_mutually_exclusive_group()
    which.add_argument("--columns", help="comma-separated value columns (default: every column with a "
                                         "number in the warm-up rows)")
    which.add_argument("--exclude", help="comma-separated columns to leave out of the default (labels "
                                         "such as SKAB's anomaly,changepoint)")
    sc.add_argument("--sep", default=",", help="field separator, literal, one or more characters "
                                               "(default ','; 'tab' or '\\t' for a tab)")
    sc.add_argument("--encoding", default="utf-8", help="the file's text encoding (default utf-8; a UTF-16 "
                                                        "byte-order mark is honoured), e.g. gbk, cp1252")
    sc.add_argument("--decimal", default=".", help="decimal mark of the values (default '.'; ',' for 1,5)")
    sc.add_argument("--warmup", type=int, default=400, help="rows used to fit the model (default 400, >= 2)")
    sc.add_argument("--max-gap", type=float, help="seconds (rows with --no-time); a larger step restarts "
                                                   "the windows (default 10x the warm-up's median step)")
    sc.add_argument("--config", help="TOML/YAML ModelSpec (detector, windows, threshold, vote)")

    tr = sub.add_parser("train", help="train a machine's model from stored history into the registry")
    tr.add_argument("--scope", required=True,
                    help="machine asset path site/area/line/machine (one machine; not a line or site)")
    tr.add_argument("--from", dest="start", required=True, help=f"start: {TIME_HELP}")
    tr.add_argument("--to", dest="end", required=True, help="end (same forms)")
    store = tr.add_mutually_exclusive_group()
    store.add_argument("--duckdb", help="DuckDB store file to read (must exist)")
    store.add_argument("--ingest-config", help="ingest TOML/YAML config whose [storage] to read "
                                               "(without either: ingest's defaults, ./zhizao.duckdb, "
                                               "which must exist)")
    tr.add_argument("--model", choices=["health", "energy"], default="health",
                    help="health: process signals, running rows (registry scope = the machine path); "
                         "energy: expected power from state + load signals, every row (scope PATH#energy)")
    tr.add_argument("--signals", help="comma-separated signals; health: default every numeric process "
                                      "signal; energy: the load signals power depends on (required)")
    tr.add_argument("--power-signal", default="power_kw",
                    help="energy: the measured power, the model's target (default power_kw)")
    tr.add_argument("--registry", default=DEFAULT_REGISTRY,
                    help=f"model registry directory (default {DEFAULT_REGISTRY})")
    tr.add_argument("--config", help="TOML/YAML ModelSpec (default: health ModelSpec(), energy "
                                     "analytics/detectors/expected_power/sample.toml)")
    tr.add_argument("--promote", action="store_true",
                    help="make the new version active (checked as by `models promote`); without it only a "
                         "scope's first version becomes active, and only if it passes its validation")

    sv = sub.add_parser("serve", help="the scoring service: score stored data live, write anomaly_score "
                                      "and anomaly events back")
    sv.add_argument("--config", required=True, help="TOML/YAML service config "
                                                    "(analytics/scoring/service/sample.toml)")
    sv.add_argument("--check", action="store_true", help="validate the config and exit")

    mo = sub.add_parser("models", help="list, show, promote or roll back stored models")
    mo.add_argument("action", choices=["list", "show", "promote", "rollback"])
    mo.add_argument("scope", nargs="?", help="registry scope: a machine path, PATH#energy for its energy "
                                             "model (see `models list`)")
    mo.add_argument("version", nargs="?", help="promote: v0002, or just 2")
    mo.add_argument("--registry", default=DEFAULT_REGISTRY,
                    help=f"model registry directory (default {DEFAULT_REGISTRY})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "kpi":
        return _kpi(args_list[1:])
    if args_list and args_list[0] == "kpi-feed":
        from analytics.kpi_feed.__main__ import main as kpi_feed_main

        try:
            return kpi_feed_main(args_list[1:])
        except SystemExit as exc:  # its argparse: --help, usage errors
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    from analytics import commands

    if args.cmd == "serve" and not args.check:  # the service's log: one line per event worth knowing
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        quiet_libraries()  # httpx would log every request to ingest or InfluxDB at INFO
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "eval": commands.evaluate, "score": commands.score,
        "train": commands.train, "models": commands.models, "serve": commands.serve,
    }
    try:
        return handlers[args.cmd](args)
    except ConfigError as exc:
        print(f"zhizao analytics: {exc}", file=sys.stderr)
        return 2
    except (DataError, ModelMismatch, RegistryError) as exc:
        print(f"zhizao analytics {args.cmd}: {exc}", file=sys.stderr)
        usage = isinstance(exc, UsageError) or (isinstance(exc, DataError) and exc.where.startswith("--"))
        return 2 if usage else 1
    except ZhizaoError as exc:
        print(f"zhizao analytics {args.cmd}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def dumps(obj: object) -> str:
    return json.dumps(obj, default=str)


if __name__ == "__main__":
    raise SystemExit(main())
