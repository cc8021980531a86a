"""Bearer tokens: per-producer, stored hashed, with scopes ``write``, ``read``, ``admin``.

A token is ``zz_<id>_<secret>`` (random, shown once at creation); the tokens file keeps only
its SHA-256, so a leaked file does not leak tokens. The file is JSON, written atomically, and
re-read by the server whenever its modification time changes (checked per request), so
``zhizao ingest token revoke`` takes effect on a running server immediately, without a restart.
``admin`` implies ``read`` and ``write``.

A token that writes is **bound to the producers it may write batches as** (the ``producer`` of a
wire-format batch, on which ingest deduplicates and rate-limits): by default only the producer of
its own name; ``producers`` names others instead (``token create --producer P``, repeatable);
``forwarder`` (a site gateway's token, which forwards other agents' batches under their own
identity) may write as any producer. A record from before bindings (no ``producers`` key in the
file) is *unbound*: it keeps working as a forwarder, and ingest logs a warning for it at start.
Line-protocol writes carry no producer: their producer is the token's name (see ``ingest/README.md``).
Events carry no producer either: a token may post events of a ``source`` when it may write as one of
the producers configured for that source (``auth.event_producers``, see :mod:`ingest.eventbinding`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from zhizao.errors import ConfigError
from zhizao.model import valid_id


class Scope(StrEnum):
    WRITE = "write"
    READ = "read"
    ADMIN = "admin"


@dataclass(slots=True)
class TokenRecord:
    id: str
    name: str
    """Whom the token was issued to (agent, gateway, service); by default the one producer a write
    token may write batches as."""
    scopes: list[str]
    sha256: str
    created: str
    revoked: str | None = None
    producers: list[str] | None = None
    """The producers this token may write batches as; ``None`` in a record from before bindings
    (unbound: any producer, see :attr:`unbound`)."""
    forwarder: bool = False
    """May write batches as any producer (a site gateway's token)."""

    def allows(self, scope: Scope) -> bool:
        return self.revoked is None and (scope.value in self.scopes or Scope.ADMIN.value in self.scopes)

    @property
    def writes(self) -> bool:
        """Holds the write scope (``write`` or ``admin``)."""
        return Scope.WRITE.value in self.scopes or Scope.ADMIN.value in self.scopes

    @property
    def unbound(self) -> bool:
        """A write token from before bindings: writes as any producer until re-created bound."""
        return self.producers is None and not self.forwarder and self.writes

    def may_write_as(self, producer: str) -> bool:
        """Whether a batch of ``producer`` may be written with this token (scope checked apart)."""
        return self.forwarder or self.producers is None or producer in self.producers

    def may_write_as_any(self, producers: Iterable[str]) -> bool:
        """Whether this token may write as at least one of ``producers`` — always for a forwarder
        or an unbound token, even when ``producers`` is empty (scope checked apart)."""
        if self.forwarder or self.producers is None:
            return True
        return any(p in self.producers for p in producers)

    def binding(self) -> str:
        """The binding in words, for ``token list`` and error messages."""
        if not self.writes:
            return "-"
        if self.forwarder:
            return "forwarder (any producer)"
        if self.producers is None:
            return "unbound (from before bindings: any producer; re-create it bound)"
        return "producers " + ",".join(self.producers)


@dataclass(slots=True)
class TokenFile:
    """The tokens file at ``path`` (missing file = no tokens)."""

    path: Path
    _records: list[TokenRecord] = field(default_factory=list)
    _by_hash: dict[str, TokenRecord] = field(default_factory=dict)
    _mtime: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def records(self) -> list[TokenRecord]:
        self._reload(force=True)
        return list(self._records)

    def _reload(self, *, force: bool = False) -> None:
        """Re-read the file when its mtime changed (one ``stat`` per call)."""
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                self._records, self._by_hash, self._mtime = [], {}, None
                return
            if mtime == self._mtime:
                return
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                records = [TokenRecord(**r) for r in doc["tokens"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(str(self.path), [("tokens", f"unreadable tokens file: {exc}")]) from exc
            self._records = records
            self._by_hash = {r.sha256: r for r in records}
            self._mtime = mtime

    def unbound(self) -> list[TokenRecord]:
        """Active write tokens from before bindings (:attr:`TokenRecord.unbound`): they write as any
        producer; ingest warns about each at start."""
        return [r for r in self.records() if r.revoked is None and r.unbound]

    def lookup(self, token: str) -> TokenRecord | None:
        """The record of ``token`` (revoked ones included), or ``None`` if unknown."""
        self._reload()
        return self._by_hash.get(_hash(token))

    def create(self, name: str, scopes: list[Scope], *, producers: Sequence[str] = (),
               forwarder: bool = False) -> tuple[str, TokenRecord]:
        """Add a token; returns ``(token, record)`` — the token itself is never stored.

        A token with the write scope (``write`` or ``admin``) is bound: it may write batches as the
        ``producers`` given, or, when none is, as the producer ``name``; a ``forwarder`` as any.

        ``ValueError`` (nothing written) for a name that is empty, only blanks, has surrounding
        blanks or control characters (``token list`` prints tab-separated lines), or that an active
        (not revoked) token already has: a name says whom a token is for, so two live tokens of one
        name cannot be told apart when one must be revoked. A revoked token's name may be reused.
        Also for ``producers`` or ``forwarder`` on a token without the write scope, both at once,
        or a producer that is not a valid producer id.
        """
        if not name.strip():
            raise ValueError("--name must not be empty: it says whom the token is for (e.g. agent-7)")
        if name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError(f"--name {name!r} must not start or end with blanks nor contain control "
                             "characters (tabs, newlines)")
        values = sorted({s.value for s in scopes})
        writes = Scope.WRITE.value in values or Scope.ADMIN.value in values
        if (producers or forwarder) and not writes:
            raise ValueError("--producer and --forwarder bind what a token may write: they need "
                             "--scope write (or admin)")
        if producers and forwarder:
            raise ValueError("--forwarder already allows every producer: give it without --producer")
        bad = [p for p in producers if not valid_id(p)]
        if bad:
            raise ValueError(f"--producer {bad[0]!r} is not a producer id (1-128 letters, digits, "
                             "'_', '.', ':', '-', the first a letter or digit)")
        bound = list(dict.fromkeys(producers)) if producers else [name]
        self._reload(force=True)
        taken = [r for r in self._records if r.name == name and r.revoked is None]
        if taken:
            ids = ", ".join(r.id for r in taken)
            raise ValueError(f"an active token named {name!r} already exists in {self.path} (id {ids}); "
                             f"choose another name, or revoke it first (zhizao ingest token revoke "
                             f"{taken[0].id}) to issue a new one under this name")
        token_id = secrets.token_hex(4)
        token = f"zz_{token_id}_{secrets.token_urlsafe(32)}"
        record = TokenRecord(token_id, name, values, _hash(token),
                             datetime.now(UTC).isoformat(timespec="seconds"),
                             producers=[] if forwarder or not writes else bound, forwarder=forwarder)
        self._save([*self._records, record])
        return token, record

    def revoke(self, token_id: str) -> TokenRecord:
        """Mark token ``token_id`` revoked; ``KeyError`` if there is no such token."""
        self._reload(force=True)
        for r in self._records:
            if r.id == token_id:
                if r.revoked is None:
                    r.revoked = datetime.now(UTC).isoformat(timespec="seconds")
                self._save(self._records)
                return r
        raise KeyError(token_id)

    def _save(self, records: list[TokenRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"tokens": [asdict(r) for r in records]}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._mtime = None
        self._reload(force=True)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
