"""OPC UA client driver (asyncua): bulk reads or subscriptions, secure channels.

Polling reads every point of a poll group in ReadRequests of at most the server's
``MaxNodesPerRead`` nodes; each value keeps its StatusCode (mapped to quality) and its
SourceTimestamp (read.py). Subscription mode creates one subscription per poll group
with one monitored item per point; each PublishResponse becomes one reading, fed to the
same pipeline as polled readings (subscribe.py). The session, its security and what a
refusal means are session.py; the node checks after connecting, nodetypes.py; browsing,
browse.py.

The gateway owns reconnection: asyncua's own auto-reconnect stays off. When the session
is lost (asyncua's watchdog, a failed request, a subscription timing out) the driver
raises DeviceUnreachable; the scheduler marks the device offline (every point bad),
backs off, reconnects and calls :meth:`OpcuaDriver.stream` again, which re-creates the
subscriptions; the server then sends every current value, so the stream resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence

from asyncua import Client, ua

from drivers.base import Device, DriverContext, DriverMetric
from drivers.opcua import fastdecode
from drivers.opcua.address import resolve
from drivers.opcua.browse import Browsed, lines, walk
from drivers.opcua.config import Opcua
from drivers.opcua.gate import gate
from drivers.opcua.nodetypes import inspect
from drivers.opcua.read import (
    ReadPlan,
    decode,
    decode_columns,
    decode_fast,
    name_enums,
    read_chunk,
)
from drivers.opcua.read import plan as read_plan
from drivers.opcua.session import NETWORK, SESSION_LOST, Session, why
from drivers.opcua.session import close as close_session
from drivers.opcua.subscribe import Feed, Publisher, Queue, subscribe
from drivers.opcua.values import to_variant, variant_type_of
from gateway.errors import DeviceUnreachable, WriteRejected
from gateway.model import Quality, Reading, Value
from gateway.profiles import OpcuaPoint, OpcuaSettings, Point

log = logging.getLogger("edgegw.opcua")
# asyncua logs connection trouble at WARNING/ERROR with tracebacks; the gateway reports
# device faults itself (once per fault, with a summary)
logging.getLogger("asyncua").setLevel(logging.CRITICAL)
fastdecode.install()


class OpcuaDriver:
    """Driver for one OPC UA server (one session)."""

    def __init__(self, device: Device, ctx: DriverContext) -> None:
        conn = device.connection
        assert isinstance(conn, Opcua)
        self.device = device
        self.conn = conn
        self.ctx = ctx
        self.session = Session(conn, ctx, device.id)
        self.streaming = conn.mode == "subscribe"
        self.source_times = conn.timestamps == "source" or (
            conn.timestamps == "auto" and self.streaming)
        self.settings = device.profile.opcua or OpcuaSettings()
        self.points = [p for p in device.profile.expanded_points() if isinstance(p, OpcuaPoint)]
        self.by_name = {p.name: p for p in self.points}
        self._client: Client | None = None
        self._ids: dict[str, ua.NodeId | str] = {}
        self._plans: dict[int, tuple[Sequence[Point], ReadPlan]] = {}
        self._types: dict[str, ua.VariantType] = {}
        self._lost: asyncio.Event = asyncio.Event()
        self._lost_reason = ""
        self._ready: asyncio.Event | None = None  # the stream's wake-up, while it runs
        self.max_per_read = conn.max_nodes_per_read or 1000
        self.gaps = 0  # notifications missed (sequence number jumps)
        #: enumeration points -> value -> name (from the server, or the profile)
        self._enums: dict[str, dict[int, str]] = {}
        self._warned: set[tuple[str, str]] = set()  # (point, warning) logged once

    # -- connection --------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._client is not None and not self._lost.is_set()

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        self._lost = asyncio.Event()
        self._lost_reason = ""

        async def lost(exc: Exception) -> None:
            self._session_lost(f"session lost: {why(exc)}")

        client = self._client = await self.session.open(lost)
        try:
            await self._after_connect(client)
        except (*NETWORK, ua.UaError) as exc:
            await self.close()
            raise DeviceUnreachable(f"{self.conn.endpoint}: setup failed: {why(exc)}") from None

    async def _after_connect(self, client: Client) -> None:
        if self.conn.max_nodes_per_read is None:
            limit = await client.get_node(
                ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
            ).read_value()
            self.max_per_read = int(limit) if limit else 1000
        self._ids = await resolve(client, self.points, self.settings)
        self._plans.clear()
        self._types.clear()
        for name, reason in self._ids.items():
            if isinstance(reason, str):
                log.warning("device %s: point %s: %s", self.device.id, name, reason)
        self._enums = await inspect(client, self.points, self._ids, self.max_per_read,
                                    self._warn)

    def _warn(self, point: str, reason: str) -> None:
        if (point, reason) not in self._warned:
            self._warned.add((point, reason))
            log.warning("device %s: point %s: %s", self.device.id, point, reason)

    def _session_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()
            if self._ready is not None:  # wake the stream
                self._ready.set()

    def _unreachable(self, exc: BaseException) -> DeviceUnreachable:
        self._session_lost(f"session lost: {why(exc)}")
        return DeviceUnreachable(self._lost_reason)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_session(client)

    def _require(self) -> Client:
        if self._client is None or self._lost.is_set():
            raise DeviceUnreachable(self._lost_reason or "not connected")
        return self._client

    # -- polling -----------------------------------------------------------------------
    def _plan(self, points: Sequence[Point]) -> ReadPlan:
        cached = self._plans.get(id(points))
        if cached is not None and cached[0] is points:
            return cached[1]
        plan = read_plan(points, self._ids, self.max_per_read)
        self._plans[id(points)] = (points, plan)
        return plan

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        client = self._require()
        plan = self._plan(points)
        values: list[Value] = []
        status: dict[int, tuple[Quality, str]] = {}
        # source times are decoded only when they are used
        times: list[float] | None = [] if self.source_times else None
        sink: list[float] = [] if times is None else times
        arrays = False
        for (first, _), body in zip(plan.chunks, plan.bodies, strict=True):
            try:
                results = await read_chunk(client, body)
            except ua.UaStatusCodeError as exc:
                if exc.code in SESSION_LOST:
                    raise self._unreachable(exc) from None
                reason = ua.StatusCode(exc.code).name
                return [Reading(plan.names, [None] * len(plan.names), time.time(), reason)]
            except (*NETWORK, ua.UaError) as exc:
                raise self._unreachable(exc) from None
            now = time.time()
            if isinstance(results, fastdecode.Columns):
                decode_columns(results, first, values, status, times, now)
                continue
            for j, dv in enumerate(results, first):
                if dv.__class__ is tuple:
                    decode_fast(dv, j, values, status, sink, now)
                else:
                    arrays |= decode(dv, j, values, status, sink, now)
        for i, reason in plan.missing.items():
            values[i] = None
            status[i] = (Quality.BAD, reason)
        if self._enums:
            name_enums(self._enums, plan.names, values, status)
        # the batch time is the read time; with source timestamps each value that
        # differs keeps its own (see gateway.pipeline). Arrays are scaled element by
        # element: a status dict (even empty) has the pipeline look at each value
        return [Reading(plan.names, values, time.time(),
                        status=status if status or arrays else None,
                        times=times)]

    def explain(self, points: Sequence[Point]) -> list[str]:
        if self.streaming:
            return [f"subscription: one monitored item per point, {len(points)} item(s): "
                    + " ".join(p.name for p in points)]
        names = [p.name for p in points]
        return [f"Read of {len(names[i : i + self.max_per_read])} node(s) (MaxNodesPerRead "
                f"{self.max_per_read}): {' '.join(names[i : i + self.max_per_read])}"
                for i in range(0, len(names), self.max_per_read)]

    def metrics(self) -> list[DriverMetric]:
        return [DriverMetric("opcua_notifications_lost_total", "counter", "subscription "
                             "notifications the server's sequence numbers say were lost",
                             self.gaps)]

    # -- subscriptions -----------------------------------------------------------------
    async def stream(
        self, groups: Mapping[str, tuple[float, Sequence[Point]]]
    ) -> AsyncIterator[tuple[str, list[Reading]]]:
        client = self._require()
        queue: Queue = deque()
        # one event for "a notification is queued" and "the session is lost"
        ready = self._ready = asyncio.Event()
        feeds: dict[int, Feed] = {}
        for group, (period, points) in groups.items():
            await self._subscribe(client, group, period, points, queue, ready, feeds)
            # the first notification comes one publishing interval later (30 s for a
            # slow group): read the current values now so every point is known at once
            queue.append((group, await self.read(points)))
        publisher = asyncio.create_task(self._publish(client, feeds),
                                        name=f"opcua-publish:{self.device.id}")
        # connection.gather: the answers read at the ticks of a clock shared by the devices
        protocol = client.uaclient.protocol
        transport: asyncio.Transport | None = protocol.transport if protocol else None
        leave = gate(self.conn.gather).join(transport) \
            if self.conn.gather and transport is not None else None
        try:
            while True:
                while queue:
                    yield queue.popleft()
                ready.clear()
                if self._lost.is_set():
                    raise DeviceUnreachable(self._lost_reason)
                await ready.wait()
        finally:
            self._ready = None
            publisher.cancel()
            if leave is not None:
                leave()

    async def _publish(self, client: Client, feeds: Mapping[int, Feed]) -> None:
        """The subscriptions' Publish loop; its end is the session's."""
        try:
            await Publisher(client, feeds, self._session_lost).run()
        except asyncio.CancelledError:
            raise
        except (*NETWORK, ua.UaError) as exc:
            self._session_lost(f"session lost: {why(exc)}")

    async def _subscribe(self, client: Client, group: str, period: float,
                         points: Sequence[Point], queue: Queue, ready: asyncio.Event,
                         feeds: dict[int, Feed]) -> None:
        names = [p.name for p in points]
        feed = Feed(self.device.id, group, names, queue, ready, self._enums,
                    self.source_times, self._gap, self._session_lost)
        try:
            sub, missing = await subscribe(client, self.conn, period, points, self._ids)
        except (*NETWORK, ua.UaError) as exc:  # UaStatusCodeError is a UaError
            raise self._unreachable(exc) from None
        feeds[sub] = feed
        if missing:
            now = time.time()
            pts = tuple(names[i] for i in missing)
            status = {j: (Quality.BAD, missing[i]) for j, i in enumerate(missing)}
            queue.append((group, [Reading(pts, [None] * len(pts), now, None, status,
                                          [now] * len(pts))]))
            for i, reason in missing.items():
                log.warning("device %s: point %s: %s", self.device.id, names[i], reason)

    def _gap(self, lost: int) -> None:
        self.gaps += lost

    # -- writes and browsing -----------------------------------------------------------
    async def write(self, point: Point, value: Value) -> None:
        if not isinstance(point, OpcuaPoint):
            raise TypeError(f"{point.name} is not an OPC UA point")
        if point.access != "rw":
            raise WriteRejected(f"point '{point.name}' is read-only (access: r)")
        client = self._require()
        nid = self._ids.get(point.name)
        if not isinstance(nid, ua.NodeId):
            raise WriteRejected(f"{point.name}: {nid or 'not resolved'}")
        raw = value
        if point.scaled and isinstance(value, int | float) and not isinstance(value, bool):
            raw = (float(value) - point.offset) / point.scale
        try:
            vtype = self._types.get(point.name)
            if vtype is None:
                dtype = await client.get_node(nid).read_data_type()
                vtype = self._types[point.name] = variant_type_of(dtype)
            if vtype not in (ua.VariantType.Float, ua.VariantType.Double) and \
                    isinstance(raw, float) and point.scaled:
                raw = round(raw)
            variant = to_variant(point.name, raw, vtype)
            wv = ua.WriteValue()
            wv.NodeId = nid
            wv.AttributeId = ua.AttributeIds.Value
            wv.Value = ua.DataValue(variant)
            params = ua.WriteParameters()
            params.NodesToWrite = [wv]
            results = await client.uaclient.write(params)
        except ua.UaStatusCodeError as exc:
            if exc.code in SESSION_LOST:
                raise self._unreachable(exc) from None
            raise WriteRejected(f"{point.name}: {ua.StatusCode(exc.code).name}") from None
        except (*NETWORK, ua.UaError) as exc:
            raise self._unreachable(exc) from None
        if not results[0].is_good():
            raise WriteRejected(f"{point.name}: the server refused: {results[0].name}")

    async def browse(self, start: str | None = None, depth: int = 4
                     ) -> tuple[list[str], list[Browsed], ua.NodeId]:
        """The address space below ``start`` (a NodeId; default: the profile's root):
        the printed lines (namespace table, then one line per node), the nodes, and the
        start's NodeId."""
        from drivers.opcua.address import AddressError, parse_node

        client = self._require()
        try:
            ns = await client.get_namespace_array()
            text = start or self.settings.root
            try:
                root = parse_node(text, ns)
            except AddressError as exc:
                raise DeviceUnreachable(f"browse: {exc}") from None
            nodes = await walk(client, root, depth)
        except ua.UaStatusCodeError as exc:
            raise DeviceUnreachable(f"browse failed: {ua.StatusCode(exc.code).name}") from None
        except (*NETWORK, ua.UaError) as exc:
            raise self._unreachable(exc) from None
        return lines(nodes, ns, text), nodes, root

    async def namespaces(self) -> list[str]:
        return list(await self._require().get_namespace_array())
