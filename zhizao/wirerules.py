"""The wire format's sample rules over whole columns: one definition for every fast path.

The reference decoder (:mod:`zhizao.wire`) checks a batch sample by sample and says why it
refuses one. The fast paths (the gateway's :mod:`gateway.wirecheck`, ingest's
:mod:`ingest.decode`) only want to know whether the reference would refuse *anything*, and ask
it over whole columns — the values of a batch (all of one type, or any mix), its distinct
timestamps, assets, signals, units and qualities — with C-level passes (``sum``, ``min``/``max``,
``map``, set operations) and no Python branch per sample beyond picking a mixed column's values
by type. This module is where they ask; it converts nothing (ingest converts values into its
columns by type after asking).

**Contract.** Every predicate here returns ``False`` exactly when the reference decoder would
refuse at least one of the items it is given, in the field it is named after, and ``True``
otherwise; given what it states it needs, none raises. (What the reference refuses:
:func:`zhizao.model.check_value` for values, :func:`zhizao.wire.parse_ts` for timestamps,
:meth:`zhizao.model.AssetPath.parse`, :func:`zhizao.model.valid_signal`,
:data:`zhizao.model.MAX_UNIT` and :data:`zhizao.model.QUALITY_NAMES` for the fields of a series.)
``tests/zhizao/test_wirerules.py`` checks the agreement on the edge cases, against the reference.

A predicate that is ``False`` says nothing about *which* item is refused nor why: a fast path
then hands the document to the reference decoder, whose rejections and messages are the ones
that count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence, Set
from typing import Any, Final

from zhizao.model import INT_MAX, INT_MIN, MAX_STR_VALUE, MAX_UNIT, QUALITY_NAMES, AssetPath, valid_signal
from zhizao.wire import parse_ts

VALUE_TYPES: Final[frozenset[type]] = frozenset({float, int, bool, str})
"""The Python types a decoded JSON value may have to be a sample's value (exactly these types:
JSON readers give no subclasses)."""
_RULED: Final[frozenset[type]] = frozenset({float, int, str})
"""The value types with a rule beyond their type (a boolean is always accepted)."""
_RULED_BUT_FLOAT: Final[frozenset[type]] = frozenset({int, str})


def uniform_values_ok(values: Sequence[Any], kind: type) -> bool:
    """True unless the reference refuses one of ``values``, all of which are of type ``kind``
    (``type(v) is kind`` for every ``v``: the caller knows it, from the set of their types or
    because it picked them by type). At most two C-level passes, none for booleans: a float
    must be finite, an integer in ``[INT_MIN, INT_MAX)``, a string at most ``MAX_STR_VALUE``
    characters long."""
    if kind is float:
        # a sum is finite when every term is (NaN and infinities propagate); only an overflow of
        # finite terms makes it infinite too, and then each is looked at
        return math.isfinite(sum(values)) or all(map(math.isfinite, values))
    if kind is int:
        return min(values, default=0) >= INT_MIN and max(values, default=0) < INT_MAX
    if kind is str:
        return max(map(len, values), default=0) <= MAX_STR_VALUE
    return kind is bool or not values


def values_ok(values: Sequence[Any], *, finite_floats: bool = False) -> bool:
    """True unless the reference refuses one of ``values``, of any mix of types: each must be a
    finite float, an integer in ``[INT_MIN, INT_MAX)``, a boolean, or a string of at most
    ``MAX_STR_VALUE`` characters. One C-level pass for their types, then, per type present with a
    rule, one Python-level pass picking its values and :func:`uniform_values_ok` over them.

    ``finite_floats``: the caller knows every float is finite — the values were read by orjson
    or msgspec, which never give NaN or an infinity (they refuse a number too large for a
    double, as the reference, reading with orjson, does) — so floats are not looked at."""
    kinds = set(map(type, values))
    if not kinds <= VALUE_TYPES:
        return False
    ruled = kinds & (_RULED_BUT_FLOAT if finite_floats else _RULED)
    if len(kinds) == 1:
        return not ruled or uniform_values_ok(values, next(iter(kinds)))
    return all(uniform_values_ok([v for v in values if type(v) is kind], kind) for kind in ruled)


def stamps_ok(stamps: Iterable[Any]) -> bool:
    """True unless the reference refuses one of ``stamps`` (RFC 3339 strings with an offset, in
    the years 1-9999 in UTC). One parse per item: pass the distinct timestamps."""
    for text in stamps:
        if type(text) is not str:
            return False
        try:
            parse_ts(text)
        except ValueError:
            return False
    return True


class KindCache:
    """The rules of a series' fields — asset path, signal name, unit, quality — with (bounded)
    caches of the asset paths and signal names already found valid, so a fast path parses each
    only the first time it sees it.

    A cache that has grown past ``cache_size`` is emptied at the start of the next
    :meth:`accepts`."""

    __slots__ = ("_assets", "_cache_size", "_signals")

    def __init__(self, cache_size: int = 100_000) -> None:
        self._assets: set[str] = set()
        self._signals: set[str] = set()
        self._cache_size = cache_size

    def accepts(self, assets: Set[Any], signals: Set[Any], units: Iterable[Any],
                qualities: Iterable[Any]) -> bool:
        """True unless the reference refuses one of ``assets`` (distinct asset paths: each
        parses as an :class:`~zhizao.model.AssetPath`), ``signals`` (distinct signal names:
        :func:`~zhizao.model.valid_signal`), ``units`` (distinct units: each ``None`` or a string
        of at most ``MAX_UNIT`` characters) or ``qualities`` (hashable, typically a set or a list
        of strings: each one of :data:`~zhizao.model.QUALITY_NAMES`, checked in one C-level pass)."""
        if len(self._assets) > self._cache_size:
            self._assets.clear()
        if len(self._signals) > self._cache_size:
            self._signals.clear()
        if not QUALITY_NAMES.issuperset(qualities):
            return False
        for unit in units:
            if unit is not None and (type(unit) is not str or len(unit) > MAX_UNIT):
                return False
        for asset in assets - self._assets:
            if type(asset) is not str:
                return False
            try:
                AssetPath.parse(asset)
            except ValueError:
                return False
            self._assets.add(asset)
        for signal in signals - self._signals:
            if type(signal) is not str or not valid_signal(signal):
                return False
            self._signals.add(signal)
        return True
