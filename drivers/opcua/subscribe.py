"""Subscriptions: one per poll group (publishing interval = the group's period), one
monitored item per point (sampling interval, queue size, and the point's deadband as a
server-side DataChangeFilter); each PublishResponse becomes one reading.

The session's PublishRequests are the driver's own (:class:`Publisher`, in place of
asyncua's publish loop): precoded requests and PublishResponses decoded in one pass
(fastwire.py), each handed to its group's :class:`Feed`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from asyncua import Client, ua
from asyncua.ua import ua_binary

from drivers.opcua import fastchannel, fastdecode, fastwire
from drivers.opcua.config import Opcua
from drivers.opcua.read import decode, decode_columns, decode_fast, name_enums
from gateway.model import Quality, Reading, Value
from gateway.profiles import OpcuaPoint, Point

log = logging.getLogger("edgegw.opcua")

CLIENT_HANDLE_BASE = 1000  # monitored item handle = base + index in the group
Queue = deque[tuple[str, list[Reading]]]


class Feed:
    """One group's notifications, as readings on the stream's queue."""

    def __init__(self, device: str, group: str, names: list[str], queue: Queue,
                 ready: asyncio.Event, enums: Mapping[str, dict[int, str]],
                 source_times: bool, on_gap: Callable[[int], None],
                 on_end: Callable[[str], None]) -> None:
        self.device = device
        self.group = group
        self.names = names
        self.queue = queue
        self.ready = ready
        self.enums = enums
        self.source_times = source_times
        self.on_gap = on_gap  # notifications lost (a sequence number jump)
        self.on_end = on_end  # the server ended the subscription
        self.last_seq = 0

    def notify(self, seq: int, notifications: list[object]) -> None:
        """One PublishResponse's notifications (with data: not a keep-alive)."""
        if self.last_seq and seq > self.last_seq + 1:
            self.on_gap(seq - self.last_seq - 1)
            log.warning("device %s: %d notification(s) of group %s lost",
                        self.device, seq - self.last_seq - 1, self.group)
        self.last_seq = seq
        now = time.time()
        for notif in notifications:
            if isinstance(notif, fastdecode.FastDataChange):
                self._fast(notif, now)
            elif isinstance(notif, ua.DataChangeNotification):
                self._change(notif, now)
            elif isinstance(notif, ua.StatusChangeNotification):
                self.on_end(f"subscription ended: {notif.Status.name}")
                self.ready.set()

    def _change(self, notif: ua.DataChangeNotification, now: float) -> None:
        """One notification decoded by asyncua."""
        idx: list[str] = []
        values: list[Value] = []
        status: dict[int, tuple[Quality, str]] = {}
        times: list[float] = []
        for j, item in enumerate(notif.MonitoredItems):
            idx.append(self.names[item.ClientHandle - CLIENT_HANDLE_BASE])
            decode(item.Value, j, values, status, times, now)
        self._push(idx, values, status, times, now)

    def _fast(self, notif: fastdecode.FastDataChange, now: float) -> None:
        """One notification decoded by the fast path."""
        cols = notif.columns
        if cols is not None and cols.handles is not None:  # items of one shape
            names = self.names
            idx = [names[h - CLIENT_HANDLE_BASE] for h in cols.handles]
            values: list[Value] = []
            status: dict[int, tuple[Quality, str]] = {}
            times: list[float] = []
            decode_columns(cols, 0, values, status, times, now)
            self._push(idx, values, status, times, now)
            return
        idx = []
        values = []
        status = {}
        times = []
        for j, item in enumerate(notif.items):
            idx.append(self.names[item[0] - CLIENT_HANDLE_BASE])
            decode_fast(item[1:], j, values, status, times, now)
        self._push(idx, values, status, times, now)

    def _push(self, names: list[str], values: list[Value],
              status: dict[int, tuple[Quality, str]], times: list[float],
              now: float) -> None:
        """A pushed reading: at the newest source time of its values, or at ``now``."""
        if not names:
            return
        if len(set(names)) < len(names):
            # a monitored item's queue (queue_size > 1, sampling faster than publishing)
            # delivers several samples of a point in one notification: one reading per
            # sample, oldest first, or a batch (one value per point) would keep the last
            for layer in _layers(names):
                self._push([names[i] for i in layer], [values[i] for i in layer],
                           {k: status[i] for k, i in enumerate(layer) if i in status},
                           [times[i] for i in layer] if times else times, now)
            return
        if self.enums:
            name_enums(self.enums, names, values, status)
        # a status dict (even empty): the pipeline looks at each pushed value on its own
        # (a new tuple of names each time; values may be arrays)
        if self.source_times:
            reading = Reading(tuple(names), values, max(times), None, status, times)
        else:
            reading = Reading(tuple(names), values, now, None, status, None)
        self.queue.append((self.group, [reading]))
        self.ready.set()


def _layers(names: list[str]) -> list[list[int]]:
    """The positions of ``names`` split so that no point repeats within one: the k-th
    sample of every point in the k-th layer (samples keep their order)."""
    layers: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        k = seen.get(n, 0)
        seen[n] = k + 1
        if k == len(layers):
            layers.append([])
        layers[k].append(i)
    return layers


async def subscribe(client: Client, conn: Opcua, period: float, points: Sequence[Point],
                    ids: Mapping[str, ua.NodeId | str]) -> tuple[int, dict[int, str]]:
    """Create the group's subscription and its monitored items: its id, and the points
    that could not be monitored (index -> why). Raises what asyncua raises."""
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = period * 1000
    params.RequestedLifetimeCount = max(30, int(3 * conn.session_timeout / period))
    params.RequestedMaxKeepAliveCount = max(3, int(max(1.0, 5 * period) / period))
    params.MaxNotificationsPerPublish = 0
    params.PublishingEnabled = True
    params.Priority = 0
    sub = await create_subscription(client, params)
    items = []
    missing: dict[int, str] = {}
    for i, p in enumerate(points):
        nid = ids.get(p.name, "not an OPC UA point")
        if isinstance(nid, str):
            missing[i] = nid
            continue
        items.append(item(nid, i, p, period, conn.queue_size))
    mparams = ua.CreateMonitoredItemsParameters()
    mparams.SubscriptionId = sub
    mparams.TimestampsToReturn = ua.TimestampsToReturn.Source
    mparams.ItemsToCreate = items
    results = await client.uaclient.create_monitored_items(mparams)
    for req, res in zip(items, results, strict=True):
        if not res.StatusCode.is_good():
            i = req.RequestedParameters.ClientHandle - CLIENT_HANDLE_BASE
            missing[i] = f"monitored item refused ({res.StatusCode.name})"
    return sub, missing


async def create_subscription(client: Client, params: ua.CreateSubscriptionParameters) -> int:
    """CreateSubscription, without registering it with asyncua's publish loop (the
    driver's :class:`Publisher` serves it); the subscription's id."""
    protocol = client.uaclient.protocol
    if protocol is None:
        raise ConnectionError("not connected")
    request = ua.CreateSubscriptionRequest()
    request.Parameters = params
    data = await protocol.send_request(request)
    response = ua_binary.struct_from_binary(ua.CreateSubscriptionResponse, data)
    response.ResponseHeader.ServiceResult.check()
    return int(response.Parameters.SubscriptionId)


_PUBLISH_REQUEST = ua.ObjectIds.PublishRequest_Encoding_DefaultBinary
#: a Publish the server answers with one of these: no notification yet, ask again
_RETRY = frozenset({ua.StatusCodes.BadTimeout, ua.StatusCodes.BadTooManyPublishRequests})


class Publisher:
    """The session's PublishRequests (one outstanding, as asyncua's own loop keeps) and
    their answers, handed to the feed of their subscription; each response's
    notifications are acknowledged with the next request. Raises what the channel
    raises; a subscription the server no longer has ends it (``on_end``)."""

    def __init__(self, client: Client, feeds: Mapping[int, Feed],
                 on_end: Callable[[str], None]) -> None:
        self.client = client
        self.feeds = feeds
        self.on_end = on_end

    async def run(self) -> None:
        acks: list[tuple[int, int]] = []
        while True:
            body = fastwire.publish_body(acks)
            acks = []
            try:  # the server holds a Publish until it has something: no time limit
                raw = await fastchannel.request(self.client, _PUBLISH_REQUEST, body, wait=0)
            except ua.UaStatusCodeError as exc:
                if exc.code in _RETRY:
                    if exc.code == ua.StatusCodes.BadTooManyPublishRequests:
                        await asyncio.sleep(0.1)
                    continue
                if exc.code == ua.StatusCodes.BadNoSubscription:
                    self.on_end("the server has no subscription of ours")
                    return
                raise
            pub = fastwire.decode_publish(raw) or fastwire.published_by_asyncua(raw)
            if pub.service_result & 0x80000000:
                raise ua.UaStatusCodeError(pub.service_result)
            feed = self.feeds.get(pub.subscription)
            if feed is not None and pub.notifications:
                acks.append((pub.subscription, pub.sequence))
                feed.notify(pub.sequence, pub.notifications)


def item(nid: ua.NodeId, i: int, p: Point, period: float,
         queue_size: int) -> ua.MonitoredItemCreateRequest:
    assert isinstance(p, OpcuaPoint)
    rv = ua.ReadValueId()
    rv.NodeId = nid
    rv.AttributeId = ua.AttributeIds.Value
    mp = ua.MonitoringParameters()
    mp.ClientHandle = CLIENT_HANDLE_BASE + i
    mp.SamplingInterval = (p.sampling if p.sampling is not None else period) * 1000
    mp.QueueSize = p.queue_size or queue_size
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
