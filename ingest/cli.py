"""``zhizao ingest``: run the service, or manage its tokens.

    zhizao ingest [serve] [--host H] [--port P] [--config FILE]
    zhizao ingest token create --name agent-7 [--scope write] [--scope read]
                               [--producer P ... | --forwarder] [--config FILE]
    zhizao ingest token list [--config FILE]
    zhizao ingest token revoke TOKEN_ID [--config FILE]

``--config`` may come before or after the sub-command (``zhizao ingest --config F token list``).
The tokens file is ``auth.tokens_file``; a relative path is taken against the working directory,
by ``serve`` and ``token`` alike (as every path in a zhizao config, see ``zhizao.config``).

A write token may write batches only as the producers it is bound to: by default the producer of
its own name (an agent's token is named after its ``agent.id``); ``--producer P`` (repeatable)
binds it to P instead; ``--forwarder`` lets it write as any producer (a site gateway's token).
``token list`` shows the binding in its last column. Events are posted as producers too: a
token may post events of a ``source`` when it may write as one of that source's producers
(``auth.event_producers``; ``ingest/eventbinding.py``).

Exit codes: 0 ok, 1 failure (``token list``/``token revoke`` without a tokens file, unknown token
id), 2 usage or configuration error (``token create`` with an empty name or the name of an active
token, ``--producer``/``--forwarder`` without the write scope or together, a ``--producer`` that is
not a producer id).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from ingest.auth import Scope, TokenFile
from ingest.settings import Settings, load_settings
from zhizao.errors import ConfigError
from zhizao.liblogs import quiet_libraries
from zhizao.model import valid_id


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zhizao ingest", description="zhizao ingest service and token admin")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the API (default)")
    p.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default from config: 8080)")
    p.add_argument("--config", type=Path, help="TOML/YAML config (see ingest/sample.toml)")
    # The sub-commands accept the same options after their name. Their defaults are SUPPRESS so an
    # option not given after the sub-command keeps the value given before it (argparse would
    # otherwise overwrite ``zhizao ingest --config F token list``'s --config with None).
    serve.add_argument("--host", default=argparse.SUPPRESS, help="listen address")
    serve.add_argument("--port", type=int, default=argparse.SUPPRESS, help="listen port")
    serve.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML/YAML config")
    token = sub.add_parser("token", help="create, list or revoke bearer tokens")
    tsub = token.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="issue a token (printed once; only its hash is kept)")
    create.add_argument("--name", required=True, help="the producer/user the token is for")
    create.add_argument("--scope", action="append", choices=[s.value for s in Scope],
                        help="repeatable; default write")
    create.add_argument("--producer", action="append", default=[], metavar="P",
                        help="repeatable: the producers this write token may write batches as "
                             "(default: the producer named --name), and post events as "
                             "(auth.event_producers: zhizao-scoring anomaly, zhizao-kpi kpi events)")
    create.add_argument("--forwarder", action="store_true",
                        help="may write batches as any producer (a site gateway's token, which forwards "
                             "other agents' batches)")
    tsub.add_parser("list", help="list tokens (id, name, scopes, created, state, the producers it "
                                 "may write batches as)")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    for t in (create, tsub.choices["list"], revoke):
        t.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                       help="config naming auth.tokens_file (may also come before `token`)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "token":
        return _token(args, settings)
    return _serve(args, settings)


def _token(args: argparse.Namespace, settings: Settings) -> int:
    tokens = TokenFile(Path(settings.auth.tokens_file))
    try:
        if args.action == "create":
            scopes = [Scope(s) for s in (args.scope or ["write"])]
            try:
                token, record = tokens.create(args.name, scopes, producers=args.producer,
                                              forwarder=args.forwarder)
            except ValueError as exc:
                print(f"zhizao ingest token create: {exc}", file=sys.stderr)
                return 2
            print(token)
            print(f"# id {record.id}, name {record.name}, scopes {','.join(record.scopes)}, writes as: "
                  f"{record.binding()}; stored hashed in {tokens.path} — copy it now, it is not shown "
                  "again", file=sys.stderr)
            if record.writes and not record.forwarder and not any(map(valid_id, record.producers or [])):
                print(f"# note: {record.name!r} is not a producer id, so this token can write no batch "
                      "(line protocol and events only); give --producer P to bind it", file=sys.stderr)
        elif args.action == "list":
            if not tokens.path.exists():
                print(f"zhizao ingest: no tokens file {tokens.path} (create a token first, or check "
                      "auth.tokens_file and --config)", file=sys.stderr)
                return 1
            records = tokens.records()
            if not records:
                print(f"# no tokens in {tokens.path}", file=sys.stderr)
            for r in records:
                state = f"revoked {r.revoked}" if r.revoked else "active"
                print(f"{r.id}\t{r.name}\t{','.join(r.scopes)}\t{r.created}\t{state}\t{r.binding()}")
        else:
            try:
                r = tokens.revoke(args.token_id)
            except KeyError:
                where = tokens.path if tokens.path.exists() else f"{tokens.path} (the file does not exist)"
                print(f"zhizao ingest: no token with id {args.token_id!r} in {where}", file=sys.stderr)
                return 1
            print(f"revoked {r.id} ({r.name})")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from ingest.app import create_app
    from ingest.extensions import configured_routers

    if args.host:
        settings.host = args.host
    if args.port is not None:
        settings.port = args.port
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()  # httpx logs every InfluxDB request line at INFO: one line per batch
    tls = settings.tls
    if (tls.cert is None) != (tls.key is None):
        print("zhizao ingest: tls.cert and tls.key must be given together", file=sys.stderr)
        return 2
    try:
        app = create_app(settings, routers=configured_routers(settings))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    tune_gc()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                ssl_certfile=tls.cert, ssl_keyfile=tls.key, access_log=False)
    return 0


GC_THRESHOLD = (10_000, 10, 10)
"""The serving process's collection thresholds (Python's default: 700, 10, 10)."""


def tune_gc() -> None:
    """Garbage collection for the ``serve`` process (``zhizao ingest``, ``python -m ingest``; an app
    run otherwise keeps Python's settings), called once everything is imported: what exists now
    (modules, the app) is frozen out of every collection, and the youngest generation is collected
    after 10,000 net allocations instead of 700. A bulk request's decoded batches are a few
    thousand live containers (column lists of ~100 values each) until the store commits them: at
    700 they triggered ~100 young, 9 middle and one full collection per 290,000 samples of the
    gateway benchmark's bulk requests, 0.12-0.14 s of ingest's 1.1 s of CPU (measured with
    ``gc.callbacks``); at 10,000, 2-4 young ones, 0.005-0.02 s. Only when cycles are collected
    changes, never what is collected: nothing on the write path relies on it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
