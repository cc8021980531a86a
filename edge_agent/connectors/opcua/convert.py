"""OPC UA DataValue → :class:`~zhizao.model.Sample`: source timestamp, StatusCode → quality.

Quality follows the StatusCode severity bits: Good → ``good``, Uncertain → ``uncertain``,
Bad → ``bad``. A Bad value without a usable value (OPC UA sends null) repeats the last good
value with quality ``bad`` so the gap is visible; with no earlier value it yields nothing
(a :class:`~zhizao.model.Sample` always carries a value): counted as ``no_value`` and reported
(the connector logs one WARNING per node naming the status).

Supported values: Boolean, the integer types (UInt64 beyond the signed 64-bit range as a float),
Float/Double (NaN and infinity: no value), String (cut at ``MAX_STR_VALUE``; an empty one is the
value ``""``), DateTime (ISO 8601 text), LocalizedText (its text; one without text — null — is no
value, like a null Variant), enumerations (their integer). Arrays, structures
(ExtensionObjects), ByteStrings, Guids, NodeIds and the like have no zhizao form: skipped,
counted as ``unsupported_type`` and reported (one WARNING per node naming its type).

The timestamp (``timestamp`` option): ``source`` — the SourceTimestamp, else the
ServerTimestamp, else the time of receipt; ``server`` — the ServerTimestamp, else receipt;
``receive`` — the time of receipt. Whatever the choice, a repeat is recognised by the source
timestamp (below), and a node's samples are stamped strictly increasing.

Same source timestamp (servers with coarse clocks, or a status change that keeps the timestamp):
only an **exact repeat** — the same source timestamp, value and quality as the last sample
collected for the tag, e.g. the initial notification after a re-subscribe — is skipped (counted
as ``repeat``). A changed value or quality with the same source timestamp is collected, stamped
**1 µs after the tag's previous sample** (the next one 1 µs later again): the stores key a point
by series and time, and InfluxDB keeps only the last write of a series at one time, so two
samples at the same time would silently become one there. The nudge keeps both, in the order
the server reported them; their source timestamp is the one the mark keeps (below).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from zhizao.model import MAX_STR_VALUE, AssetPath, Quality, Sample, Value


def quality_of(status: Any) -> Quality:
    """Quality of a ``ua.StatusCode`` (``None`` = Good)."""
    if status is None:
        return Quality.GOOD
    severity = (int(status.value) >> 30) & 0x3
    return Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD


def plain_value(value: Any) -> Value | None:
    """A zhizao value for an OPC UA scalar, or ``None`` when it has no zhizao form (arrays, null)."""
    if isinstance(value, bool | int | str):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return float(value)
        return value[:MAX_STR_VALUE] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    text = getattr(value, "Text", None)  # LocalizedText
    if isinstance(text, str):
        return text[:MAX_STR_VALUE]
    return None


def _empty(raw: Any) -> bool:
    """``raw`` is of a supported type but holds no value (:func:`plain_value` gives ``None``): a NaN
    or infinite float, a LocalizedText whose text is null. Handled as no value, not as
    ``unsupported_type``."""
    return isinstance(raw, float) or getattr(raw, "Text", "") is None


def type_name(variant: Any) -> str:
    """The OPC UA type of a Variant, as a reader would name it: ``Double[3]``,
    ``ExtensionObject(Range)``, ``ByteString``."""
    value = variant.Value
    vtype = getattr(getattr(variant, "VariantType", None), "name", None) or type(value).__name__
    if isinstance(value, list):
        return f"{vtype}[{len(value)}]"
    if vtype == "ExtensionObject":
        return f"ExtensionObject({type(value).__name__})"
    return str(vtype)


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


_NUDGE = timedelta(microseconds=1)


def _identity(value: Value, quality: Quality) -> str:
    """A short, stable text naming a sample's value and quality (kept in the tag's mark)."""
    text = f"{type(value).__name__}:{value!r}".encode()
    return f"{quality.value}:{hashlib.blake2b(text, digest_size=8).hexdigest()}"


def _parse_mark(text: str | None) -> tuple[datetime | None, datetime | None, str | None]:
    """``(source ts, emitted ts, identity)`` of a tag's committed mark (see :meth:`Converter.mark`);
    a mark of an older agent holds only the source timestamp (identity unknown)."""
    if not text:
        return None, None, None
    src_text, _, rest = text.partition("|")
    try:
        src = _utc(datetime.fromisoformat(src_text))
    except ValueError:
        return None, None, None
    if not rest:
        return src, src, None
    nudge, _, ident = rest.partition("|")
    try:
        out = src + timedelta(microseconds=int(nudge)) if src is not None else None
    except ValueError:
        return src, src, None
    return src, out, ident or None


class Converter:
    """Converts DataValues of one connector's tags; remembers each tag's last value and what it
    collected last (source timestamp, the timestamp it gave the sample, value and quality).

    A value with the same source timestamp, value and quality as the last one collected for its
    tag is a repeat (the initial notification after a re-subscribe re-sends the current value) and
    is skipped, so a reconnect never produces a duplicate; a changed value or quality with the same
    source timestamp is collected 1 µs after the previous sample (see the module docstring); a clock
    going backwards is data, not a repeat. The state is seeded from ``marks``, the texts of
    :meth:`mark` committed with the samples in the buffer (a mark of an older agent, a bare
    timestamp, makes a value with that source timestamp a repeat whatever its value).
    ``skipped`` counts what is not collected, by reason (``repeat``, ``no_value``,
    ``unsupported_type``): the connector's
    :attr:`~edge_agent.connectors.base.ConnectorStats.skipped`, exported as metrics; ``report``
    is called with the tag index, the reason (``no_value``, ``unsupported_type``) and the status
    or type name for each value not collected for a reason other than ``repeat``. ``timestamp``:
    see the module docstring.
    """

    def __init__(
        self,
        assets: list[AssetPath],
        signals: list[str],
        units: list[str | None],
        marks: list[str | None] | None = None,
        skipped: dict[str, int] | None = None,
        *,
        timestamp: str = "source",
        report: Callable[[int, str, str], None] | None = None,
    ) -> None:
        self.assets = assets
        self.signals = signals
        self.units = units
        n = len(assets)
        self.last: list[Value | None] = [None] * n
        parsed = [_parse_mark(m) for m in marks] if marks is not None else [(None, None, None)] * n
        self.last_ts: list[datetime | None] = [p[0] for p in parsed]
        """Source timestamp of the last sample collected, per tag."""
        self.last_out: list[datetime | None] = [p[1] for p in parsed]
        """Timestamp given to that sample (the source one, or nudged after it)."""
        self.last_ident: list[str | None] = [p[2] for p in parsed]
        """Its value and quality (:func:`_identity`); None when unknown (an older agent's mark)."""
        self.skipped = skipped if skipped is not None else {}
        for reason in ("repeat", "no_value", "unsupported_type"):
            self.skipped.setdefault(reason, 0)
        self.timestamp = timestamp
        self.report = report

    @property
    def repeats(self) -> int:
        """Exact repeats skipped (see the class docstring)."""
        return self.skipped["repeat"]

    def mark(self, index: int) -> str:
        """The text to commit with tag ``index``'s latest sample (``<source ts>|<nudge µs>|<value
        and quality>``): what a restarted agent needs to recognise a repeat of it."""
        src, out, ident = self.last_ts[index], self.last_out[index], self.last_ident[index]
        assert src is not None and out is not None
        nudge = (out - src) // _NUDGE
        return f"{src.isoformat()}|{nudge}|{ident or ''}"

    def sample(self, index: int, dv: Any) -> Sample | None:
        """The sample of tag ``index`` for DataValue ``dv``, or ``None`` (counted in ``skipped``)."""
        quality = quality_of(dv.StatusCode)
        variant = dv.Value
        raw = variant.Value if variant is not None else None
        value = plain_value(raw) if raw is not None else None
        if value is None and raw is not None and not _empty(raw):
            self.skipped["unsupported_type"] += 1
            if self.report is not None:
                self.report(index, "unsupported_type", type_name(variant))
            return None
        if value is None:
            value = self.last[index]
            if value is None:
                self.skipped["no_value"] += 1
                if self.report is not None:
                    self.report(index, "no_value", str(getattr(dv.StatusCode, "name", None) or "Good"))
                return None
            quality = Quality.BAD
        elif quality is not Quality.BAD:
            self.last[index] = value
        now = datetime.now(UTC)
        src = _utc(dv.SourceTimestamp) or _utc(dv.ServerTimestamp) or now
        ident = _identity(value, quality)
        prev, out = self.last_ts[index], self.last_out[index]
        if prev is not None and src == prev and self.last_ident[index] in (None, ident):
            self.skipped["repeat"] += 1  # an exact repeat (or unknown: an old mark)
            return None
        if self.timestamp != "source":
            chosen = (_utc(dv.ServerTimestamp) if self.timestamp == "server" else None) or now
            ts = out + _NUDGE if out is not None and chosen <= out else chosen
        elif prev is not None and src == prev:
            ts = (out or prev) + _NUDGE  # changed at the same source time: kept, just after
        elif prev is not None and out is not None and prev < src <= out:
            ts = out + _NUDGE  # a new source time within the nudged ones: after them, in order
        else:
            ts = src
        self.last_ts[index], self.last_out[index], self.last_ident[index] = src, ts, ident
        return Sample(self.assets[index], self.signals[index], ts, value, self.units[index], quality)
