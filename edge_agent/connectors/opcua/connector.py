"""OPC UA connector (asyncua client): subscriptions or polling, into the buffer.

One ``run`` = one session: apply security (never weaker than configured), connect, resolve the
tags against this session's namespaces (cached browse, see :mod:`.browse`; a node that cannot be
read — an unknown namespace URI, a browse match without a valid signal name — is rejected alone
with one WARNING and counted as a skipped node), then either

- **subscribe**: one subscription, monitored items created in batches of
  ``subscribe_batch_size`` (sampling interval, queue size, deadband); a node the server refuses
  (unknown, vanished during an outage) is reported once and skipped while the rest resume; a
  deadband the server cannot apply is reported and the item subscribed without it; a sampling or
  publishing interval the server revised is logged once (INFO, requested vs revised); or
- **poll**: Read requests of ``read_batch_size`` nodes every ``poll_interval_ms``, emitting a
  sample only when the value, status or source timestamp changed.

Samples are handed to the buffer every ``FLUSH_S`` (so a ``kill -9`` loses at most that plus one
group-commit interval of OPC UA values; on a normal stop everything read is committed). A
commit that fails (disk full, I/O error) loses nothing: its samples (and its nodes' marks, unless
a later hand-over carries newer ones) are kept in memory, in order, and handed over again on
their own schedule — a backoff from ``COMMIT_RETRY_S`` doubling up to ``COMMIT_RETRY_CAP_S``
(the ``retry`` argument), whether a session runs or not: a retry task of the connector, started
at the first failed commit and ended by the first that succeeds, hands them over while the OPC UA
server is away too; everything read meanwhile waits with them — until a commit succeeds (one
ERROR line when commits start failing, one WARNING when they succeed again;
``commit_failures`` counted). At most ``max_held_samples`` are kept: beyond that the oldest are
dropped under the policy ``commit_failed`` (counted in ``stats.dropped``, exported as
``zhizao_agent_connector_samples_dropped_total{reason="commit_failed"}``, one WARNING per
failing period). The retry task lives as long as the task that runs the connector (the agent's
supervisor): when the agent stops, :meth:`OpcUaConnector.settle_at_stop` ends it and hands what
is held over once more; what that commit cannot take has nowhere to go and is dropped under
``stopped_uncommitted`` (counted, one ERROR line naming how many samples of which time span).
Every hand-over — of a session, of the retry task, at the stop — takes everything held, oldest
first, with its marks (:meth:`OpcUaConnector._take_held`), so a sample is committed once. A new
session's converter starts from the newest sample read, committed or held, so its initial
notifications do not repeat a held one. A
watchdog gives up a subscription that delivered nothing, not even a keep-alive, for
``stale_after_s``; a silent subscription or a lost session raises
:class:`~zhizao.errors.ConnectionLost` and the supervisor reconnects and subscribes again from
scratch on a fresh session.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import importlib
import logging
import time
from pathlib import Path
from typing import Any

from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent, Subscription

from edge_agent.buffer import PutResult
from edge_agent.connectors.base import ConnectorStats, Sink
from edge_agent.connectors.opcua.browse import BrowseCache, Tag, resolve_tags
from edge_agent.connectors.opcua.config import OpcUaConnectorConfig
from edge_agent.connectors.opcua.convert import Converter
from edge_agent.connectors.opcua.security import apply_security, ensure_client_certificate
from zhizao.backoff import Backoff
from zhizao.errors import ConnectionLost, SecurityError
from zhizao.model import AssetPath, Sample

ua: Any = importlib.import_module("asyncua.ua")
log = logging.getLogger(__name__)
FLUSH_S = 0.05
COMMIT_RETRY_S = 1.0
"""After the first failed commit, what is held is handed to the buffer again about this much later
(half to all of it: jittered); each failed retry doubles the delay, up to ``COMMIT_RETRY_CAP_S``."""
COMMIT_RETRY_CAP_S = 30.0
"""The longest wait between two retries of held samples: the disk having room again is noticed
this late at most, and a retry (which encodes everything held again) costs this rarely."""
_VANISHED = {"BadNodeIdUnknown", "BadNodeIdInvalid", "BadAttributeIdInvalid", "BadNotReadable"}
_FILTER_REFUSED = {
    "BadFilterNotAllowed",
    "BadMonitoredItemFilterUnsupported",
    "BadDeadbandFilterInvalid",
    "BadMonitoredItemFilterInvalid",
}
_TRIGGERS = {
    "status": ua.DataChangeTrigger.Status,
    "status_value": ua.DataChangeTrigger.StatusValue,
    "status_value_timestamp": ua.DataChangeTrigger.StatusValueTimestamp,
}
_SECURITY = ("BadSecurity", "BadCertificate", "BadIdentity", "BadUserAccessDenied", "BadUserSignatureInvalid")


def _status_name(code: Any) -> str:
    return str(getattr(code, "name", code))


def _failure(fut: asyncio.Future[PutResult]) -> BaseException | None:
    """Why a commit failed, or None when it succeeded (retrieves the exception: none is left
    unretrieved)."""
    if fut.cancelled():
        return RuntimeError("buffer commit cancelled")
    return fut.exception()


class OpcUaConnector:
    """See the module docstring."""

    def __init__(
        self, config: OpcUaConnectorConfig, agent_id: str, state_dir: Path, *, retry: Backoff | None = None
    ) -> None:
        """``retry``: the schedule of handing over again what failed to commit (default
        ``Backoff(COMMIT_RETRY_S, COMMIT_RETRY_CAP_S)``; see the module docstring)."""
        self.config = config
        self.name = config.name
        self.agent_id = agent_id
        self.state_dir = state_dir
        self.stats = ConnectorStats()
        self.cache = BrowseCache(state_dir / f"{config.name}-browse.json", config.browse_cache_ttl_s)
        sec = config.security
        self.client_cert = sec.client_cert or state_dir / "pki" / f"{config.name}-cert.der"
        self.client_key = sec.client_key or state_dir / "pki" / f"{config.name}-key.pem"
        self.application_uri = sec.application_uri or f"urn:zhizao:agent:{agent_id}"
        self.tags: list[Tag] = []
        self.skipped_nodes: set[str] = set()
        self._runs = 0
        self._pending: list[Sample] = []
        """Read, not yet handed to the buffer (oldest first)."""
        self._marks: dict[str, str] = {}
        """Marks to commit with the next hand-over (newest of each node)."""
        self._retry: list[tuple[int, list[Sample]]] = []
        """Samples of hand-overs whose commit failed, by hand-over number: handed over again
        before ``_pending``."""
        self._owner: dict[str, int] = {}
        """Mark key → number of the newest hand-over in flight carrying it."""
        self._latest: dict[str, str] = {}
        """Mark key → mark of the newest sample read (committed or not): a new session's converter
        starts from it, so that its initial notifications do not repeat what is held."""
        self._handovers = 0
        self._retry_at = 0.0
        """While commits fail: when (``time.monotonic``) what is held is handed over next."""
        self._backoff = retry or Backoff(initial=COMMIT_RETRY_S, cap=COMMIT_RETRY_CAP_S)
        self._delay = COMMIT_RETRY_S
        """The current retry delay (the backoff's last)."""
        self._scheduled = 0
        """Number of the last hand-over made by the retry schedule (its failure advances it)."""
        self._retrier: asyncio.Task[None] | None = None
        """Hands over what is held on the retry schedule while commits fail (session or not)."""
        self._runner: asyncio.Task[Any] | None = None
        """The task that runs :meth:`run` (the supervisor's): the retrier does not outlive it."""
        self._stopping = False
        self._failing = False
        self._episode = (0, 0)
        """(failed commits, samples dropped) since commits started failing."""
        self._conv: Converter | None = None
        self._inflight: set[asyncio.Future[PutResult]] = set()
        """Hand-overs whose commit has not settled yet."""
        self.stats.skipped.update(repeat=0, no_value=0, unsupported_type=0)
        self._reported: set[tuple[str, str]] = set()
        """(node, reason) of values not collected already logged (once per node and reason)."""

    async def _client(self) -> Client:
        cfg = self.config
        client = Client(cfg.endpoint, timeout=cfg.request_timeout_s)
        client.application_uri = self.application_uri
        client.name = client.description = f"zhizao edge agent {self.agent_id}"
        ident = cfg.identity
        if ident.type == "username":
            assert ident.username is not None and ident.password is not None
            client.set_user(ident.username)
            client.set_password(ident.password.get_secret_value())
        elif ident.type == "certificate":
            assert ident.cert is not None and ident.key is not None
            try:
                await client.load_client_certificate(str(ident.cert))
                await client.load_private_key(ident.key)
            except (OSError, ValueError) as exc:
                raise SecurityError(f"cannot load identity certificate {ident.cert}: {exc}") from exc
        if cfg.security.mode != "None":
            await ensure_client_certificate(self.client_cert, self.client_key, self.application_uri)
            await apply_security(client, cfg.security, self.client_cert, self.client_key, cfg.endpoint)
        return client

    async def run(self, sink: Sink) -> None:
        """Read until cancelled (see the module docstring)."""
        cfg = self.config
        client = await self._client()
        lost = asyncio.Event()

        async def on_lost(_exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        self._runner = asyncio.current_task()
        if hasattr(client, "_stale_check_margin"):
            # asyncua 2.x has its own stale-subscription watchdog whose in-place re-creation can leave
            # the new subscription unrouted; ours re-subscribes on a fresh session instead
            client._stale_check_margin = float("inf")
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            name = _status_name(exc.code) if hasattr(exc, "code") else str(exc)
            if name.startswith(_SECURITY) or any(s in str(exc) for s in _SECURITY):
                raise SecurityError(f"OPC UA server {cfg.endpoint} refused the session: {exc}") from exc
            raise ConnectionLost(f"OPC UA server {cfg.endpoint}: {exc}") from exc
        except (OSError, TimeoutError, ua.UaError) as exc:
            raise ConnectionLost(f"OPC UA server {cfg.endpoint} unreachable: {exc}") from exc
        try:
            self._runs += 1
            if self._runs > 1:
                self.stats.reconnects += 1
            stored = await sink.marks(f"opcua:{self.name}:")
            resolved = await resolve_tags(client, cfg, self.cache)
            for node, reason in resolved.rejected:
                self._reject(node, reason)
            now = {t.stable for t in resolved.tags}
            for old in self.tags:  # browsed again: a node found before is gone from the server
                if old.stable not in now and old.stable not in {n for n, _ in resolved.rejected}:
                    self._skip(old, "BadNodeIdUnknown (no longer found when browsing again)")
            self.tags = resolved.tags
            conv = self._conv = Converter(
                [AssetPath.parse(t.asset) for t in self.tags],
                [t.signal for t in self.tags],
                [t.unit for t in self.tags],
                [
                    self._latest.get(k) or stored.get(k) or stored.get(f"opcua:{self.name}:{t.node_id}")
                    for t, k in zip(self.tags, map(self._mark_key, self.tags), strict=True)
                ],
                self.stats.skipped,
                timestamp=cfg.timestamp,
                report=self._not_collected,
            )
            flusher = asyncio.create_task(self._flush_loop(sink))
            try:
                if cfg.mode == "subscribe":
                    await self._subscribe(client, conv, lost)
                else:
                    await self._poll(client, conv, lost)
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                self._flush(sink, force=True)
        except (OSError, TimeoutError, ua.UaError) as exc:
            raise ConnectionLost(f"OPC UA server {cfg.endpoint}: {exc}") from exc
        finally:
            self.stats.connected = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)

    # -- handing samples to the buffer ---------------------------------------------------------
    def _mark_key(self, tag: Tag) -> str:
        """Namespace-independent (``nsu=`` form for browsed nodes): a server that renumbers its
        namespaces keeps the marks; a mark under the session's ``ns=`` id (older agents) is
        read too."""
        return f"opcua:{self.name}:{tag.stable}"

    @property
    def held_samples(self) -> int:
        """Samples read and not handed to the buffer (waiting for the next hand-over, or kept from
        a failed commit)."""
        return len(self._pending) + sum(len(chunk) for _, chunk in self._retry)

    def _take_held(self) -> tuple[list[Sample], dict[str, str]]:
        """Everything held, oldest first (kept from failed commits, then read since), and the marks
        to commit with it; the connector holds nothing after."""
        held = [s for _, chunk in self._retry for s in chunk] + self._pending
        marks = self._marks
        self._pending, self._retry, self._marks = [], [], {}
        return held, marks

    def _flush(self, sink: Sink, *, force: bool = False) -> None:
        """Hand what was read to the buffer, with each node's last mark (committed together: after
        a crash the restarted agent knows exactly what it has). After a failed commit only from
        ``_retry_at`` on (``force``: now, at the end of a run and at the stop); see the module
        docstring."""
        if not force and time.monotonic() < self._retry_at:
            self._bound()
            return
        if not self._pending and not self._retry:
            return
        batch, marks = self._take_held()
        self._handovers += 1
        number = self._handovers
        for key in marks:
            self._owner[key] = number
        if self._failing:  # one hand-over per retry delay until a commit succeeds
            self._retry_at = time.monotonic() + self._delay
            if not force:
                self._scheduled = number
        try:
            fut = sink.submit(batch, marks)
        except Exception as exc:  # noqa: BLE001 - a closed buffer, a bug: kept like a failed commit
            self._settled(number, batch, marks, exc, sink)
            return
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        fut.add_done_callback(lambda f: self._settled(number, batch, marks, _failure(f), sink))

    def _start_retrier(self, sink: Sink) -> None:
        """Commits fail (or samples of a failed commit are still held): hand over what is held on
        the retry schedule from now on, whether a session runs or not, until a commit succeeds
        and nothing of a failed one is held — unless the agent is stopping (the task that runs the
        connector ended, or :meth:`settle_at_stop` began)."""
        runner = self._runner
        if self._stopping or runner is None or runner.done():
            return
        if self._retrier is not None and not self._retrier.done():
            return
        retrier = self._retrier = asyncio.create_task(self._retry_loop(sink), name=f"opcua-{self.name}-retry")

        def runner_done(_: asyncio.Task[Any]) -> None:
            retrier.cancel()

        runner.add_done_callback(runner_done)
        retrier.add_done_callback(lambda _: runner.remove_done_callback(runner_done))

    async def _retry_loop(self, sink: Sink) -> None:
        """While commits fail, or samples of a failed commit are held (another hand-over in flight
        at the time committed): at each ``_retry_at`` (0 once commits succeed), hand over what is
        held — a session's flusher may do it first: the same gate, whoever comes first hands
        over everything held."""
        while self._failing or self._retry:
            await asyncio.sleep(max(FLUSH_S, self._retry_at - time.monotonic()))
            self._flush(sink)

    async def _end_retrier(self) -> None:
        retrier, self._retrier = self._retrier, None
        if retrier is not None:
            retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retrier

    async def settle_at_stop(self, sink: Sink) -> int:
        """At the agent's stop, after :meth:`run` ended and the buffer was flushed: wait for the
        hand-overs in flight to settle, then hand over what is still held once more (the disk may
        have room again while no session ran to retry: the OPC UA server was away) and wait for
        that commit. What is held after it cannot be kept anywhere and is dropped under
        ``stopped_uncommitted`` — counted, and one ERROR line names how many samples of which
        source-time span were lost. Returns how many were dropped (0 when everything read was
        committed)."""
        self._stopping = True
        await self._end_retrier()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self.held_samples:
            self._flush(sink, force=True)
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
        held, _ = self._take_held()
        if not held:
            return 0
        self.stats.dropped["stopped_uncommitted"] = (
            self.stats.dropped.get("stopped_uncommitted", 0) + len(held)
        )
        first = min(s.ts for s in held)
        last = max(s.ts for s in held)
        log.error(
            "OPC UA %s: agent stopping while buffer commits fail: %d samples read and never committed "
            "are lost (policy stopped_uncommitted), source time %s to %s, %d nodes",
            self.name, len(held), first.isoformat(), last.isoformat(),
            len({(s.asset, s.signal) for s in held}),
        )
        return len(held)

    def _settled(
        self, number: int, batch: list[Sample], marks: dict[str, str], failure: BaseException | None,
        sink: Sink,
    ) -> None:
        """Hand-over ``number`` to ``sink`` ended: committed (``failure`` None) or kept for the next
        one, handed over on the retry schedule (see the module docstring)."""
        owner = self._owner
        for key, value in marks.items():
            if owner.get(key) == number:
                del owner[key]
                if failure is not None:  # no later hand-over carries it: it goes with the retry
                    self._marks.setdefault(key, value)
        if failure is None:
            self._retry_at = 0.0  # the buffer commits: what is kept goes with the next hand-over
            self._backoff.reset()
            if self._failing:
                self._failing = False
                fails, dropped = self._episode
                log.warning(
                    "OPC UA %s: buffer commits succeed again after %d failed commits; the samples "
                    "kept meanwhile are handed over (%d dropped under commit_failed)",
                    self.name, fails, dropped,
                )
            if self._retry:  # of a hand-over that failed while this one was in flight
                self._start_retrier(sink)
            return
        self.stats.commit_failures += 1
        bisect.insort(self._retry, (number, batch), key=lambda item: item[0])
        now = time.monotonic()
        if not self._failing or number == self._scheduled or self._retry_at <= now:
            # the first failure, or a retry of the schedule failed: the next one a backoff later
            # (hand-overs made before the schedule's time — in flight together, a session's end —
            # do not advance it)
            self._delay = self._backoff.next()
            self._retry_at = now + self._delay
        fails, dropped = self._episode if self._failing else (0, 0)
        self._episode = (fails + 1, dropped)
        if not self._failing:
            self._failing = True
            log.error(
                "OPC UA %s: buffer commit failed (%s): %d samples kept in memory and handed over "
                "again after %.1f s, then less and less often (at most every %.0f s), with or "
                "without an OPC UA session, until a commit succeeds (at most %d kept, then the "
                "oldest are dropped under commit_failed)",
                self.name, failure, self.held_samples, self._delay, self._backoff.cap,
                self.config.max_held_samples,
            )
        self._start_retrier(sink)
        self._bound()

    def _bound(self) -> None:
        """While commits fail: drop the oldest samples kept beyond ``max_held_samples`` (policy
        ``commit_failed``: counted, one WARNING per failing period)."""
        excess = self.held_samples - self.config.max_held_samples
        if excess <= 0 or not self._failing:
            return
        dropped = excess
        while excess > 0 and self._retry:
            number, chunk = self._retry[0]
            if len(chunk) <= excess:
                excess -= len(chunk)
                self._retry.pop(0)
            else:
                self._retry[0] = (number, chunk[excess:])
                excess = 0
        if excess > 0:
            del self._pending[:excess]
        self.stats.dropped["commit_failed"] = self.stats.dropped.get("commit_failed", 0) + dropped
        fails, before = self._episode
        self._episode = (fails, before + dropped)
        if before == 0:
            log.warning(
                "OPC UA %s: more than max_held_samples=%d samples kept while buffer commits fail: "
                "dropping the oldest (policy commit_failed, counted in "
                "zhizao_agent_connector_samples_dropped_total) until commits succeed",
                self.name, self.config.max_held_samples,
            )

    async def _flush_loop(self, sink: Sink) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            self._flush(sink)

    def _emit(self, index: int, sample: Sample | None) -> None:
        if sample is not None:
            self._pending.append(sample)
            assert self._conv is not None
            key = self._mark_key(self.tags[index])
            self._marks[key] = self._latest[key] = self._conv.mark(index)
            self.stats.got(1)

    # -- subscription mode -------------------------------------------------------------------
    def _request(self, index: int, tag: Tag, with_filter: bool) -> Any:
        cfg = self.config
        rv = ua.ReadValueId()
        rv.NodeId = ua.NodeId.from_string(tag.node_id)
        rv.AttributeId = ua.AttributeIds.Value
        params = ua.MonitoringParameters()
        params.ClientHandle = index
        params.SamplingInterval = cfg.sampling_interval_ms
        params.QueueSize = cfg.queue_size
        params.DiscardOldest = True
        if with_filter:
            flt = ua.DataChangeFilter()
            flt.Trigger = _TRIGGERS[cfg.trigger]
            if cfg.deadband.type != "none":
                flt.DeadbandType = 1 if cfg.deadband.type == "absolute" else 2
                flt.DeadbandValue = cfg.deadband.value
            params.Filter = flt
        mir = ua.MonitoredItemCreateRequest()
        mir.ItemToMonitor = rv
        mir.MonitoringMode = ua.MonitoringMode.Reporting
        mir.RequestedParameters = params
        return mir

    async def _create_items(self, sub: Subscription) -> int:
        cfg = self.config
        ok = 0
        retry: list[int] = []
        indices = list(range(len(self.tags)))
        for with_filter in (True, False):
            for i in range(0, len(indices), cfg.subscribe_batch_size):
                chunk = indices[i : i + cfg.subscribe_batch_size]
                results = await sub.create_monitored_items(
                    [self._request(j, self.tags[j], with_filter) for j in chunk]
                )
                for j, res in zip(chunk, results, strict=True):
                    if not isinstance(res, ua.StatusCode):
                        ok += 1
                        self.skipped_nodes.discard(self.tags[j].node_id)
                        continue
                    name = _status_name(res)
                    if with_filter and name in _FILTER_REFUSED:
                        retry.append(j)
                    else:
                        self._skip(self.tags[j], name)
            if not retry:
                break
            log.warning(
                "OPC UA %s: server refused the data-change filter (trigger %s, deadband %s) on %d nodes;"
                " subscribing them without it",
                self.name,
                cfg.trigger,
                cfg.deadband.type,
                len(retry),
            )
            indices, retry = retry, []
        return ok

    def _reject(self, node: str, reason: str) -> None:
        """A configured or browsed node that cannot be read at all: one WARNING, counted as a
        skipped node (``zhizao_agent_skipped_nodes``); the others are read."""
        if node not in self.skipped_nodes:
            self.skipped_nodes.add(node)
            self.stats.vanished_nodes += 1
            log.warning("OPC UA %s: %s; node skipped, the others are read", self.name, reason)

    def _not_collected(self, index: int, reason: str, what: str) -> None:
        """A value of tag ``index`` not collected (``Converter`` report): one WARNING per node and
        reason."""
        tag = self.tags[index]
        if (tag.node_id, reason) in self._reported:
            return
        self._reported.add((tag.node_id, reason))
        if reason == "unsupported_type":
            log.warning(
                "OPC UA %s: node %s (%s/%s) has a value of type %s, which has no zhizao form (only "
                "scalars: numbers, booleans, text, date-times); its values are skipped (counted as "
                "values_skipped{reason=\"unsupported_type\"})",
                self.name, tag.node_id, tag.asset, tag.signal, what,
            )
        else:
            log.warning(
                "OPC UA %s: node %s (%s/%s) reports %s without a value and no earlier value to repeat "
                "with quality bad: nothing is stored for it until it has a value (counted as "
                "values_skipped{reason=\"no_value\"})",
                self.name, tag.node_id, tag.asset, tag.signal, what,
            )

    def _skip(self, tag: Tag, reason: str) -> None:
        if tag.node_id not in self.skipped_nodes:
            self.skipped_nodes.add(tag.node_id)
            self.stats.vanished_nodes += 1
            log.warning(
                "OPC UA %s: node %s (%s/%s) skipped: %s",
                self.name,
                tag.node_id,
                tag.asset,
                tag.signal,
                reason,
            )

    async def _subscribe(self, client: Client, conv: Converter, lost: asyncio.Event) -> None:
        cfg = self.config
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = cfg.publishing_interval_ms
        # keep-alives at least 3 times per staleness window, so silence really means trouble
        params.RequestedMaxKeepAliveCount = max(
            1, int(cfg.stale_after * 1000 / cfg.publishing_interval_ms / 3)
        )
        params.RequestedLifetimeCount = max(10_000, 3 * params.RequestedMaxKeepAliveCount)
        params.MaxNotificationsPerPublish = 10_000
        params.PublishingEnabled = True
        params.Priority = 0
        revised_pub: list[float] = []
        revise = client.get_subscription_revised_params

        def seen_revised(p: Any, results: Any) -> Any:
            revised_pub.append(float(results.RevisedPublishingInterval))
            return revise(p, results)

        client.get_subscription_revised_params = seen_revised  # type: ignore[method-assign,assignment]
        sub = await client.create_subscription(
            params, None, queue_maxsize=1_000_000, overflow=OverflowPolicy.DISCONNECT
        )
        sampling: list[float] = []
        session: Any = sub.server
        create = session.create_monitored_items

        async def seen_sampling(p: Any) -> Any:
            results = await create(p)
            sampling.extend(float(r.RevisedSamplingInterval) for r in results if r.StatusCode.is_good())
            return results

        session.create_monitored_items = seen_sampling
        started = time.monotonic()
        ok = await self._create_items(sub)
        self._log_revised(revised_pub, sampling)
        if self.tags and not ok:
            log.error(
                "OPC UA %s: none of the %d nodes could be subscribed; trying again on a fresh session",
                self.name, len(self.tags),
            )
            raise ConnectionLost(f"OPC UA server {cfg.endpoint}: no node could be subscribed")
        self.stats.connected = True  # up = collecting: the values served from now on are delivered
        log.info(
            "OPC UA %s: subscribed %d of %d nodes in %.2f s (batches of %d)",
            self.name,
            ok,
            len(self.tags),
            time.monotonic() - started,
            cfg.subscribe_batch_size,
        )
        consumer = asyncio.create_task(self._consume(sub, conv, lost))
        try:
            while not lost.is_set():
                await asyncio.sleep(min(1.0, cfg.stale_after / 4))
                if consumer.done():
                    consumer.result()
                    break
                last = sub.last_publish_at
                if last is not None and time.monotonic() - last > cfg.stale_after:
                    self.stats.resubscribes += 1
                    log.warning(
                        "OPC UA %s: subscription silent (no data, no keep-alive) for %.1f s; "
                        "re-subscribing on a fresh session",
                        self.name,
                        time.monotonic() - last,
                    )
                    raise ConnectionLost(f"OPC UA subscription on {cfg.endpoint} went silent")
            raise ConnectionLost(f"OPC UA session to {cfg.endpoint} lost")
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await consumer

    def _log_revised(self, publishing: list[float], sampling: list[float]) -> None:
        """One INFO line when the server revised the publishing or sampling interval."""
        cfg = self.config
        pub = publishing[0] if publishing else cfg.publishing_interval_ms
        changed = [x for x in sampling if x != cfg.sampling_interval_ms]
        if pub == cfg.publishing_interval_ms and not changed:
            return
        parts = []
        if pub != cfg.publishing_interval_ms:
            parts.append(
                f"publishing interval: requested {cfg.publishing_interval_ms:g} ms, revised {pub:g} ms"
            )
        if changed:
            lo, hi = min(changed), max(changed)
            rng = f"{lo:g} ms" if lo == hi else f"{lo:g} to {hi:g} ms"
            parts.append(
                f"sampling interval: requested {cfg.sampling_interval_ms:g} ms, revised {rng} "
                f"on {len(changed)} of {len(sampling)} nodes"
            )
        log.info("OPC UA %s: the server revised the %s", self.name, "; the ".join(parts))

    async def _consume(self, sub: Subscription, conv: Converter, lost: asyncio.Event) -> None:
        async for ev in sub:
            if isinstance(ev, DataChangeEvent):
                item = ev.data.monitored_item
                self._emit(item.ClientHandle, conv.sample(item.ClientHandle, item.Value))
            elif isinstance(ev, StatusChangeEvent) and not ev.notification.Status.is_good():
                log.warning(
                    "OPC UA %s: subscription status %s", self.name, _status_name(ev.notification.Status)
                )
                lost.set()
                return
        lost.set()

    # -- polling mode ------------------------------------------------------------------------
    async def _poll(self, client: Client, conv: Converter, lost: asyncio.Event) -> None:
        cfg = self.config
        active = list(range(len(self.tags)))
        seen: dict[int, tuple[Any, Any, Any]] = {}
        interval = cfg.poll_interval_ms / 1000
        self.stats.connected = True  # up = collecting: the first read follows at once
        while not lost.is_set():
            started = time.monotonic()
            gone: set[int] = set()
            for i in range(0, len(active), cfg.read_batch_size):
                chunk = active[i : i + cfg.read_batch_size]
                values = await client.uaclient.read_attributes(
                    [ua.NodeId.from_string(self.tags[j].node_id) for j in chunk], ua.AttributeIds.Value
                )
                for j, dv in zip(chunk, values, strict=True):
                    name = _status_name(dv.StatusCode) if dv.StatusCode is not None else "Good"
                    if name in _VANISHED:
                        self._skip(self.tags[j], name)
                        gone.add(j)
                        continue
                    key = (dv.SourceTimestamp, dv.Value.Value if dv.Value is not None else None, name)
                    if seen.get(j) != key:
                        seen[j] = key
                        self._emit(j, conv.sample(j, dv))
            active = [j for j in active if j not in gone]
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        raise ConnectionLost(f"OPC UA session to {cfg.endpoint} lost")
