"""Which OPC UA nodes to read: NodeId lists and browse-path patterns, resolved once and cached.

:func:`resolve_tags` turns the config into :class:`Tag` s (node, asset, signal, unit). Browse
patterns are walked level by level from ``Objects`` with one Browse request per level (nodes
batched), so thousands of nodes cost a handful of round trips; units come from each variable's
``EngineeringUnits`` property (one TranslateBrowsePaths and one Read for all). The result is
kept in a JSON cache file for ``browse_cache_ttl_s`` and reused across reconnects and restarts;
a cached node that vanished is reported by the subscription and skipped.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asyncua.client.client import Client

from edge_agent.connectors.opcua.config import BrowseSpec, NodeSpec, OpcUaConnectorConfig
from zhizao.model import AssetPath, valid_signal

ua: Any = importlib.import_module("asyncua.ua")
log = logging.getLogger(__name__)
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Tag:
    """One variable to read and where its values go."""

    node_id: str
    asset: str
    signal: str
    unit: str | None = None


class TagError(ValueError):
    """A node's asset or signal could not be derived (names the node)."""


def _tag_from_spec(spec: NodeSpec, node_id: str) -> Tag:
    asset, signal = spec.asset, spec.signal
    if asset is None or signal is None:
        ident = node_id.split(";s=", 1)[-1] if ";s=" in node_id else ""
        parts = ident.split("/")
        if len(parts) != 5:
            raise TagError(
                f"node {spec.node_id}: give asset and signal (the id is not site/area/line/machine/signal)"
            )
        asset = asset or "/".join(parts[:4])
        signal = signal or parts[4]
    AssetPath.parse(asset)
    return Tag(node_id, asset, signal, spec.unit)


def _tag_from_path(spec: BrowseSpec, node_id: str, segments: list[str]) -> Tag:
    try:
        asset = spec.asset.format(*segments) if spec.asset else "/".join(segments[-5:-1])
        signal = spec.signal.format(*segments) if spec.signal else segments[-1]
        AssetPath.parse(asset)
    except (IndexError, ValueError) as exc:
        raise TagError(f"node {'/'.join(segments)}: {exc}") from None
    if not valid_signal(signal):
        raise TagError(f"node {'/'.join(segments)}: {signal!r} is not a valid signal name")
    return Tag(node_id, asset, signal)


async def _resolve_nsu(client: Client, node_id: str, ns_array: list[str]) -> str:
    if not node_id.startswith("nsu="):
        return node_id
    uri, _, rest = node_id[4:].partition(";")
    if uri not in ns_array:
        raise TagError(f"node {node_id}: the server has no namespace {uri!r}")
    return f"ns={ns_array.index(uri)};{rest}"


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
    """Resolved tags of one connector, in a JSON file, valid for ``ttl`` seconds."""

    def __init__(self, path: Path | None, ttl: float) -> None:
        self.path = path
        self.ttl = ttl
        self._memory: tuple[float, str, list[Tag]] | None = None

    def get(self, key: str) -> list[Tag] | None:
        entry = self._memory
        if entry is None and self.path is not None and self.path.exists():
            try:
                doc = json.loads(self.path.read_text())
                entry = (float(doc["ts"]), str(doc["key"]), [Tag(**t) for t in doc["tags"]])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("browse cache %s unreadable (%s); browsing again", self.path, exc)
                return None
        if entry is None or entry[1] != key or time.time() - entry[0] > self.ttl:
            return None
        self._memory = entry
        return entry[2]

    def put(self, key: str, tags: list[Tag]) -> None:
        self._memory = (time.time(), key, tags)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"ts": time.time(), "key": key, "tags": [asdict(t) for t in tags]}))
            tmp.replace(self.path)


async def resolve_tags(client: Client, cfg: OpcUaConnectorConfig, cache: BrowseCache) -> list[Tag]:
    """Every tag of the config (see the module docstring); ``TagError`` for a bad node spec."""
    key = json.dumps([cfg.model_dump(mode="json", include={"nodes", "browse"}), cfg.endpoint])
    cached = cache.get(key)
    if cached is not None:
        return cached
    started = time.monotonic()
    ns_array = (
        await client.get_namespace_array() if any(n.node_id.startswith("nsu=") for n in cfg.nodes) else []
    )
    tags: list[Tag] = []
    for spec in cfg.nodes:
        tags.append(_tag_from_spec(spec, await _resolve_nsu(client, spec.node_id, ns_array)))
    for bspec in cfg.browse:
        found = await browse_pattern(client, bspec.pattern)
        if not found:
            log.warning("OPC UA %s: browse pattern %s matches no variable", cfg.name, bspec.pattern)
        tags.extend(_tag_from_path(bspec, nid, path) for nid, path in found)
    seen: set[str] = set()
    unique = [t for t in tags if not (t.node_id in seen or seen.add(t.node_id))]  # type: ignore[func-returns-value]
    units = await read_units(client, [t.node_id for t in unique if t.unit is None])
    resolved = [Tag(t.node_id, t.asset, t.signal, t.unit or units.get(t.node_id)) for t in unique]
    log.info("OPC UA %s: resolved %d nodes in %.2f s", cfg.name, len(resolved), time.monotonic() - started)
    cache.put(key, resolved)
    return resolved
