"""``GET /api/v1/agents``: the fleet view, for ingest — an ``APIRouter`` factory over ingest's ``Store``.

The fleet lives in the store as ordinary samples (convention of :mod:`zhizao.fleet`): each
agent (gateway) has the asset ``<site>/fleet/agents/<id>`` (``.../gateways/<id>``) with
``fleet.up`` (1 online, 0 offline — the gateway writes 0 when an agent's last will or clean
offline status arrives), ``fleet.backlog_samples``, ``fleet.backlog_age_s``, ``fleet.version``,
``fleet.config_hash``. So the view needs nothing but :meth:`Store.catalogue` and
:meth:`Store.latest`, works on every backend, and survives ingest restarts.

Mount it in ingest (``ingest/app.py``, beside the other routers)::

    from gateway.fleet_api import fleet_router
    from ingest.api.deps import get_store, require
    from ingest.auth import Scope
    app.include_router(fleet_router(get_store, dependencies=[Depends(require(Scope.READ))]))

``status`` is ``online`` when the latest ``fleet.up`` is 1 and the node's last sample is at most
``stale_after_s`` old (query parameter; default the factory's, :data:`DEFAULT_STALE_AFTER_S` =
120 s: four of the default 30 s fleet reports / status refreshes, so an agent killed without a
word turns ``offline`` two minutes after its last report; ask for a longer one with
``?stale_after_s=`` if your agents report less often); otherwise ``offline``. An agent stopped
cleanly says ``fleet.up = 0`` itself (``edge_agent``) and is ``offline`` at once. ``last_seen``
is the time of the node's latest fleet sample.

Two running agents with the same id: an agent's own reports carry ``fleet.instance``, a random id
per process (:mod:`edge_agent.fleet`). When, among the samples of the last
:data:`DUPLICATE_WINDOW_S` (10 min), one instance's reports come again after another's (they
interleave: two processes, not a restart), the node has ``duplicate_id = true`` and
``instances`` lists them, and one WARNING is logged naming the id and the instances (again only
when the set of instances changes). Agents without ``agent.site`` send no reports, so this
cannot see them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.params import Depends as DependsParam
from pydantic import BaseModel, Field

from gateway.fleet import CONFIG_HASH, VERSION
from ingest.storage.base import CatalogueEntry, LatestValue, SeriesQuery, Store
from zhizao import fleet as convention
from zhizao.errors import StoreUnavailable

log = logging.getLogger(__name__)

Kind = Literal["agents", "gateways"]

DEFAULT_STALE_AFTER_S: Final = 120.0
"""Default of ``stale_after_s``: a node whose last fleet sample is older is ``offline``."""
DUPLICATE_WINDOW_S: Final = 600.0
"""How far back ``fleet.instance`` samples are read to find two agents reporting one id."""
INSTANCE: Final = "fleet.instance"
"""The agents' instance signal (``edge_agent.fleet.INSTANCE``; not imported: ingest needs no agent code)."""


class FleetNode(BaseModel):
    """One agent or gateway as the store last heard of it."""

    id: str
    kind: Kind
    site: str
    asset: str
    status: Literal["online", "offline"]
    last_seen: datetime
    backlog_samples: int | None = None
    backlog_age_s: float | None = None
    version: str | None = None
    config_hash: str | None = None
    duplicate_id: bool = False
    """True when two or more running agents report this id (their instances interleave)."""
    instances: list[str] = Field(default_factory=list)
    """With ``duplicate_id``: the instance ids reporting it."""


def interleaved(instances: Sequence[str]) -> list[str]:
    """The distinct instance ids of ``instances`` (in time order) if one of them comes back after
    another one's (two processes reporting one id), else ``[]`` (one process, or restarts)."""
    done: set[str] = set()
    current: str | None = None
    for value in instances:
        if value != current:
            if value in done:
                return sorted(set(instances))
            if current is not None:
                done.add(current)
            current = value
    return []


def fleet_nodes(entries: Sequence[CatalogueEntry]) -> dict[str, tuple[Kind, datetime]]:
    """``{asset: (kind, last_seen)}`` of the fleet assets among catalogue entries."""
    out: dict[str, tuple[Kind, datetime]] = {}
    for e in entries:
        parts = e.asset.split("/")
        if len(parts) == 4 and parts[1] == convention.AREA and parts[2] in ("agents", "gateways"):
            kind: Kind = "agents" if parts[2] == "agents" else "gateways"
            prev = out.get(e.asset)
            out[e.asset] = (kind, max(prev[1], e.last_seen) if prev else e.last_seen)
    return out


def node_view(asset: str, kind: Kind, last_seen: datetime, latest: Sequence[LatestValue], *,
              stale_after_s: float | None, now: datetime) -> FleetNode:
    """The :class:`FleetNode` of one fleet asset from its latest values."""
    values: dict[str, Any] = {v.signal: v.value for v in latest}
    up = values.get(convention.UP)
    online = up is not None and float(up) >= 1
    if online and stale_after_s is not None and (now - last_seen).total_seconds() > stale_after_s:
        online = False
    site, _, _, node = asset.split("/")

    def num(signal: str) -> float | None:
        v = values.get(signal)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    backlog = num(convention.BACKLOG_SAMPLES)
    version, config_hash = values.get(VERSION), values.get(CONFIG_HASH)
    return FleetNode(
        id=node, kind=kind, site=site, asset=asset, status="online" if online else "offline",
        last_seen=last_seen, backlog_samples=int(backlog) if backlog is not None else None,
        backlog_age_s=num(convention.BACKLOG_AGE_S),
        version=version if isinstance(version, str) else None,
        config_hash=config_hash if isinstance(config_hash, str) else None)


def fleet_router(get_store: Callable[[Request], Store], *,
                 stale_after_s: float | None = DEFAULT_STALE_AFTER_S,
                 dependencies: Sequence[DependsParam] = ()) -> APIRouter:
    """The router serving ``GET /api/v1/agents`` (see the module docstring)."""
    router = APIRouter(prefix="/api/v1", tags=["fleet"], dependencies=list(dependencies))
    store_dep = Depends(get_store)  # a default, not an annotation: annotations are strings here
    warned: dict[str, tuple[str, ...]] = {}

    async def duplicates(store: Store, asset: str, now: datetime) -> list[str]:
        """The interleaving instances of an agent asset over the last ``DUPLICATE_WINDOW_S``."""
        q = SeriesQuery(asset=asset, start=now - timedelta(seconds=DUPLICATE_WINDOW_S),
                        end=now + timedelta(minutes=1), signals=(INSTANCE,))
        values = [v for series in await store.query(q) for v in series.values() if isinstance(v, str)]
        found = interleaved(values)
        if found and warned.get(asset) != tuple(found):
            warned[asset] = tuple(found)
            log.warning("two or more running agents report the agent id %r (%s): their fleet reports "
                        "interleave (instances %s in the last %.0f s) and so do their batches; give each "
                        "box its own agent.id", asset.rsplit("/", maxsplit=1)[-1], asset, ", ".join(found),
                        DUPLICATE_WINDOW_S)
        return found

    @router.get("/agents", response_model=list[FleetNode],
                responses={503: {"description": "store unavailable"}})
    async def list_agents(
        store: Store = store_dep,
        site: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")] = None,
        kind: Annotated[Kind | None, Query(description="agents or gateways; both when absent")] = None,
        stale_after_s: Annotated[float | None, Query(gt=0)] = stale_after_s,
    ) -> list[FleetNode]:
        """Every agent and gateway with its status (online/offline), last seen time and backlog."""
        try:
            entries = await store.catalogue(site)
            nodes = fleet_nodes(entries)
            reporting = {e.asset for e in entries if e.signal == INSTANCE}
            now = datetime.now(UTC)
            out = []
            for asset, (k, last_seen) in sorted(nodes.items()):
                if kind is None or k == kind:
                    node = node_view(asset, k, last_seen, await store.latest(asset),
                                     stale_after_s=stale_after_s, now=now)
                    if asset in reporting:
                        node.instances = await duplicates(store, asset, now)
                        node.duplicate_id = bool(node.instances)
                    out.append(node)
        except StoreUnavailable as exc:
            raise HTTPException(503, f"store unavailable: {exc}", headers={"Retry-After": "5"}) from exc
        return out

    return router
