"""Subscriptions: one per poll group (publishing interval = the group's period), one
monitored item per point (sampling interval, queue size, and the point's deadband as a
server-side DataChangeFilter); each PublishResponse becomes one reading."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from asyncua import Client, ua

from drivers.opcua import fastdecode
from drivers.opcua.config import Opcua
from drivers.opcua.read import decode, name_enums
from drivers.opcua.values import quality_of
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

    def publish(self, result: ua.PublishResult) -> None:
        """asyncua's subscription callback (it awaits only what returns a coroutine)."""
        msg = result.NotificationMessage
        if msg.NotificationData is None:
            return  # keep-alive
        seq = msg.SequenceNumber
        if self.last_seq and seq > self.last_seq + 1:
            self.on_gap(seq - self.last_seq - 1)
            log.warning("device %s: %d notification(s) of group %s lost",
                        self.device, seq - self.last_seq - 1, self.group)
        self.last_seq = seq
        now = time.time()
        for notif in msg.NotificationData:
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
        idx: list[str] = []
        values: list[Value] = []
        status: dict[int, tuple[Quality, str]] = {}
        times: list[float] = []
        for j, (handle, v, code, ts, vtype) in enumerate(notif.items):
            idx.append(self.names[handle - CLIENT_HANDLE_BASE])
            times.append(now if ts is None else ts)
            if code:
                q = quality_of(code)
                if q is not None:
                    status[j] = q
                    if q[0] is Quality.BAD:
                        values.append(None)
                        continue
            values.append(float(f"{v:.7g}") if vtype == fastdecode.FLOAT else v)
        self._push(idx, values, status, times, now)

    def _push(self, names: list[str], values: list[Value],
              status: dict[int, tuple[Quality, str]], times: list[float],
              now: float) -> None:
        """A pushed reading: at the newest source time of its values, or at ``now``."""
        if not names:
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


async def subscribe(client: Client, conn: Opcua, period: float, points: Sequence[Point],
                    ids: Mapping[str, ua.NodeId | str], feed: Feed) -> dict[int, str]:
    """Create the group's subscription and its monitored items; the points that could
    not be monitored: index -> why. Raises what asyncua raises."""
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = period * 1000
    params.RequestedLifetimeCount = max(30, int(3 * conn.session_timeout / period))
    params.RequestedMaxKeepAliveCount = max(3, int(max(1.0, 5 * period) / period))
    params.MaxNotificationsPerPublish = 0
    params.PublishingEnabled = True
    params.Priority = 0
    sub = await client.uaclient.create_subscription(params, feed.publish)
    items = []
    missing: dict[int, str] = {}
    for i, p in enumerate(points):
        nid = ids.get(p.name, "not an OPC UA point")
        if isinstance(nid, str):
            missing[i] = nid
            continue
        items.append(item(nid, i, p, period, conn.queue_size))
    mparams = ua.CreateMonitoredItemsParameters()
    mparams.SubscriptionId = sub.SubscriptionId
    mparams.TimestampsToReturn = ua.TimestampsToReturn.Source
    mparams.ItemsToCreate = items
    results = await client.uaclient.create_monitored_items(mparams)
    for req, res in zip(items, results, strict=True):
        if not res.StatusCode.is_good():
            i = req.RequestedParameters.ClientHandle - CLIENT_HANDLE_BASE
            missing[i] = f"monitored item refused ({res.StatusCode.name})"
    return missing


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
