"""Which OPC UA nodes to read: NodeId lists and browse-path patterns, resolved and cached.

:func:`resolve_tags` turns the config into :class:`Tag` s (node, asset, signal, unit) for one
session. Browse patterns are walked level by level from ``Objects`` with one Browse request per
level (nodes batched), so thousands of nodes cost a handful of round trips; units come from each
variable's ``EngineeringUnits`` property (one TranslateBrowsePaths and one Read for all).

Namespace indices are a session's business: a server may order its namespaces differently after
a restart. So the result of a discovery is kept **namespace-independently** — a node of namespace
``N > 0`` as ``nsu=<URI>;...`` — in a JSON cache file (``<state_dir>/<name>-browse.json``) and
every session resolves it (and every ``nsu=`` id of the config) against its own NamespaceArray.
The cache is reused across reconnects and restarts for ``browse_cache_ttl_s``, unless the server
restarted meanwhile (its ``ServerStatus/StartTime`` differs from the one cached) or a cached node
is unknown to the server (checked with one Read per connect): then the server is browsed again.
A node that cannot be read at all — a namespace URI the server does not have, a browse match
whose name is not a valid asset or signal name — is rejected alone (one WARNING, counted), the
others are read.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asyncua.client.client import Client

from edge_agent.connectors.opcua.config import BrowseSpec, NodeSpec, OpcUaConnectorConfig, names_from_id
from zhizao.model import AssetPath, valid_signal

ua: Any = importlib.import_module("asyncua.ua")
log = logging.getLogger(__name__)
_CHUNK = 500
_CACHE_VERSION = 2
_UNKNOWN = {"BadNodeIdUnknown", "BadNodeIdInvalid"}


@dataclass(frozen=True, slots=True)
class Tag:
    """One variable to read and where its values go."""

    node_id: str
    """The NodeId in this session's namespace indices (``ns=N;...``)."""
    asset: str
    signal: str
    unit: str | None = None
    ref: str = ""
    """The node's namespace-independent id (``nsu=<URI>;...``, or the id as configured): what
    its mark is kept under across sessions. Empty: ``node_id``."""

    @property
    def stable(self) -> str:
        return self.ref or self.node_id


@dataclass(slots=True)
class Resolved:
    """The tags of one session and the nodes rejected (``(node, reason)``)."""

    tags: list[Tag]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    browsed: bool = True
    """False when the tags came from the cache."""


class TagError(ValueError):
    """A node's asset or signal could not be derived (names the node)."""


def _tag_from_spec(spec: NodeSpec, node_id: str) -> Tag:
    asset, signal = spec.asset, spec.signal
    if asset is None or signal is None:
        try:
            derived = names_from_id(ua.NodeId.from_string(spec.node_id))
        except ValueError:
            derived = None
        if derived is None:
            raise TagError(
                f"node {spec.node_id}: give asset and signal (the id is not site/area/line/machine/signal)"
            )
        asset = asset or derived[0]
        signal = signal or derived[1]
    try:
        AssetPath.parse(asset)
    except ValueError as exc:
        raise TagError(f"node {spec.node_id}: {exc}") from None
    if not valid_signal(signal):
        raise TagError(f"node {spec.node_id}: {signal!r} is not a valid signal name")
    return Tag(node_id, asset, signal, spec.unit)


def _tag_from_path(spec: BrowseSpec, node_id: str, segments: list[str]) -> Tag:
    where = "Objects/" + "/".join(segments)
    try:
        asset = spec.asset.format(*segments) if spec.asset else "/".join(segments[-5:-1])
        signal = spec.rename.get(segments[-1]) or (
            spec.signal.format(*segments) if spec.signal else segments[-1]
        )
        AssetPath.parse(asset)
    except (IndexError, KeyError, ValueError) as exc:
        raise TagError(f"browse match {where}: {exc}") from None
    if not valid_signal(signal):
        raise TagError(
            f"browse match {where}: {signal!r} is not a valid signal name (letters, digits, '_', '.', "
            f"'-', not starting with a digit): map it with rename = {{ {segments[-1]!r} = \"...\" }} or "
            f"leave it out with exclude on the browse entry"
        )
    return Tag(node_id, asset, signal)


def stable_id(node_id: str, ns_array: list[str]) -> str:
    """``node_id`` (``ns=N;...``) in the namespace-independent form ``nsu=<URI>;...`` (namespace 0
    and ids already in that form are kept)."""
    node = ua.NodeId.from_string(node_id)
    index = node.NamespaceIndex
    if index == 0 or getattr(node, "NamespaceUri", None) or index >= len(ns_array):
        return node_id
    bare = ua.NodeId(node.Identifier, 0, node.NodeIdType).to_string()
    return f"nsu={ns_array[index]};{bare}"


def session_id(node_id: str, ns_array: list[str]) -> str:
    """``node_id`` with an ``nsu=<URI>`` resolved to this session's ``ns=N``; ``TagError`` when
    the server has no such namespace."""
    node = ua.NodeId.from_string(node_id)
    uri = getattr(node, "NamespaceUri", None)
    if not uri:
        return node_id
    if uri not in ns_array:
        raise TagError(f"node {node_id}: the server has no namespace {uri!r}")
    return ua.NodeId(node.Identifier, ns_array.index(uri), node.NodeIdType).to_string()  # type: ignore[no-any-return]


async def _children(client: Client, parents: list[Any]) -> list[list[Any]]:
    """Forward hierarchical references (Objects and Variables) of each parent, in order."""
    out: list[list[Any]] = []
    for i in range(0, len(parents), _CHUNK):
        descs = []
        for nid in parents[i : i + _CHUNK]:
            d = ua.BrowseDescription()
            d.NodeId = nid
            d.BrowseDirection = ua.BrowseDirection.Forward
            d.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
            d.IncludeSubtypes = True
            d.NodeClassMask = ua.NodeClass.Object | ua.NodeClass.Variable
            d.ResultMask = ua.BrowseResultMask.All
            descs.append(d)
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        params.RequestedMaxReferencesPerNode = 0
        params.NodesToBrowse = descs
        for result in await client.uaclient.browse(params):
            refs = list(result.References or [])
            cp = result.ContinuationPoint
            while cp:
                nxt = ua.BrowseNextParameters()
                nxt.ContinuationPoints = [cp]
                more = (await client.uaclient.browse_next(nxt))[0]
                refs.extend(more.References or [])
                cp = more.ContinuationPoint
            out.append(refs)
    return out


async def browse_pattern(client: Client, pattern: str) -> list[tuple[str, list[str]]]:
    """``(node id, path levels below Objects)`` of every Variable matching ``pattern``."""
    levels = pattern.split("/")[1:]
    current: list[tuple[Any, list[str]]] = [(ua.NodeId(ua.ObjectIds.ObjectsFolder), [])]
    for depth, level in enumerate(levels):
        last = depth == len(levels) - 1
        children = await _children(client, [nid for nid, _ in current])
        nxt: list[tuple[Any, list[str]]] = []
        for (_, path), refs in zip(current, children, strict=True):
            for ref in refs:
                if not fnmatch.fnmatchcase(ref.BrowseName.Name, level):
                    continue
                if last and ref.NodeClass != ua.NodeClass.Variable:
                    continue
                nxt.append((ref.NodeId, [*path, ref.BrowseName.Name]))
        current = nxt
        if not current:
            break
    return [(nid.to_string(), path) for nid, path in current]


async def read_units(client: Client, node_ids: list[str]) -> dict[str, str]:
    """``EngineeringUnits`` display names of the given variables (those that have one)."""
    units: dict[str, str] = {}
    for i in range(0, len(node_ids), _CHUNK):
        chunk = node_ids[i : i + _CHUNK]
        paths = []
        for nid in chunk:
            bp = ua.BrowsePath()
            bp.StartingNode = ua.NodeId.from_string(nid)
            bp.RelativePath = ua.RelativePath.from_string("0:EngineeringUnits")
            paths.append(bp)
        results = await client.uaclient.translate_browsepaths_to_nodeids(paths)
        found = [
            (nid, r.Targets[0].TargetId)
            for nid, r in zip(chunk, results, strict=True)
            if r.StatusCode.is_good() and r.Targets
        ]
        if not found:
            continue
        values = await client.uaclient.read_attributes(
            [ua.NodeId(t.Identifier, t.NamespaceIndex) for _, t in found], ua.AttributeIds.Value
        )
        for (nid, _), dv in zip(found, values, strict=True):
            eu = dv.Value.Value if dv.Value is not None else None
            text = getattr(getattr(eu, "DisplayName", None), "Text", None)
            if text:
                units[nid] = str(text)
    return units


class BrowseCache:
    """Namespace-independent tags of one connector (see the module docstring), in a JSON file,
    valid for ``ttl`` seconds and while the server's start time is the one cached."""

    def __init__(self, path: Path | None, ttl: float) -> None:
        self.path = path
        self.ttl = ttl
        self._memory: dict[str, Any] | None = None

    def get(self, key: str, started: str) -> tuple[list[Tag], list[tuple[str, str]]] | None:
        doc = self._memory
        if doc is None and self.path is not None and self.path.exists():
            try:
                doc = json.loads(self.path.read_text())
                if not isinstance(doc, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as exc:
                log.warning("browse cache %s unreadable (%s); browsing again", self.path, exc)
                return None
        if doc is None or doc.get("v") != _CACHE_VERSION or doc.get("key") != key:
            return None
        try:
            if doc.get("started") != started or time.time() - float(doc["ts"]) > self.ttl:
                return None
            tags = [Tag(**t) for t in doc["tags"]]
            rejected = [(str(a), str(b)) for a, b in doc.get("rejected", [])]
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("browse cache %s unreadable (%s); browsing again", self.path, exc)
            return None
        self._memory = doc
        return tags, rejected

    def put(self, key: str, started: str, tags: list[Tag], rejected: list[tuple[str, str]]) -> None:
        doc = {
            "v": _CACHE_VERSION, "ts": time.time(), "key": key, "started": started,
            "tags": [asdict(t) for t in tags], "rejected": [list(r) for r in rejected],
        }
        self._memory = doc
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(self.path)


async def _server_started(client: Client) -> str:
    """The server's ``ServerStatus/StartTime`` (``""`` when it cannot be read)."""
    try:
        dv = (await client.uaclient.read_attributes(
            [ua.NodeId(ua.ObjectIds.Server_ServerStatus_StartTime)], ua.AttributeIds.Value
        ))[0]
        value: Any = dv.Value.Value if dv.Value is not None else None
    except (ua.UaError, OSError, TimeoutError):
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


async def _discover(
    client: Client, cfg: OpcUaConnectorConfig, ns_array: list[str]
) -> tuple[list[Tag], list[tuple[str, str]]]:
    """Tags of the config in namespace-independent form (browsing), and the nodes rejected."""
    found_tags: list[Tag] = []
    rejected: list[tuple[str, str]] = []
    for spec in cfg.nodes:
        try:
            found_tags.append(_tag_from_spec(spec, spec.node_id))
        except TagError as exc:
            rejected.append((spec.node_id, str(exc)))
    for bspec in cfg.browse:
        found = await browse_pattern(client, bspec.pattern)
        if not found:
            log.warning("OPC UA %s: browse pattern %s matches no variable", cfg.name, bspec.pattern)
        for nid, path in found:
            if any(fnmatch.fnmatchcase(path[-1], pat) for pat in bspec.exclude):
                continue
            stable = stable_id(nid, ns_array)
            try:
                found_tags.append(_tag_from_path(bspec, stable, path))
            except TagError as exc:
                rejected.append((stable, str(exc)))
    # each node once (the first entry wins: nodes before browse patterns), by this session's id
    seen: dict[str, Tag] = {}
    unique: list[Tag] = []
    for t in found_tags:
        try:
            sid = session_id(t.node_id, ns_array)
        except TagError:
            sid = t.node_id  # rejected per session (the namespace may come back)
        first = seen.get(sid)
        if first is None:
            seen[sid] = t
            unique.append(t)
        elif (first.asset, first.signal) != (t.asset, t.signal):
            log.warning(
                "OPC UA %s: node %s matched twice, as %s/%s and as %s/%s; read once, as the first",
                cfg.name, t.node_id, first.asset, first.signal, t.asset, t.signal,
            )
    wanted = {}
    for t in unique:
        if t.unit is None:
            with_session = _try_session_id(t.node_id, ns_array)
            if with_session is not None:
                wanted[with_session] = t.node_id
    units = await read_units(client, list(wanted))
    by_stable = {wanted[sid]: unit for sid, unit in units.items()}
    return [Tag(t.node_id, t.asset, t.signal, t.unit or by_stable.get(t.node_id)) for t in unique], rejected


def _try_session_id(node_id: str, ns_array: list[str]) -> str | None:
    try:
        return session_id(node_id, ns_array)
    except TagError:
        return None


def _for_session(
    entries: list[Tag], rejected: list[tuple[str, str]], ns_array: list[str]
) -> Resolved:
    tags: list[Tag] = []
    out = list(rejected)
    seen: set[str] = set()
    for e in entries:
        try:
            sid = session_id(e.node_id, ns_array)
        except TagError as exc:
            out.append((e.node_id, str(exc)))
            continue
        if sid not in seen:
            seen.add(sid)
            tags.append(Tag(sid, e.asset, e.signal, e.unit, e.node_id))
    return Resolved(tags, out)


async def _unknown(client: Client, tags: list[Tag]) -> int:
    """How many of ``tags`` the server does not know (one Read of NodeClass per 500 nodes): a
    node browsed earlier that vanished, e.g. after a change of the PLC program."""
    n = 0
    for i in range(0, len(tags), _CHUNK):
        chunk = tags[i : i + _CHUNK]
        values = await client.uaclient.read_attributes(
            [ua.NodeId.from_string(t.node_id) for t in chunk], ua.AttributeIds.NodeClass
        )
        n += sum(1 for dv in values if dv.StatusCode is not None and dv.StatusCode.name in _UNKNOWN)
    return n


async def resolve_tags(client: Client, cfg: OpcUaConnectorConfig, cache: BrowseCache) -> Resolved:
    """The tags of this session (see the module docstring)."""
    key = json.dumps([cfg.model_dump(mode="json", include={"nodes", "browse"}), cfg.endpoint])
    started = await _server_started(client)
    ns_array = list(await client.get_namespace_array())
    cached = cache.get(key, started)
    if cached is not None:
        resolved = _for_session(*cached, ns_array)
        resolved.browsed = False
        explicit = {spec.node_id for spec in cfg.nodes}  # browsing again does not bring these back
        unknown = await _unknown(client, [t for t in resolved.tags if t.stable not in explicit])
        if not unknown:
            return resolved
        log.info(
            "OPC UA %s: %d cached nodes are unknown to the server; browsing again", cfg.name, unknown
        )
    began = time.monotonic()
    entries, rejected = await _discover(client, cfg, ns_array)
    cache.put(key, started, entries, rejected)
    resolved = _for_session(entries, rejected, ns_array)
    log.info(
        "OPC UA %s: resolved %d nodes in %.2f s", cfg.name, len(resolved.tags), time.monotonic() - began
    )
    return resolved
