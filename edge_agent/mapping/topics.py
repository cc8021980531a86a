"""MQTT topic patterns with named wildcards: ``acme/+line/+machine/telemetry``.

A level ``+name`` matches one topic level and captures it as ``name``; a bare ``+`` matches one
level without capturing; a final ``#`` (or ``#name``, capturing the rest joined by ``/``) matches
any number of levels. :attr:`TopicPattern.filter` is the MQTT subscription filter
(``acme/+/+/telemetry``).

Topics starting with ``$`` (``$SYS/…``, ``$aws/things/…``) are matched as a broker matches them
(MQTT 3.1.1 and MQTT 5 §4.7.2): a pattern or filter whose first level is a wildcard (``#``, ``+``,
``#rest``, ``+machine``) matches none of them; only one starting with the same ``$`` level does.

:func:`filters_overlap` and :func:`filter_covers` compare two subscription filters: a broker may
deliver a message once per matching subscription of a client, so a subscriber with overlapping
filters may get one message twice (MQTT 3.1.1 and MQTT 5 §3.3.4 allow it; Mosquitto does so with
MQTT 5).
"""

from __future__ import annotations

import re
from typing import Final

_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TopicPattern:
    """A compiled pattern; ``ValueError`` names what is wrong with an invalid one."""

    def __init__(self, pattern: str) -> None:
        if not pattern or (pattern.startswith("/") and pattern == "/"):
            raise ValueError("topic pattern must not be empty")
        self.pattern = pattern
        self._levels: list[tuple[str, str | None]] = []
        levels = pattern.split("/")
        filter_levels: list[str] = []
        for i, level in enumerate(levels):
            if level.startswith("#"):
                if i != len(levels) - 1:
                    raise ValueError(f"topic pattern {pattern!r}: '#' must be the last level")
                name = level[1:] or None
                kind = "#"
            elif level.startswith("+"):
                name = level[1:] or None
                kind = "+"
            else:
                if "+" in level or "#" in level:
                    raise ValueError(f"topic pattern {pattern!r}: wildcard inside level {level!r}")
                name, kind = level, "="
            if kind != "=" and name is not None and not _NAME_RE.fullmatch(name):
                raise ValueError(f"topic pattern {pattern!r}: wildcard name {name!r} is not an identifier")
            self._levels.append((kind, name))
            filter_levels.append(kind if kind != "=" else level)
        self.filter = "/".join(filter_levels)
        self.names = [n for k, n in self._levels if k != "=" and n]
        self.rest_name = next((n for k, n in self._levels if k == "#" and n), None)
        """The name of a final ``#name`` capture (it may hold several levels), if any."""

    def match(self, topic: str) -> dict[str, str] | None:
        """The captures of ``topic`` if it matches, else ``None`` (a pattern starting with a wildcard
        matches no topic starting with ``$``, as in MQTT)."""
        if topic.startswith("$") and self._levels[0][0] != "=":
            return None
        parts = topic.split("/")
        out: dict[str, str] = {}
        for i, (kind, name) in enumerate(self._levels):
            if kind == "#":
                if name:
                    out[name] = "/".join(parts[i:])
                return out
            if i >= len(parts):
                return None
            if kind == "=":
                if parts[i] != name:
                    return None
            elif name:
                out[name] = parts[i]
        return out if len(parts) == len(self._levels) else None

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"


def _levels(flt: str) -> list[str]:
    return flt.split("/")


def _wild_first(levels: list[str]) -> bool:
    """The filter starts with a wildcard: it matches no topic starting with ``$`` (MQTT §4.7.2)."""
    return levels[0] in {"#", "+"}


def _dollar(levels: list[str]) -> bool:
    """The filter matches only topics starting with ``$`` (its first level is ``$…``)."""
    return levels[0].startswith("$")


def filters_overlap(a: str, b: str) -> bool:
    """True when some topic matches both MQTT filters ``a`` and ``b`` (``x/#`` also matches ``x``;
    ``#`` and ``$SYS/#`` do not overlap: a filter starting with a wildcard matches no ``$`` topic)."""
    la, lb = _levels(a), _levels(b)
    if (_wild_first(la) and _dollar(lb)) or (_wild_first(lb) and _dollar(la)):
        return False
    for i in range(max(len(la), len(lb))):
        pa = la[i] if i < len(la) else None
        pb = lb[i] if i < len(lb) else None
        if pa == "#" or pb == "#":
            return True
        if pa is None or pb is None:
            return False
        if "+" not in (pa, pb) and pa != pb:
            return False
    return True


def filter_covers(a: str, b: str) -> bool:
    """True when every topic matching filter ``b`` also matches filter ``a`` (``#`` does not cover
    ``$SYS/#``: a filter starting with a wildcard matches no ``$`` topic)."""
    la, lb = _levels(a), _levels(b)
    if _wild_first(la) and _dollar(lb):
        return False
    for i, pa in enumerate(la):
        if pa == "#":
            return True
        if i >= len(lb):
            return False
        pb = lb[i]
        if pb == "#" or (pa != "+" and (pb == "+" or pa != pb)):
            return False
    return len(lb) == len(la)
