"""OPC UA client driver (asyncua): bulk reads or subscriptions, secure channels.

Polling reads every point of a poll group in ReadRequests of at most the server's
``MaxNodesPerRead`` nodes; each value keeps its StatusCode (mapped to quality) and its
SourceTimestamp. Subscription mode creates one subscription per poll group (publishing
interval = the group's period) with one monitored item per point (sampling interval,
queue size, and the point's deadband as a server-side DataChangeFilter); each
PublishResponse becomes one reading, fed to the same pipeline as polled readings.

The gateway owns reconnection: asyncua's own auto-reconnect stays off. When the session
is lost (asyncua's watchdog, a failed request, a subscription timing out) the driver
raises DeviceUnreachable; the scheduler marks the device offline (every point bad),
backs off, reconnects and calls :meth:`OpcuaDriver.stream` again, which re-creates the
subscriptions; the server then sends every current value, so the stream resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies

from drivers.base import Device, DriverContext, DriverMetric
from drivers.opcua import fastdecode
from drivers.opcua.address import resolve
from drivers.opcua.browse import Browsed, lines, walk
from drivers.opcua.config import Opcua
from drivers.opcua.pki import TrustList, UntrustedCertificate, ensure_certificate
from drivers.opcua.values import epoch, quality_of, to_value, to_variant, variant_type_of
from gateway.errors import DeviceUnreachable, WriteRejected
from gateway.model import Quality, Reading, Value
from gateway.profiles import OpcuaPoint, OpcuaSettings, Point

log = logging.getLogger("edgegw.opcua")
# asyncua logs connection trouble at WARNING/ERROR with tracebacks; the gateway reports
# device faults itself (once per fault, with a summary)
logging.getLogger("asyncua").setLevel(logging.CRITICAL)

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"None": ua.MessageSecurityMode.None_, "Sign": ua.MessageSecurityMode.Sign,
         "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
#: service results that mean the session (not one node) is gone
SESSION_LOST = frozenset({
    ua.StatusCodes.BadSessionIdInvalid, ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadSessionNotActivated, ua.StatusCodes.BadSecureChannelIdInvalid,
    ua.StatusCodes.BadSecureChannelClosed, ua.StatusCodes.BadConnectionClosed,
    ua.StatusCodes.BadServerHalted, ua.StatusCodes.BadShutdown, ua.StatusCodes.BadTimeout,
    ua.StatusCodes.BadCommunicationError, ua.StatusCodes.BadNoCommunication,
    ua.StatusCodes.BadNoSubscription, ua.StatusCodes.BadSubscriptionIdInvalid,
})
_LOGIN = {
    ua.StatusCodes.BadUserAccessDenied: "user name or password refused",
    ua.StatusCodes.BadIdentityTokenRejected: "identity refused",
    ua.StatusCodes.BadIdentityTokenInvalid: "identity type not accepted by the server",
    ua.StatusCodes.BadCertificateUntrusted: "the server does not trust our certificate",
    ua.StatusCodes.BadSecurityChecksFailed: "security checks failed (does the server "
    "trust our certificate?)",
    ua.StatusCodes.BadCertificateInvalid: "certificate refused as invalid",
}
_FLOAT = ua.VariantType.Float
#: the VariantType a profile's ``type`` means
_DECLARED: dict[str, ua.VariantType] = {
    "bool": ua.VariantType.Boolean, "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16, "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32, "int64": ua.VariantType.Int64,
    "uint64": ua.VariantType.UInt64, "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double, "string": ua.VariantType.String,
}
_NETWORK = (OSError, TimeoutError, ConnectionError, asyncio.TimeoutError)
_CLIENT_HANDLE_BASE = 1000  # monitored item handle = base + index in the group
fastdecode.install()


@dataclass(slots=True)
class _ReadPlan:
    names: tuple[str, ...]
    chunks: list[tuple[int, list[ua.ReadValueId]]]  # (first index, nodes)
    missing: dict[int, str]  # index -> why the node is not resolved


class OpcuaDriver:
    """Driver for one OPC UA server (one session)."""

    def __init__(self, device: Device, ctx: DriverContext) -> None:
        conn = device.connection
        assert isinstance(conn, Opcua)
        self.device = device
        self.conn = conn
        self.ctx = ctx
        self.streaming = conn.mode == "subscribe"
        self.source_times = conn.timestamps == "source" or (
            conn.timestamps == "auto" and self.streaming)
        self.settings = device.profile.opcua or OpcuaSettings()
        self.points = [p for p in device.profile.expanded_points() if isinstance(p, OpcuaPoint)]
        self.by_name = {p.name: p for p in self.points}
        self._client: Client | None = None
        self._ids: dict[str, ua.NodeId | str] = {}
        self._plans: dict[int, tuple[Sequence[Point], _ReadPlan]] = {}
        self._types: dict[str, ua.VariantType] = {}
        self._lost: asyncio.Event = asyncio.Event()
        self._lost_reason = ""
        self.max_per_read = conn.max_nodes_per_read or 1000
        self.gaps = 0  # notifications missed (sequence number jumps)
        #: enumeration points -> value -> name (from the server, or the profile)
        self._enums: dict[str, dict[int, str]] = {}
        #: points whose DataType is not built in -> its BrowseName (a structure's type)
        self._dtnames: dict[str, str] = {}
        self._warned: set[tuple[str, str]] = set()  # (point, warning) logged once

    # -- connection --------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._client is not None and not self._lost.is_set()

    def _pki(self) -> Path:
        return self.ctx.state_dir / "pki"

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        conn = self.conn
        client = Client(conn.endpoint, timeout=conn.timeout,
                        watchdog_intervall=max(1.0, conn.timeout))
        client.application_uri = f"urn:edgegw:{self.ctx.gateway_id}"
        client.name = client.description = f"edgegw {self.ctx.gateway_id}"
        client.product_uri = "urn:edgegw"
        client.session_timeout = int(conn.session_timeout * 1000)
        self._lost = asyncio.Event()
        self._lost_reason = ""

        async def lost(exc: Exception) -> None:
            self._session_lost(f"session lost: {_why(exc)}")

        client.connection_lost_callback = lost
        try:
            await self._secure(client)
            if conn.username is not None:
                client.set_user(conn.username)
                password = conn.password()
                if password is not None:
                    client.set_password(password)
            elif conn.user_certificate is not None and conn.user_key is not None:
                await client.load_client_certificate(str(self.ctx.resolve(conn.user_certificate)))
                await client.load_private_key(self.ctx.resolve(conn.user_key))
            await client.connect()
        except UntrustedCertificate:
            raise
        except ua.UaStatusCodeError as exc:
            with contextlib.suppress(*_NETWORK, ua.UaError):
                await client.disconnect()
            why = _LOGIN.get(exc.code)
            who = f" (user {conn.username!r})" if conn.username and why else ""
            raise DeviceUnreachable(
                f"{conn.endpoint}: {why or 'connect refused'}{who}: "
                f"{ua.StatusCode(exc.code).name}") from None
        except (*_NETWORK, ua.UaError) as exc:
            raise DeviceUnreachable(f"{conn.endpoint}: connect failed: {_why(exc)}") from None
        except AssertionError:
            # asyncua 2.1 asserts that the OpenSecureChannel answer is a response: a server
            # that refuses our certificate there answers with a ServiceFault instead
            await _drop(client)
            if self.conn.security.policy == "None":
                raise DeviceUnreachable(f"{conn.endpoint}: the server refused the secure "
                                        "channel (a ServiceFault to OpenSecureChannel)") from None
            raise DeviceUnreachable(
                f"{conn.endpoint}: the server does not trust our certificate (it refused "
                f"the secure channel with a ServiceFault): add {self._own_cert()} to the "
                "server's trusted certificates") from None
        except Exception as exc:
            # is unreachable with the reason, the gateway goes on (issue 17)
            await _drop(client)
            log.debug("device %s: connect failed", self.device.id, exc_info=True)
            raise DeviceUnreachable(f"{conn.endpoint}: connect failed: "
                                    f"{type(exc).__name__}: {exc}") from None
        self._client = client
        try:
            await self._after_connect(client)
        except (*_NETWORK, ua.UaError) as exc:
            await self.close()
            raise DeviceUnreachable(f"{conn.endpoint}: setup failed: {_why(exc)}") from None

    def _own_cert(self) -> Path:
        sec = self.conn.security
        return self.ctx.resolve(sec.certificate) if sec.certificate else \
            self._pki() / "own" / "cert.der"

    async def _secure(self, client: Client) -> None:
        sec = self.conn.security
        if sec.policy == "None":
            return
        pki = self._pki()
        cert = self._own_cert()
        key = self.ctx.resolve(sec.private_key) if sec.private_key else pki / "own" / "key.pem"
        ensure_certificate(cert, key, client.application_uri, f"edgegw {self.ctx.gateway_id}")
        trust = TrustList([self.ctx.resolve(p) for p in sec.trust] or [pki / "trusted"],
                          rejected_dir=pki / "rejected")
        policy = POLICIES[sec.policy]
        endpoints = await client.connect_and_get_server_endpoints()
        mode = MODES[sec.mode]
        match = [e for e in endpoints
                 if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
        if not match:
            offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}"
                              for e in endpoints})
            raise DeviceUnreachable(
                f"{self.conn.endpoint}: no endpoint with {sec.policy}/{sec.mode}; the "
                f"server offers {', '.join(offered)}")
        server_der = _first_cert(match[0].ServerCertificate)
        trust.check(server_der, self.conn.endpoint)
        await client.set_security(policy, str(cert), str(key), server_certificate=server_der,
                                  mode=mode)

    async def _after_connect(self, client: Client) -> None:
        if self.conn.max_nodes_per_read is None:
            limit = await client.get_node(
                ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
            ).read_value()
            self.max_per_read = int(limit) if limit else 1000
        self._ids = await resolve(client, self.points, self.settings)
        self._plans.clear()
        self._types.clear()
        for name, why in self._ids.items():
            if isinstance(why, str):
                log.warning("device %s: point %s: %s", self.device.id, name, why)
        await self._inspect(client)

    async def _inspect(self, client: Client) -> None:
        """Each node's DataType and ValueRank against the profile (a disagreement is
        warned once per point: ``type: bool`` on an Int32 node would yield 2), and the
        names of enumeration points."""
        nodes = [(p, nid) for p in self.points
                 if isinstance(nid := self._ids.get(p.name), ua.NodeId)]
        attrs: list[ua.ReadValueId] = []
        for _, nid in nodes:
            for attr in (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank):
                rv = ua.ReadValueId()
                rv.NodeId = nid
                rv.AttributeId = attr
                attrs.append(rv)
        results: list[ua.DataValue] = []
        for i in range(0, len(attrs), self.max_per_read):
            params = ua.ReadParameters()
            params.NodesToRead = attrs[i : i + self.max_per_read]
            results += await client.uaclient.read(params)
        self._enums = {}
        self._dtnames = {}
        for k, (p, _) in enumerate(nodes):
            dtype = results[2 * k].Value.Value if results[2 * k].Value is not None else None
            rank = results[2 * k + 1].Value.Value if results[2 * k + 1].Value is not None \
                else None
            if not isinstance(dtype, ua.NodeId):
                continue
            assert isinstance(p, OpcuaPoint)
            builtin = dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) \
                and 1 <= dtype.Identifier <= 25
            if not builtin:
                with contextlib.suppress(ua.UaError):
                    qn = await client.get_node(dtype).read_browse_name()
                    self._dtnames[p.name] = qn.Name
            shown = ua.VariantType(dtype.Identifier).name if builtin else \
                self._dtnames.get(p.name, dtype.to_string())
            if p.enumerated:
                await self._enum_names(client, p, dtype, shown)
            elif p.type is not None and (not builtin or
                                         dtype.Identifier != _DECLARED[p.type].value):
                self._warn(p.name, f"declared type {p.type}, but the node's DataType is "
                           f"{shown}: values arrive as the server sends them (fix 'type' in "
                           "the profile)")
            if isinstance(rank, int):
                if rank > 1:
                    self._warn(p.name, f"the node holds a {rank}-dimensional array (ValueRank "
                               f"{rank}): not supported, only one-dimensional arrays")
                elif p.array and rank == -1:
                    self._warn(p.name, "declared array: true, but the node is a scalar "
                               "(ValueRank -1)")
                elif not p.array and rank in (0, 1):
                    self._warn(p.name, f"the node holds an array (ValueRank {rank}): declare "
                               "array: true in the profile")

    def _warn(self, point: str, why: str) -> None:
        if (point, why) not in self._warned:
            self._warned.add((point, why))
            log.warning("device %s: point %s: %s", self.device.id, point, why)

    async def _enum_names(self, client: Client, p: OpcuaPoint, dtype: ua.NodeId,
                          shown: str) -> None:
        if isinstance(p.enum, dict):
            self._enums[p.name] = dict(p.enum)
            return
        names: dict[int, str] = {}
        dt_node = client.get_node(dtype)
        with contextlib.suppress(ua.UaError):
            for child in await dt_node.get_properties():
                qn = await child.read_browse_name()
                if qn.Name == "EnumStrings":
                    texts = await child.read_value()
                    names = {i: str(t.Text) for i, t in enumerate(texts or [])}
                elif qn.Name == "EnumValues":
                    for ev in await child.read_value() or []:
                        names[int(ev.Value)] = str(ev.DisplayName.Text)
        if not names:  # OPC UA 1.04 servers may give only the DataTypeDefinition
            with contextlib.suppress(ua.UaError):
                definition = await dt_node.read_data_type_definition()
                for f in getattr(definition, "Fields", None) or []:
                    names[int(f.Value)] = str(f.Name)
        if not names:
            self._warn(p.name, f"enum: true, but the node's DataType {shown} has no "
                       "EnumStrings, EnumValues or EnumDefinition: give the names in the "
                       "profile (enum: {0: Stopped, 1: Running}); values are sent as their "
                       "digits")
        self._enums[p.name] = names

    def _session_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    def _unreachable(self, exc: BaseException) -> DeviceUnreachable:
        self._session_lost(f"session lost: {_why(exc)}")
        return DeviceUnreachable(self._lost_reason)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(*_NETWORK, ua.UaError, asyncio.CancelledError):
            await asyncio.wait_for(client.disconnect(), timeout=2.0)
        with contextlib.suppress(Exception):
            client.disconnect_socket()

    def _require(self) -> Client:
        if self._client is None or self._lost.is_set():
            raise DeviceUnreachable(self._lost_reason or "not connected")
        return self._client

    # -- polling -----------------------------------------------------------------------
    def _plan(self, points: Sequence[Point]) -> _ReadPlan:
        cached = self._plans.get(id(points))
        if cached is not None and cached[0] is points:
            return cached[1]
        nodes: list[ua.ReadValueId] = []
        missing: dict[int, str] = {}
        for i, p in enumerate(points):
            nid = self._ids.get(p.name, "not an OPC UA point")
            if isinstance(nid, str):
                missing[i] = nid
                nid = ua.NodeId(0, 0)  # placeholder keeps indexes aligned; never read
            rv = ua.ReadValueId()
            rv.NodeId = nid
            rv.AttributeId = ua.AttributeIds.Value
            nodes.append(rv)
        chunks = [(i, nodes[i : i + self.max_per_read])
                  for i in range(0, len(nodes), self.max_per_read)]
        plan = _ReadPlan(tuple(p.name for p in points), chunks, missing)
        self._plans[id(points)] = (points, plan)
        return plan

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        client = self._require()
        plan = self._plan(points)
        values: list[Value] = []
        status: dict[int, tuple[Quality, str]] = {}
        times: list[float] = []
        arrays = False
        for first, chunk in plan.chunks:
            params = ua.ReadParameters()
            params.NodesToRead = chunk
            params.TimestampsToReturn = ua.TimestampsToReturn.Source
            try:
                results = await client.uaclient.read(params)
            except ua.UaStatusCodeError as exc:
                if exc.code in SESSION_LOST:
                    raise self._unreachable(exc) from None
                reason = ua.StatusCode(exc.code).name
                return [Reading(plan.names, [None] * len(plan.names), time.time(), reason)]
            except (*_NETWORK, ua.UaError) as exc:
                raise self._unreachable(exc) from None
            now = time.time()
            for j, dv in enumerate(results, first):
                arrays |= _decode(dv, j, values, status, times, now)
        for i, why in plan.missing.items():
            values[i] = None
            status[i] = (Quality.BAD, why)
        if self._enums:
            _name_enums(self._enums, plan.names, values, status)
        # the batch time is the read time; with source timestamps each value that
        # differs keeps its own (see gateway.pipeline). Arrays are scaled element by
        # element: a status dict (even empty) has the pipeline look at each value
        return [Reading(plan.names, values, time.time(),
                        status=status if status or arrays else None,
                        times=times if self.source_times else None)]

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
        queue: deque[tuple[str, list[Reading]]] = deque()
        ready = asyncio.Event()
        for group, (period, points) in groups.items():
            await self._subscribe(client, group, period, points, queue, ready)
            # the first notification comes one publishing interval later (30 s for a
            # slow group): read the current values now so every point is known at once
            queue.append((group, await self.read(points)))
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            while True:
                while queue:
                    yield queue.popleft()
                ready.clear()
                if self._lost.is_set():
                    raise DeviceUnreachable(self._lost_reason)
                waiter = asyncio.ensure_future(ready.wait())
                await asyncio.wait((waiter, lost), return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            lost.cancel()

    async def _subscribe(self, client: Client, group: str, period: float,  # noqa: C901 - to split with the driver (session, read, subscribe, browse): issue 19, remaining
                         points: Sequence[Point], queue: deque[tuple[str, list[Reading]]],
                         ready: asyncio.Event) -> None:
        names = [p.name for p in points]
        last_seq = [0]
        dev = self.device.id

        def on_publish(result: ua.PublishResult) -> None:
            msg = result.NotificationMessage
            if msg.NotificationData is None:
                return  # keep-alive
            seq = msg.SequenceNumber
            if last_seq[0] and seq > last_seq[0] + 1:
                self.gaps += seq - last_seq[0] - 1
                log.warning("device %s: %d notification(s) of group %s lost",
                            dev, seq - last_seq[0] - 1, group)
            last_seq[0] = seq
            now = time.time()
            for notif in msg.NotificationData:
                if isinstance(notif, fastdecode.FastDataChange):
                    self._fast(notif, names, group, queue, now)
                    ready.set()
                elif isinstance(notif, ua.DataChangeNotification):
                    idx: list[str] = []
                    values: list[Value] = []
                    status: dict[int, tuple[Quality, str]] = {}
                    times: list[float] = []
                    for j, item in enumerate(notif.MonitoredItems):
                        idx.append(names[item.ClientHandle - _CLIENT_HANDLE_BASE])
                        _decode(item.Value, j, values, status, times, now)
                    if idx and self._enums:
                        _name_enums(self._enums, idx, values, status)
                    if idx:
                        queue.append((group, [self._reading(idx, values, status, times,
                                                            now)]))
                        ready.set()
                elif isinstance(notif, ua.StatusChangeNotification):
                    self._session_lost(f"subscription ended: {notif.Status.name}")
                    ready.set()

        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = period * 1000
        params.RequestedLifetimeCount = max(30, int(3 * self.conn.session_timeout / period))
        params.RequestedMaxKeepAliveCount = max(3, int(max(1.0, 5 * period) / period))
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0

        async def callback(result: ua.PublishResult) -> None:
            on_publish(result)

        try:
            sub = await client.uaclient.create_subscription(params, callback)
            items = []
            missing: dict[int, str] = {}
            for i, p in enumerate(points):
                nid = self._ids.get(p.name, "not an OPC UA point")
                if isinstance(nid, str):
                    missing[i] = nid
                    continue
                items.append(self._item(nid, i, p, period))
            mparams = ua.CreateMonitoredItemsParameters()
            mparams.SubscriptionId = sub.SubscriptionId
            mparams.TimestampsToReturn = ua.TimestampsToReturn.Source
            mparams.ItemsToCreate = items
            results = await client.uaclient.create_monitored_items(mparams)
        except ua.UaStatusCodeError as exc:
            raise self._unreachable(exc) from None
        except (*_NETWORK, ua.UaError) as exc:
            raise self._unreachable(exc) from None
        for item, res in zip(items, results, strict=True):
            if not res.StatusCode.is_good():
                i = item.RequestedParameters.ClientHandle - _CLIENT_HANDLE_BASE
                missing[i] = f"monitored item refused ({res.StatusCode.name})"
        if missing:
            now = time.time()
            pts = tuple(names[i] for i in missing)
            status = {j: (Quality.BAD, missing[i]) for j, i in enumerate(missing)}
            queue.append((group, [Reading(pts, [None] * len(pts), now, None, status,
                                          [now] * len(pts))]))
            for i, why in missing.items():
                log.warning("device %s: point %s: %s", dev, names[i], why)
        client.uaclient.ensure_publish_loop()

    def _reading(self, names: list[str], values: list[Value],
                 status: dict[int, tuple[Quality, str]], times: list[float],
                 now: float) -> Reading:
        """A pushed reading: at the newest source time of its values, or at ``now``."""
        # a status dict (even empty): the pipeline looks at each pushed value on its own
        # (a new tuple of names each time; values may be arrays)
        if self.source_times:
            return Reading(tuple(names), values, max(times), None, status, times)
        return Reading(tuple(names), values, now, None, status, None)

    def _fast(self, notif: fastdecode.FastDataChange, names: list[str], group: str,
              queue: deque[tuple[str, list[Reading]]], now: float) -> None:
        """One decoded notification (the fast path) as one reading."""
        idx: list[str] = []
        values: list[Value] = []
        status: dict[int, tuple[Quality, str]] = {}
        times: list[float] = []
        for j, (handle, v, code, ts, vtype) in enumerate(notif.items):
            idx.append(names[handle - _CLIENT_HANDLE_BASE])
            times.append(now if ts is None else ts)
            if code:
                q = quality_of(code)
                if q is not None:
                    status[j] = q
                    if q[0] is Quality.BAD:
                        values.append(None)
                        continue
            values.append(float(f"{v:.7g}") if vtype == fastdecode.FLOAT else v)
        if idx and self._enums:
            _name_enums(self._enums, idx, values, status)
        if idx:
            queue.append((group, [self._reading(idx, values, status, times, now)]))

    def _item(self, nid: ua.NodeId, i: int, p: Point,
              period: float) -> ua.MonitoredItemCreateRequest:
        assert isinstance(p, OpcuaPoint)
        rv = ua.ReadValueId()
        rv.NodeId = nid
        rv.AttributeId = ua.AttributeIds.Value
        mp = ua.MonitoringParameters()
        mp.ClientHandle = _CLIENT_HANDLE_BASE + i
        mp.SamplingInterval = (p.sampling if p.sampling is not None else period) * 1000
        mp.QueueSize = p.queue_size or self.conn.queue_size
        mp.DiscardOldest = True
        if p.deadband is not None:
            f = ua.DataChangeFilter()
            f.Trigger = ua.DataChangeTrigger.StatusValue
            if p.deadband.absolute is not None:
                f.DeadbandType = ua.DeadbandType.Absolute
                # the server compares raw values: undo the profile's scale
                f.DeadbandValue = p.deadband.absolute / abs(p.scale or 1.0)
            else:
                f.DeadbandType = ua.DeadbandType.Percent
                f.DeadbandValue = p.deadband.percent or 0.0
            mp.Filter = f
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = rv
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mp
        return req

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
        except (*_NETWORK, ua.UaError) as exc:
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
        except (*_NETWORK, ua.UaError) as exc:
            raise self._unreachable(exc) from None
        return lines(nodes, ns, text), nodes, root

    async def namespaces(self) -> list[str]:
        return list(await self._require().get_namespace_array())


def _decode(dv: ua.DataValue, i: int, values: list[Value], status: dict[int, tuple[Quality, str]],
            times: list[float], now: float) -> bool:
    """Append one DataValue's value and source time; record non-good quality at ``i``.
    True when the value is an array."""
    t = epoch(dv.SourceTimestamp)
    times.append(now if t is None else t)
    sc = dv.StatusCode
    q = quality_of(sc.value) if sc is not None else None
    var = dv.Value
    v = var.Value if var is not None else None
    if var is not None and var.VariantType is _FLOAT and v is not None:
        # a Float has 7 significant digits; drop binary noise
        v = [float(f"{x:.7g}") for x in v] if isinstance(v, list) else float(f"{v:.7g}")
    if q is not None:
        status[i] = q
        if q[0] is Quality.BAD:
            values.append(None)
            return False
    try:
        value = to_value(v)
    except TypeError as exc:
        values.append(None)
        status[i] = (Quality.BAD, f"unsupported OPC UA value: {exc}")
        return False
    values.append(value)
    return value.__class__ is tuple


def _name_enums(enums: Mapping[str, dict[int, str]], names: Sequence[str],
                values: list[Value], status: dict[int, tuple[Quality, str]]) -> None:
    """Enumeration values as their names; a number without a name as its digits,
    quality uncertain."""
    for j, name in enumerate(names):
        table = enums.get(name)
        if table is None:
            continue
        v = values[j]
        if isinstance(v, int) and not isinstance(v, bool):
            text = table.get(v)
            if text is None:
                values[j] = str(v)
                status.setdefault(j, (Quality.UNCERTAIN, f"no name for enumeration value {v}"))
            else:
                values[j] = text


async def _drop(client: Client) -> None:
    """Close a half-open client after a failed connect (never raises)."""
    with contextlib.suppress(Exception):
        client.disconnect_socket()


def _first_cert(der: bytes) -> bytes:
    """The leaf certificate of a DER chain (a server may send its chain)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.DER)
    except ValueError:
        # a chain: the first certificate's length is in its DER header
        length = int.from_bytes(der[2:4], "big") + 4
        return der[:length]


def _why(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        return str(ua.StatusCode(exc.code).name)
    return str(exc) or type(exc).__name__
