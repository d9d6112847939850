"""MQTT uplink against a real mosquitto on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config import GatewayMqtt
from gateway.model import Batch
from gateway.stats import GatewayStats
from gateway.store import Limits
from gateway.store.memory import MemoryStore
from gateway.uplink.engine import Engine
from gateway.uplink.mqtt import MqttUplink
from gateway.wire.encode import data_topic, encode_batch
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.component


def make_store() -> MemoryStore:
    return MemoryStore(lambda b: (data_topic("edgegw", "gw", b.device), encode_batch(b)),
                       Limits(10_000, 10**8))


def cfg(port: int) -> GatewayMqtt:
    return GatewayMqtt.model_validate({"port": port, "reconnect": {"initial": "100ms",
                                                                  "max": "500ms"}})


async def fill(store: MemoryStore, n: int, dev: str = "d1") -> list[int]:
    return [await store.append(Batch("gw", dev, "p@1", i, {"i": i})) for i in range(n)]


@contextlib.asynccontextmanager
async def running(uplink: Engine[Any], timeout: float = 5.0
                  ) -> AsyncIterator[asyncio.Task[None]]:
    """The uplink running; on leaving, stopped (it drains) and awaited for ``timeout``."""
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        uplink.stop()
        try:
            await asyncio.wait_for(task, timeout)
        except TimeoutError:
            task.cancel()


async def test_publishes_in_order_and_acks(broker: Mosquitto) -> None:
    store = make_store()
    stats = GatewayStats()
    async with Subscriber(broker.port) as sub:
        uplink = MqttUplink(cfg(broker.port), "gw", store, stats)
        seqs = await fill(store, 500)
        async with running(uplink):
            await sub.wait_for(lambda: len(sub.data()) >= 500, what="500 batches")
            await sub.wait_for(lambda: store.stats.entries == 0, what="all acked")
        await sub.wait_for(lambda: sub.status() and sub.status()[-1]["status"] == "offline")
    assert [d["seq"] for d in sub.data()] == seqs
    assert stats.published == 500
    assert sub.status()[0]["status"] == "online"


async def test_broker_down_at_start_then_everything_arrives(broker: Mosquitto) -> None:
    broker.stop()
    store = make_store()
    uplink = MqttUplink(cfg(broker.port), "gw", store, GatewayStats())
    async with running(uplink):
        seqs = await fill(store, 50)
        await asyncio.sleep(0.5)
        assert store.stats.entries == 50  # nothing lost while the broker is away
        broker.start()
        async with Subscriber(broker.port, "edgegw/gw/+/data") as sub:
            await sub.wait_for(lambda: store.stats.entries == 0, what="all acked")
            more = await fill(store, 10)
            await sub.wait_for(lambda: [d["seq"] for d in sub.data()][-10:] == more,
                               what="the 10 newest batches, in order")
    assert seqs[0] < more[0]


async def test_broker_restart_mid_stream_loses_nothing(broker: Mosquitto) -> None:
    store = make_store()
    slow_reconnect = GatewayMqtt.model_validate({"port": broker.port,
                                               "reconnect": {"initial": "1s", "max": "1s"}})
    uplink = MqttUplink(slow_reconnect, "gw", store, GatewayStats())
    sent: list[int] = []
    got: set[int] = set()

    def all_received() -> bool:
        return set(sent) <= got | {d["seq"] for d in sub.data()}

    async with running(uplink):
        async with Subscriber(broker.port, "edgegw/gw/+/data") as sub:
            sent += await fill(store, 200)
            await sub.wait_for(all_received, what="first 200")
            got |= {d["seq"] for d in sub.data()}
        broker.stop()
        sent += await fill(store, 100)  # produced while the broker is down
        await asyncio.sleep(0.3)
        broker.start()
        # the subscriber is back before the uplink's 1 s reconnect delay ends
        async with Subscriber(broker.port, "edgegw/gw/+/data") as sub:
            sent += await fill(store, 200)
            await sub.wait_for(all_received, what="every batch, outage included")
            seqs = [d["seq"] for d in sub.data()]
    assert seqs == sorted(seqs), "replayed in order"
    assert store.stats.entries == 0


async def test_compact_packs_many_batches_per_message(broker: Mosquitto) -> None:
    from gateway.wire.compact import Schema, Schemas, encode_record

    schema = Schema.of("p@1", ["i"])
    store = MemoryStore(lambda b: ("edgegw/gw/pack", encode_record(b, schema)),
                        Limits(10_000, 10**8))
    conf = GatewayMqtt.model_validate({"port": broker.port, "encoding": "compact",
                                       "pack": {"max_delay": "300ms", "max_bytes": 2048},
                                       "reconnect": {"initial": "100ms", "max": "500ms"}})
    stats = GatewayStats()
    backlog = await fill(store, 400)  # before the session: sent at once, in full packs
    async with Subscriber(broker.port, "edgegw/gw/pack",
                          schemas=Schemas([schema])) as sub:
        uplink = MqttUplink(conf, "gw", store, stats)
        async with running(uplink):
            await sub.wait_for(lambda: len(sub.data()) == 400, what="the backlog")
            t0 = asyncio.get_running_loop().time()
            live = [await store.append(Batch("gw", "d1", "p@1", int(time.time() * 1000),
                                             {"i": i})) for i in range(5)]
            await sub.wait_for(lambda: len(sub.data()) == 405, what="5 live batches")
            waited = asyncio.get_running_loop().time() - t0
    assert [d["seq"] for d in sub.data()] == backlog + live
    assert store.stats.entries == 0 and stats.published == 405
    assert len(sub.packs) == stats.messages < 405 / 10  # many batches per message
    assert 0.2 < waited < 1.0  # the live batches shared one message, after max_delay
    assert len(sub.packs[-1]) < 5 * 20


async def test_bulk_waits_for_a_good_signal_then_drains(broker: Mosquitto) -> None:
    """A poor radio: process data flows, bulk batches stay in the store; a good signal
    again: they follow, each once; a stop while poor sends them too (nothing waits)."""
    from types import SimpleNamespace

    from gateway.model import BULK

    store = make_store()
    stats = GatewayStats()
    uplink = MqttUplink(cfg(broker.port), "gw", store, stats)
    sample = SimpleNamespace(registered=True, rsrp_dbm=-118.0, nr_rsrp_dbm=None, sinr_db=3.0)
    uplink.radio_sample = lambda: sample

    async def add(n: int, bulk: bool) -> list[int]:
        out = []
        for i in range(n):
            b = Batch("gw", "meter" if bulk else "cnc", "p@1", i, {"i": i})
            b.priority = BULK if bulk else b.priority
            out.append(await store.append(b))
        return out

    async with Subscriber(broker.port, "edgegw/gw/+/data") as sub:
        held = await add(5, True)  # a backlog at session start: held too
        async with running(uplink):
            process = await add(10, False)
            held += await add(5, True)
            process += await add(10, False)
            await sub.wait_for(lambda: len(sub.data("cnc")) == 20, what="process data")
            await asyncio.sleep(0.5)
            assert sub.data("meter") == [] and uplink.radio.poor
            assert store.stats.entries == 10 and uplink.radio.deferred == 10
            sample.rsrp_dbm = -90.0  # recovery
            await sub.wait_for(lambda: len(sub.data("meter")) == 10, what="bulk after recovery")
            await sub.wait_for(lambda: store.stats.entries == 0, what="all acked")
            assert uplink.radio.deferred == 0

            sample.rsrp_dbm = -118.0
            await sub.wait_for(lambda: store.stats.entries == 0 and uplink.radio.poor)
            late = await add(3, True)
            await asyncio.sleep(0.3)
            assert store.stats.entries == 3  # held again
        # leaving `running` stops the uplink: held batches go out before the offline status
        await sub.wait_for(lambda: len(sub.data("meter")) == 13, what="held bulk on stop")
    assert sorted(d["seq"] for d in sub.data("cnc")) == process
    assert sorted(d["seq"] for d in sub.data("meter")) == held + late
    assert store.stats.entries == 0 and stats.published == 33
