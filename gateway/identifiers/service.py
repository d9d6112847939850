"""Registration and resolution as gateway tasks.

:class:`Registrar` takes codes as they appear (each device's configured identifier at
start, product/batch codes from code readers), queues them durably and registers them
at the secondary node in the background: batches of up to ``batch_size``, retried with
backoff while the node or the link is down, "already exists" counted as success, a
timed-out attempt settled by querying the code before sending it again. A code the node
refuses by its rules is kept as ``failed`` with the reason (``edgegw id pending``).

:class:`ResolverCache` resolves codes through the Handle REST form and keeps each answer
for the TTL the node gives (bounded by ``cache_min_ttl``/``cache_max_ttl``), so samples
can be tagged with registered metadata without calling the node for every sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.config import IdentifiersConfig, IdValueConfig
from gateway.httpserve import Family
from gateway.identifiers.client import NodeClient, NodeError, Record, Value
from gateway.identifiers.codes import CodeError, normalise
from gateway.identifiers.queue import Entry, RegistrationQueue

log = logging.getLogger("edgegw.identifiers")
#: values registered with the gateway's own code when ``values.gateway`` is not set
GATEWAY_VALUES = (
    IdValueConfig(index=2001, type="IMEI", value="{imei}"),
    IdValueConfig(index=2002, type="ICCID", value="{iccid}"),
    IdValueConfig(index=2003, type="EDGEGW_ID", value="{gateway}"),
)


def node_client(cfg: IdentifiersConfig) -> NodeClient | None:
    node = cfg.node
    if node is None:
        return None

    def password() -> str:
        pw = node.password()
        if pw is None:
            raise NodeError("auth", f"no password for the identifier node in "
                            f"{node.password_env or node.password_file}")
        return pw

    return NodeClient(node.url, node.username, password, login=node.login,
                      timeout=node.timeout)


class Registrar:
    def __init__(self, cfg: IdentifiersConfig, queue: RegistrationQueue,
                 client: NodeClient | None, context: dict[str, str]) -> None:
        self.cfg = cfg
        self.queue = queue
        self.client = client
        self.context = context  # gateway, site: for value templates
        self._wake = asyncio.Event()
        self._logged: set[str] = set()
        self.invalid = 0  # codes that break the grammar (not queued)

    def record(self, kind: str, code: str, **fields: str | None) -> Record:
        values = []
        configured = self.cfg.values.get(kind)  # type: ignore[call-overload]
        if configured is None and kind == "gateway":
            configured = GATEWAY_VALUES
        known = {k: v for k, v in {**self.context, **fields}.items() if v is not None}
        for v in configured or ():
            try:
                text = v.value.format(code=code, kind=kind, **known)
            except KeyError as exc:  # not known for this code (no modem: no {imei})
                log.debug("%s: value %d not registered: no %s", code, v.index, exc)
                continue
            except (ValueError, IndexError):
                text = v.value
            values.append(Value(v.index, v.type, text[:255]))
        return Record(code, self.cfg.template_version, tuple(values))

    def submit(self, kind: str, code: str, **fields: str | None) -> bool:
        """Queue ``code`` for registration (once); False if not queued."""
        if kind not in self.cfg.register_:
            return False
        try:
            code = normalise(code)
        except CodeError as exc:
            self.invalid += 1
            self._once(f"invalid:{kind}", f"{kind} code not registered: {exc}")
            return False
        new = self.queue.submit(kind, self.record(kind, code, **fields))
        if new:
            self._wake.set()
        return new

    def record_update(self, kind: str, code: str, extra: tuple[Value, ...],
                      **fields: str | None) -> bool:
        """The code's data is now its configured values plus ``extra`` (a product's
        record): the code is registered (if it is not yet) with its configured values,
        then its values are replaced with the node's update call. False if not queued."""
        if kind not in self.cfg.register_:
            return False
        self.submit(kind, code, **fields)  # registered first (a no-op if queued already)
        try:
            code = normalise(code)
        except CodeError:
            return False  # counted and logged by submit
        base = self.record(kind, code, **fields)
        taken = {v.index for v in extra}
        self.queue.put_update(kind, Record(
            code, base.template_version,
            (*(v for v in base.values if v.index not in taken), *extra)))
        self._wake.set()
        return True

    def _once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s (logged once)", message)

    def _backoff(self, attempts: int, extra: float | None = None) -> float:
        r = self.cfg.retry
        return float(min(r.max, r.initial * 2 ** min(attempts, 20))) + (extra or 0.0)

    async def run(self) -> None:
        """Register due codes until cancelled."""
        if self.client is None:
            return
        while True:
            due = await asyncio.to_thread(self.queue.due, self.cfg.batch_size)
            if due:
                await self._attempt(due)
                continue
            updates = await asyncio.to_thread(self.queue.updates_due, self.cfg.batch_size)
            if updates:
                await self._update(updates)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def _attempt(self, entries: list[Entry]) -> None:
        assert self.client is not None
        client = self.client
        now = time.time()
        settled: set[str] = set()
        try:
            # a timed-out attempt may have worked: ask before sending again
            for e in entries:
                if e.state == "unknown" and \
                        await asyncio.to_thread(client.detail, e.handle) is not None:
                    await asyncio.to_thread(self.queue.done, e.handle)
                    settled.add(e.handle)
            todo = [e for e in entries if e.handle not in settled]
            if not todo:
                return
            if len(todo) == 1:
                results = {todo[0].handle: await asyncio.to_thread(client.register,
                                                                   todo[0].record)}
            else:
                results = await asyncio.to_thread(client.batch_create,
                                                  [e.record for e in todo])
        except NodeError as exc:
            if exc.kind == "rejected" and len(entries) == 1:
                await asyncio.to_thread(self.queue.failed, entries[0].handle, str(exc))
                self._once(f"rejected:{entries[0].handle}", str(exc))
                return
            self._once(f"node:{exc.kind}", f"identifier node: {exc}; registrations wait "
                       "and are retried")
            for e in entries:
                if e.handle not in settled:
                    await asyncio.to_thread(
                        self.queue.retry, e.handle, str(exc),
                        now + self._backoff(e.attempts, exc.retry_after),
                        exc.kind == "unknown" or e.state == "unknown")
            return
        for e in todo:
            res = results.get(e.handle, "no answer for this code")
            if res in ("created", "exists"):
                await asyncio.to_thread(self.queue.done, e.handle)
            else:
                await asyncio.to_thread(self.queue.failed, e.handle, res)
                self._once(f"rejected:{e.handle}", f"{e.handle}: refused by the node: {res}")


    async def _update(self, entries: list[Entry]) -> None:
        """Replace registered codes' values, one update call each (the node refuses
        the whole record if one value breaks its template: kept as refused, said once)."""
        assert self.client is not None
        now = time.time()
        for i, e in enumerate(entries):
            try:
                res = await asyncio.to_thread(self.client.update, e.record)
            except NodeError as exc:
                if exc.kind == "rejected":
                    await asyncio.to_thread(self.queue.update_failed, e.handle, str(exc))
                    self._once(f"update-rejected:{e.kind}", f"{exc}; the code stays "
                               "registered with its configured values (does the node's "
                               "template have the record's indexes? docs/traceability.md)")
                    continue
                self._once(f"node:{exc.kind}", f"identifier node: {exc}; updates wait "
                           "and are retried")
                for rest in entries[i:]:
                    await asyncio.to_thread(self.queue.update_retry, rest.handle, str(exc),
                                            now + self._backoff(rest.attempts,
                                                                exc.retry_after))
                return
            if res == "updated":
                await asyncio.to_thread(self.queue.update_done, e.record)
            else:  # registered here, unknown there (deleted?): register it again first
                await asyncio.to_thread(self.queue.retry, e.handle, "not at the node", now)


class ResolverCache:
    def __init__(self, client: NodeClient, min_ttl: float, max_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.min_ttl, self.max_ttl = min_ttl, max_ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.lookups = 0  # calls to the node

    async def resolve(self, code: str) -> dict[str, Any] | None:
        hit = self._cache.get(code)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        self.lookups += 1
        doc = await asyncio.to_thread(self.client.resolve, code)
        if doc is None:  # not (yet) registered: ask again next time
            return None
        ttls = [int(t) for v in doc.get("values", []) if isinstance(v, dict)
                for t in [v.get("ttl", self.max_ttl)]
                if isinstance(t, int | float) and not isinstance(t, bool)
                and 0 <= t < 2**31]
        ttl = min(ttls) if ttls else self.min_ttl
        self._cache[code] = (self.clock() + min(self.max_ttl, max(self.min_ttl, ttl)), doc)
        return doc

    @staticmethod
    def value_of(doc: dict[str, Any] | None, index: int) -> str | None:
        for v in (doc or {}).get("values", []):
            if isinstance(v, dict) and v.get("index") == index:
                data = v.get("data")
                return str(data.get("value")) if isinstance(data, dict) else None
        return None


class IdentifierService:
    """What the gateway runs: the registrar, and resolution for enrichment."""

    def __init__(self, cfg: IdentifiersConfig, queue_path: str, gateway: str,
                 site: str) -> None:
        self.cfg = cfg
        self.client = node_client(cfg)
        self.queue = RegistrationQueue(queue_path)
        self.registrar = Registrar(cfg, self.queue, self.client,
                                   {"gateway": gateway, "site": site})
        self.resolver = ResolverCache(self.client, cfg.cache_min_ttl, cfg.cache_max_ttl) \
            if self.client is not None and cfg.enrich else None
        self._tasks: set[asyncio.Task[None]] = set()

    def gateway(self, code: str, **attributes: str | None) -> None:
        """The gateway's own code, with its attributes (``imei``, ``iccid``)."""
        self.registrar.submit("gateway", code, **attributes)

    def device(self, device_id: str, profile: str, code: str | None) -> None:
        if code:
            self.registrar.submit("device", code, device=device_id, profile=profile)

    def context_changed(self, kind: str, code: str, targets: list[Any]) -> None:
        """A code reader read ``code``: register it, and tag ``targets`` (pipelines)
        with the metadata the node holds for it (``enrich``)."""
        for t in targets:
            self.registrar.submit(kind, code, device=t.device.id, profile=t.device.profile_name)
        if self.resolver is not None and kind in self.cfg.enrich:
            task = asyncio.get_running_loop().create_task(
                self._enrich(kind, code, targets), name=f"enrich:{code}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def trace_record(self, kind: str, code: str, device_id: str, profile: str,
                     values: tuple[Value, ...]) -> None:
        """A product's (or batch's) record at a machine: the code's data at the node."""
        self.registrar.record_update(kind, code, values, device=device_id, profile=profile)

    async def _enrich(self, kind: str, code: str, targets: list[Any]) -> None:
        assert self.resolver is not None
        names = self.cfg.enrich.get(kind, {})  # type: ignore[call-overload]
        for _ in range(10):  # a new code may not be registered yet
            try:
                doc = await self.resolver.resolve(code)
            except (NodeError, CodeError) as exc:
                log.debug("resolve %s: %s", code, exc)
                doc = None
            if doc is not None:
                for index, name in names.items():
                    value = self.resolver.value_of(doc, index)
                    if value is not None:
                        for t in targets:
                            t.set_context(name, value)
                return
            await asyncio.sleep(3.0)

    # -- Service (gateway/services.py) ---------------------------------------------------
    name = "identifiers"

    async def run(self) -> None:
        await self.registrar.run()

    def stop(self) -> None:
        pass  # registrations are durable: it is cancelled, the queue keeps them

    def status(self) -> dict[str, object]:
        return {}

    def metrics(self) -> list[Family]:
        q = self.queue.counts()
        u = self.queue.update_counts()
        return [Family("identifier_registrations", "gauge",
                       "codes in the registration queue, by state",
                       [({"state": k}, float(v)) for k, v in sorted(q.items())]
                       or [({"state": "done"}, 0.0)]),
                Family("identifier_updates", "gauge",
                       "updates of registered codes' data (product records), by state",
                       [({"state": k}, float(v)) for k, v in sorted(u.items())]
                       or [({"state": "done"}, 0.0)])]

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        self.queue.close()
