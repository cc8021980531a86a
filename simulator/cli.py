"""``zhizao sim``: run the simulated line, export its plant description, or generate offline.

Exit codes: 0 ok, 1 runtime failure (port in use, broker unreachable, --duckdb store unavailable),
2 usage/config error (a bad --start; a --duckdb file already holding the run's period).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from zhizao.errors import ConfigError, StoreUnavailable, ZhizaoError
from zhizao.timeargs import parse_time

if TYPE_CHECKING:
    from simulator.scenario import Scenario

EPILOG = """\
examples:
  zhizao sim --scenario examples/workshop.toml --seed 7 --speed 60 --duration 600
  zhizao sim --scenario examples/compact.yaml --speed max --duration 3600 --ledger ledger.jsonl \\
             --mqtt-host 127.0.0.1 --mqtt-port 1883
  zhizao sim --scenario examples/workshop.toml --security-dir pki/sim --trust-dir pki/trusted
             (pki/trusted holds the agent's certificate: zhizao agent certs makes it)
  zhizao sim export-plant --scenario examples/workshop.toml --out plant.toml
  zhizao sim generate --scenario examples/workshop.toml --duration 28800 --ledger ledger.jsonl \\
             --samples samples.jsonl
  zhizao sim generate --scenario examples/improved.toml --start 2026-11-24T08:00:00+08:00 \\
             --duration 28800 --ledger improved.jsonl --duckdb demo.duckdb
             (--duckdb: into a store 'zhizao analytics kpi --duckdb' reads; the KPI improvement
             recipe: simulator/README.md, "KPI improvement demo")
Without --mqtt-host the MQTT-native machines are not published (the CLI says so).
Other subcommands: export-plant (the plant file for KPIs), generate (offline, no servers);
each has --help. The scenario format, OPC UA address space and MQTT payloads: simulator/README.md.
"""


def _speed(text: str) -> float | None:
    if text in ("max", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number > 0 or 'max', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("speed must be > 0 (or 'max')")
    return value


START_HELP = (
    "start the run here instead of at the scenario's start: ISO-8601 date-time with a UTC offset, "
    "e.g. 2026-11-24T08:00:00+08:00 (on the tick grid); the shift calendar, machines, seed and "
    "faults given in seconds after the start are unchanged, so the same seed and --start give the "
    "same data"
)


def _start(text: str) -> datetime:
    """``--start``: :func:`zhizao.timeargs.parse_time`, but the offset is required (as the
    scenario's own ``start``): a bare date-time would be UTC, not the plant's local time."""
    example = "e.g. 2026-11-24T08:00:00+08:00, or ...Z for UTC"
    try:
        ts = parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 date-time with a UTC offset: {text!r} ({example})"
        ) from None
    if datetime.fromisoformat(text.strip()).tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; give one, as the scenario's start does ({example})"
        )
    return ts


def _scenario(path: Path, start: datetime | None) -> Scenario:
    """The scenario file, started at ``start`` if given (``ConfigError`` naming --start if that
    start is not usable)."""
    from simulator.scenario import load_scenario, with_start

    scenario = load_scenario(path)
    if start is None:
        return scenario
    try:
        return with_start(scenario, start)
    except ValueError as exc:
        raise ConfigError("the command line", [("--start", f"{start.isoformat()}: {exc}")]) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhizao sim",
        description="Run the simulated digital-workshop line: an OPC UA server for its machines, vendor MQTT "
        "payloads for MQTT-native machines, and a ground-truth ledger (JSON Lines).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenario", required=True, type=Path, help="scenario file (.toml or .yaml)")
    p.add_argument(
        "--seed", type=int, default=7, help="run seed: same seed => same data and ledger (default 7)"
    )
    p.add_argument(
        "--speed", type=_speed, default=1.0, help="simulated seconds per wall second, or 'max' (default 1)"
    )
    p.add_argument("--duration", type=float, default=28800.0, help="simulated seconds to run (default 28800)")
    p.add_argument("--start", type=_start, help=START_HELP)
    p.add_argument("--opcua-host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--opcua-port", type=int, default=4840, help="OPC UA port (default 4840; 0 picks a free port)"
    )
    p.add_argument("--no-opcua", action="store_true", help="do not serve OPC UA (MQTT and ledger only)")
    p.add_argument("--mqtt-host", help="MQTT broker host for MQTT-native machines (default: MQTT off)")
    p.add_argument("--mqtt-port", type=int, default=1883, help="MQTT broker port (default 1883)")
    p.add_argument("--ledger", type=Path, help="write the ground-truth ledger (JSON Lines) here at the end")
    p.add_argument("--served-log", type=Path, help="write every value served (JSON Lines) here")
    p.add_argument(
        "--security-dir",
        type=Path,
        help="enable Basic256Sha256 SignAndEncrypt; server cert/key kept (created once) here",
    )
    p.add_argument(
        "--trust-dir",
        type=Path,
        help="folder of trusted client certificates, DER or PEM (default: <security-dir>/trusted)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhizao sim export-plant",
        description="Write the scenario's plant description (PlantConfig) for the KPI code.",
    )
    p.add_argument("--scenario", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="plant file to write (.toml, .yaml or .json)")
    return p


def _generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhizao sim generate", description="Run the simulation offline (no servers) as fast as possible."
    )
    p.add_argument("--scenario", required=True, type=Path)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--duration", type=float, default=28800.0)
    p.add_argument("--start", type=_start, help=START_HELP)
    p.add_argument("--ledger", type=Path, required=True, help="ledger file to write (JSON Lines)")
    p.add_argument(
        "--samples", type=Path, help="also write every sample (JSON Lines, wire-format sample objects)"
    )
    p.add_argument(
        "--duckdb",
        type=Path,
        help="also write every sample into this DuckDB store (ingest's format, created if missing, "
        "appended to otherwise; refused if it already holds this site/area in this run's range), "
        "for 'zhizao analytics kpi --duckdb'",
    )
    return p


def main(argv: list[str]) -> int:
    try:
        if argv and argv[0] == "export-plant":
            return _export(_export_parser().parse_args(argv[1:]))
        if argv and argv[0] == "generate":
            return _generate(_generate_parser().parse_args(argv[1:]))
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # asyncua logs expected conditions loudly; our own errors are printed below
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_run(args))
    except ConfigError as exc:
        print(f"zhizao sim: {exc}", file=sys.stderr)
        return 2
    except ZhizaoError as exc:
        print(f"zhizao sim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _export(args: argparse.Namespace) -> int:
    from simulator.plant_export import export_plant
    from simulator.scenario import load_scenario

    try:
        plant = export_plant(load_scenario(args.scenario), args.out)
    except ConfigError as exc:
        print(f"zhizao sim export-plant: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(plant.machines)} machines, {len(plant.calendar.shifts)} shifts")
    return 0


def _generate(args: argparse.Namespace) -> int:
    import orjson

    from simulator.engine import generate
    from simulator.ledger import write_ledger
    from simulator.storeload import AlreadyStored, load_samples
    from zhizao.model import Sample
    from zhizao.wire import format_ts, sample_to_dict

    try:
        scenario = _scenario(args.scenario, args.start)
        run = generate(scenario, args.seed, args.duration)
    except (ConfigError, ValueError) as exc:  # ValueError: --duration <= 0
        print(f"zhizao sim generate: {exc}", file=sys.stderr)
        return 2
    sim = run.simulation
    n = 0

    def samples() -> Iterator[Sample]:
        nonlocal n
        if args.samples is None:
            for s in run:
                n += 1
                yield s
            return
        with args.samples.open("wb") as fh:
            for s in run:
                fh.write(orjson.dumps(sample_to_dict(s)) + b"\n")
                n += 1
                yield s

    stored = ""
    if args.duckdb is not None:
        scope = f"{scenario.site}/{scenario.area}"
        try:
            written = asyncio.run(
                load_samples(args.duckdb, samples(), scope=scope, start=sim.start, end=sim.end)
            )
        except AlreadyStored as exc:
            print(f"zhizao sim generate: --duckdb {exc}", file=sys.stderr)
            return 2
        except StoreUnavailable as exc:
            print(f"zhizao sim generate: --duckdb: store unavailable: {exc}", file=sys.stderr)
            return 1
        stored = f"; {written} written to {args.duckdb}"
    else:
        for _ in samples():
            pass
    write_ledger(run.ledger, args.ledger)
    print(
        f"generated {n} samples from {format_ts(sim.start)} to {format_ts(sim.end)}{stored}; "
        f"ledger written to {args.ledger}"
    )
    return 0


async def _run(args: argparse.Namespace) -> int:
    from simulator.runtime import SimulatorRuntime

    scenario = _scenario(args.scenario, args.start)
    security = None
    if args.security_dir is not None:
        from simulator.opcua.security import OpcUaSecurity

        trust = args.trust_dir or args.security_dir / "trusted"
        trust.mkdir(parents=True, exist_ok=True)
        security = OpcUaSecurity(cert_dir=args.security_dir, trust_dir=trust)
    elif args.trust_dir is not None:
        print("zhizao sim: --trust-dir needs --security-dir", file=sys.stderr)
        return 2
    mqtt = (args.mqtt_host, args.mqtt_port) if args.mqtt_host else None
    runtime = SimulatorRuntime(
        scenario,
        seed=args.seed,
        speed=args.speed,
        duration_s=args.duration,
        opcua_host=args.opcua_host,
        opcua_port=None if args.no_opcua else args.opcua_port,
        security=security,
        mqtt=mqtt,
        ledger=args.ledger,
        served_log=args.served_log,
    )
    n_machines = len(runtime.assets)
    n_lines = len(scenario.lines)
    plural = "" if n_lines == 1 else "s"
    speed = "max" if args.speed is None else f"{args.speed:g}x"
    print(
        f"zhizao sim: scenario {scenario.name!r} ({n_machines} machines on {n_lines} line{plural}), "
        f"seed {args.seed}, speed {speed}, {args.duration:g} s simulated from {scenario.start.isoformat()}",
        flush=True,
    )
    async with runtime as sim:
        if sim.endpoint:
            mode = "Basic256Sha256 SignAndEncrypt" if security else "none (anonymous)"
            print(
                f"OPC UA endpoint: {sim.endpoint}  namespace urn:zhizao:simulator, security {mode}, "
                f"{len(sim.opcua_machines)} machines, {len(sim.node_ids)} variables under "
                f"Objects/{scenario.site}/{scenario.area}/<line>/<machine>/<signal>",
                flush=True,
            )
            if security is not None:
                print(f"  server certificate: {security.cert_path}; trusted clients: {security.trust_dir}")
        else:
            print("OPC UA: off")
        if sim.topics:
            state = (
                f"mqtt://{args.mqtt_host}:{args.mqtt_port}" if mqtt else "off (give --mqtt-host to publish)"
            )
            print(f"MQTT: {state}")
            for asset, topic in sim.topics.items():
                print(f"  {asset} -> {topic}")
        else:
            print("MQTT: no MQTT-native machines in this scenario")
        if args.ledger:
            print(f"ledger: {args.ledger} (written at the end)", flush=True)
        await sim.wait()
    mqtt_note = f", {sim.mqtt_published} MQTT messages ({sim.mqtt_dropped} dropped)" if mqtt else ""
    print(f"done: {sim.ticks_done} ticks, {sim.opcua_writes} OPC UA value writes{mqtt_note}")
    return 0
