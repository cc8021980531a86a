"""Handlers behind ``zhizao analytics`` subcommands (argument parsing lives in :mod:`analytics.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from analytics.errors import DataError, ModelMismatch, RegistryError, UnknownScope, UsageError
from analytics.registry import ModelRegistry, UnreadableMetadata, UnusableModel
from analytics.scoring import ModelSpec
from zhizao.config import load_config
from zhizao.errors import ConfigError
from zhizao.timeargs import parse_time

VALIDATED_REFERENCE_H = 24.0
"""The reference length the shipped models were evaluated with (``eval sim``, the demo)."""


def _spec(path: str | None) -> ModelSpec:
    return load_config(ModelSpec, path) if path else ModelSpec()


def evaluate(args: argparse.Namespace) -> int:
    return eval_sim(args) if args.benchmark == "sim" else eval_skab(args)


def eval_sim(args: argparse.Namespace) -> int:
    from analytics.simline import SimEvalConfig, evaluate_seed, summarise
    from simulator.scenario import load_scenario

    try:  # the command line first: a wrong --seeds is reported before any file is read
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise DataError("--seeds", f"comma-separated integers expected: {args.seeds!r}") from None
    if not seeds:
        raise DataError("--seeds", f"no seed given: {args.seeds!r} (e.g. --seeds 1,2,3)")
    cfg = load_config(SimEvalConfig, args.config) if args.config else SimEvalConfig()
    scenario = load_scenario(args.scenario or _default_scenario())
    results = []
    for seed in seeds:
        r = evaluate_seed(scenario, seed, cfg)
        results.append(r)
        for f in r.faults:
            how = f"by {'+'.join(f.detected_by)} after {f.ttd_s:.0f} s" if f.detected_by else "MISSED"
            print(f"seed {seed} {f.machine} {f.kind} [{f.start:%H:%M}-{f.end:%H:%M}Z]: {how}")
        print(f"seed {seed} false alarms per machine: {r.false_alarms}")
    print(json.dumps(summarise(results, cfg.shift_hours)))
    return 0


DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "examples" / "workshop.toml"
"""``eval sim``'s scenario without ``--scenario``: the source tree's example line (the one the
README's figures were measured on), found from the package, not from the working directory."""


def _default_scenario() -> Path:
    if not DEFAULT_SCENARIO.is_file():
        raise DataError("--scenario", f"the default scenario {DEFAULT_SCENARIO} is not there (it is part of "
                                      "the source tree, not of an installed package): give --scenario FILE")
    return DEFAULT_SCENARIO


def eval_skab(args: argparse.Namespace) -> int:
    from analytics.skab import SkabConfig, alternatives, evaluate, load_skab, preregistered, render

    if not args.data:
        raise DataError("--data", "eval skab needs --data DIR (e.g. ../shared/datasets/skab)")
    files = load_skab(args.data)
    mine = [load_config(SkabConfig, args.config)] if args.config else preregistered()
    configs = [*mine, *(alternatives() if args.all else [])]
    results = [evaluate(files, c) for c in configs]
    rows = sum(len(f.ts) for f in files)
    print(f"SKAB: {len(files)} files, {rows} rows; fit on the first 400 rows of each\n")
    print(render(results, judged=len(mine)))
    if args.json:
        for r in results:
            o = r.outliers
            print(json.dumps({"name": r.name, "f1": round(o.f1, 4), "far": round(o.far, 2),
                              "mar": round(o.mar, 2),
                              "nab": {k: round(v, 2) for k, v in r.nab.items()}}))
    return 0


def score(args: argparse.Namespace) -> int:
    from analytics.scoring.csv_output import output_to
    from analytics.scoring.csv_scorer import check_options, column_names, score_csv

    columns, exclude = column_names(args.columns, "--columns"), column_names(args.exclude, "--exclude")
    sep = "\t" if args.sep in ("\\t", "tab") else args.sep
    check_options(sep=sep, warmup=args.warmup, decimal=args.decimal, max_gap=args.max_gap,
                  time_format=args.time_format, no_time=args.no_time, encoding=args.encoding)
    spec = _spec(args.config)
    if not args.file.exists():
        raise DataError(str(args.file), "no such file")
    with _terminated_as_exit(), output_to(args.out, args.file) as out:
        summary = score_csv(args.file, out, sep=sep, time_col=args.time_col, columns=columns,
                            exclude=exclude, warmup=args.warmup, max_gap=args.max_gap, spec=spec,
                            no_time=args.no_time, decimal=args.decimal, time_format=args.time_format,
                            encoding=args.encoding)
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 0


@contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM (``kill``, a timeout, ``docker stop``) as ``SystemExit(143)`` (the status of a
    command killed by it, no traceback) while the block runs, so that its context managers clean
    up: the sort's temporary directory, the output's temporary file. A second SIGTERM during that
    clean-up is ignored. The previous handler is restored after; outside the main thread (where
    no handler can be set) nothing changes."""
    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _when(text: str, flag: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise DataError(flag, str(exc)) from None


def train(args: argparse.Namespace) -> int:
    from analytics.scoring.context import ENERGY
    from analytics.training import energy_signals, machine_scope, suspect, train_from_store

    machine_scope(args.scope, "--scope")
    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    if end <= start:
        raise DataError("--to", "must be after --from")
    signals = [s.strip() for s in args.signals.split(",") if s.strip()] if args.signals else None
    if args.model == ENERGY:
        energy_signals(signals, args.power_signal, "--signals")
    elif args.signals is not None and not signals:
        raise DataError("--signals", f"no signal named: {args.signals!r} (omit --signals for every signal)")
    spec = load_config(ModelSpec, args.config) if args.config else None  # None: the model's preset
    registry = ModelRegistry(args.registry)
    meta = asyncio.run(train_from_store(args.scope, start, end, registry=registry,
                                        spec=spec, duckdb=args.duckdb, ingest_config=args.ingest_config,
                                        signals=signals, model=args.model, power=args.power_signal,
                                        where="--scope", promote=args.promote))
    print(f"trained {meta.scope} {meta.version}: {meta.training.rows} rows, "
          f"features {', '.join(meta.columns)}; "
          f"validation {validation_text(meta.validation)}")
    if suspect(meta.validation):
        _suspect_warning(meta.validation)
    active = registry.active(meta.scope)
    if active == meta.version:
        print(f"{meta.scope}: {meta.version} is active")
    else:
        why = ("it fails its validation (above); " if suspect(meta.validation) else "") + (
            f"{active} stays active" if active else "the scope has no active model")
        print(f"{meta.scope}: {meta.version} is saved, not active: {why}; to use it: zhizao analytics "
              f"models promote {meta.scope} {int(meta.version[1:])}" + _registry_option(args.registry))
    hours = (end - start).total_seconds() / 3600
    if hours < VALIDATED_REFERENCE_H:
        print(f"warning: trained on {hours:g} h of history; the shipped models were validated on "
              f"{VALIDATED_REFERENCE_H:g}-h references (on the simulated line one hour gave about 2 false "
              "alarms per machine per shift, a day none: zhizao/stack/README.md)", file=sys.stderr)
    return 0


def _suspect_warning(validation: dict[str, float]) -> None:
    from analytics.training import HIGH_HELDOUT_FLAG_RATE

    rate = validation["heldout_flag_rate"]
    print(f"warning: the model flags {rate:.0%} of its own held-out history (the last 20 % of the "
          f"rows, taken as healthy; above {HIGH_HELDOUT_FLAG_RATE:.0%} is suspect): the history is "
          "probably not one regime (drift, another product or operating point, a fault); it would "
          "alarm on normal running. Check the window before promoting it", file=sys.stderr)


def _registry_option(registry: str) -> str:
    from analytics.cli import DEFAULT_REGISTRY

    return "" if registry == DEFAULT_REGISTRY else f" --registry {registry}"


def validation_text(validation: dict[str, float]) -> str:
    """``heldout_rows = 806, heldout_flag_rate = 0.0124``: counts as integers, rates to 3 figures."""
    def one(k: str, v: float) -> str:
        if k.endswith("rows") and float(v).is_integer():
            return f"{k} = {int(v)}"
        return f"{k} = {v:.3g}"
    return ", ".join(one(k, v) for k, v in validation.items()) or "none"


def _version(text: str) -> str:
    """``2``, ``v2`` or ``v0002`` as the registry's ``v0002``."""
    digits = text[1:] if text[:1] in ("v", "V") else text
    return f"v{int(digits):04d}" if digits.isdigit() else text


def _known_scope(reg: ModelRegistry, scope: str | None, action: str) -> str:
    scopes = reg.scopes()
    listed = ", ".join(scopes) if scopes else "none (the registry is empty)"
    if not scope:
        raise UsageError("SCOPE", f"`models {action}` needs a scope; known scopes: {listed}")
    if scope not in scopes:
        raise UnknownScope("SCOPE", f"no models for {scope!r} in {reg.root}; known scopes: {listed}")
    return scope


def models(args: argparse.Namespace) -> int:
    reg = ModelRegistry(args.registry)
    if args.action == "list":
        # a scope the registry has no model of is refused like by show/promote/rollback (and like
        # an unknown KPI scope): exit 2, naming the scopes that have models
        scopes = [_known_scope(reg, args.scope, "list")] if args.scope else reg.scopes()
        if not scopes:
            print(f"no models in {reg.root}")
        for scope in scopes:
            _list_scope(reg, scope)
        return 0
    scope = _known_scope(reg, args.scope, args.action)
    version = _version(args.version) if args.version else None
    if version is not None and version not in reg.versions(scope):
        raise UsageError("VERSION", f"{scope!r} has no version {args.version!r}; "
                                    f"versions: {', '.join(reg.versions(scope))}")
    if args.action == "show":
        version = reg.resolve(scope, version)
        print(reg.metadata(scope, version).model_dump_json(indent=2))
        try:
            reg.verify(scope, version)
        except UnusableModel as exc:
            print(f"warning: this installation refuses to load it: {exc.reason}", file=sys.stderr)
        return 0
    if args.action == "promote" and version is None:
        raise UsageError("VERSION", f"`models promote` needs a version; {scope!r} has "
                                    f"{', '.join(reg.versions(scope))}")
    before = reg.active(scope)
    try:
        if args.action == "promote":
            assert version is not None
            meta = reg.promote(scope, version)
            done = f"{version} is active"
        else:
            meta = reg.metadata(scope, reg.rollback(scope))
            done = f"rolled back, {meta.version} is active"
    except UnusableModel as exc:
        raise ModelMismatch(f"{exc}; not {'promoted' if args.action == 'promote' else 'rolled back'}: "
                            f"{before or 'no version'} stays active") from None
    print(f"{scope}: {done}")
    from analytics.training import suspect

    if suspect(meta.validation):
        _suspect_warning(meta.validation)
    return 0


def _list_scope(reg: ModelRegistry, scope: str) -> None:
    """One line per version of ``scope`` (``*`` marks the active one); a version this installation
    refuses (unreadable metadata, another scope's, other libraries, a corrupted artifact) says why."""
    try:
        active = reg.active(scope)
    except RegistryError as exc:
        print(f"! {scope}: {exc}")
        active = None
    for v in reg.versions(scope):
        mark = "*" if v == active else " "
        try:
            m = reg.verify(scope, v)
        except (UnusableModel, UnreadableMetadata) as exc:
            print(f"{mark} {scope} {v} refused: {exc.reason}")
            continue
        print(f"{mark} {scope} {v} {m.detector} rows={m.training.rows} "
              f"created={m.created:%Y-%m-%dT%H:%M:%SZ}")


def serve(args: argparse.Namespace) -> int:
    """The scoring service (:mod:`analytics.scoring.service`) until SIGTERM/SIGINT."""
    import logging

    from analytics.scoring.service import load_service_config
    from analytics.scoring.service.runner import serve as run_service

    cfg = load_service_config(args.config)
    if cfg.ingest is not None and cfg.ingest.token_file and not cfg.ingest.token:
        token_file = cfg.ingest.token_file  # read here, as the service will: --check passed a missing one
        try:
            empty = not Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problem = ("ingest.token_file", f"cannot read {token_file}: {why}")
            raise ConfigError(args.config, [problem]) from None
        if empty:
            raise ConfigError(args.config, [("ingest.token_file", f"{token_file} is empty: write the scoring "
                                             "service's ingest token (read and write) into it")])
    if args.check:
        print(f"{args.config}: ok ({len(cfg.scopes)} scope(s), registry {cfg.registry})")
        sys.stdout.flush()  # the OK line first, also when both streams go to one log
        for warning in cfg.plaintext_warnings():  # logged again at start
            print(f"WARNING {warning}", file=sys.stderr)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_service(cfg))
    return 0
