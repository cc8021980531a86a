"""``zhizao ingest``: run the service, or manage its tokens.

    zhizao ingest [serve] [--host H] [--port P] [--config FILE]
    zhizao ingest token create --name agent-7 [--scope write] [--scope read] [--config FILE]
    zhizao ingest token list [--config FILE]
    zhizao ingest token revoke TOKEN_ID [--config FILE]

Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ingest.auth import Scope, TokenFile
from ingest.settings import Settings, load_settings
from zhizao.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zhizao ingest", description="zhizao ingest service and token admin")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the API (default)")
    for target in (p, serve):
        target.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
        target.add_argument("--port", type=int, help="listen port (default from config: 8080)")
        target.add_argument("--config", type=Path, help="TOML/YAML config (see ingest/sample.toml)")
    token = sub.add_parser("token", help="create, list or revoke bearer tokens")
    tsub = token.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="issue a token (printed once; only its hash is kept)")
    create.add_argument("--name", required=True, help="the producer/user the token is for")
    create.add_argument("--scope", action="append", choices=[s.value for s in Scope],
                        help="repeatable; default write")
    tsub.add_parser("list", help="list tokens (ids, names, scopes, revoked)")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    for t in (create, tsub.choices["list"], revoke):
        t.add_argument("--config", type=Path, help="config naming auth.tokens_file")
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
            token, record = tokens.create(args.name, scopes)
            print(token)
            print(f"# id {record.id}, name {record.name}, scopes {','.join(record.scopes)}; "
                  f"stored hashed in {tokens.path} — copy it now, it is not shown again", file=sys.stderr)
        elif args.action == "list":
            for r in tokens.records():
                state = f"revoked {r.revoked}" if r.revoked else "active"
                print(f"{r.id}\t{r.name}\t{','.join(r.scopes)}\t{r.created}\t{state}")
        else:
            try:
                r = tokens.revoke(args.token_id)
            except KeyError:
                print(f"zhizao ingest: no token with id {args.token_id!r} in {tokens.path}", file=sys.stderr)
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
    tls = settings.tls
    if (tls.cert is None) != (tls.key is None):
        print("zhizao ingest: tls.cert and tls.key must be given together", file=sys.stderr)
        return 2
    try:
        app = create_app(settings, routers=configured_routers(settings))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                ssl_certfile=tls.cert, ssl_keyfile=tls.key, access_log=False)
    return 0
