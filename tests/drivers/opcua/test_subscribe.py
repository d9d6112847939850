"""Subscription notifications become readings (drivers/opcua/subscribe.py)."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime

from asyncua import ua

from drivers.opcua.subscribe import CLIENT_HANDLE_BASE, Feed, Queue, _layers
from gateway.model import Quality


def _feed(queue: Queue) -> Feed:
    return Feed("press-1", "fast", ["temp", "pressure"], queue, asyncio.Event(), {}, True,
                lambda n: None, lambda why: None)


def _item(handle: int, value: float, second: int,
          status: int = ua.StatusCodes.Good) -> ua.MonitoredItemNotification:
    dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double), ua.StatusCode(status),
                      SourceTimestamp=datetime(2026, 12, 7, 8, 0, second, tzinfo=UTC))
    return ua.MonitoredItemNotification(ClientHandle=CLIENT_HANDLE_BASE + handle, Value=dv)


def test_layers_put_each_sample_of_a_point_in_its_own_layer() -> None:
    assert _layers(["a", "b", "a", "a", "c"]) == [[0, 1, 4], [2], [3]]
    assert _layers(["a", "b"]) == [[0, 1]]


def test_queued_samples_of_one_item_are_all_delivered_in_order() -> None:
    """queue_size > 1 with sampling faster than publishing: one notification holds
    several samples of a point; every one becomes a reading at its own source time (a
    batch holds one value per point, so one reading would keep only the last)."""
    queue: Queue = deque()
    feed = _feed(queue)
    notif = ua.DataChangeNotification(MonitoredItems=[
        _item(0, 20.0, 1), _item(1, 5.0, 1), _item(0, 21.0, 2),
        _item(0, 22.0, 3, ua.StatusCodes.UncertainLastUsableValue)])
    feed.notify(1, [notif])
    readings = [r for _g, rs in queue for r in rs]
    assert [r.points for r in readings] == [("temp", "pressure"), ("temp",), ("temp",)]
    assert [r.values for r in readings] == [[20.0, 5.0], [21.0], [22.0]]
    t = datetime(2026, 12, 7, 8, 0, 1, tzinfo=UTC).timestamp()
    assert [r.times for r in readings] == [[t, t], [t + 1], [t + 2]]
    assert readings[0].status == {} and readings[1].status == {}
    assert readings[2].status is not None and readings[2].status[0][0] is Quality.UNCERTAIN
