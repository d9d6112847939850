"""The uplink conformance suite: every route (MQTT, InfluxDB v1, InfluxDB v2) over the one
delivery engine keeps the same promises, against a real destination on loopback
(mosquitto, influxd, VictoriaMetrics), like the store's contract suite.

The promises: every entry is delivered, in sequence order, and acknowledged to the store
only after the destination confirmed it; what was stored while the destination was away
is replayed when it is back; an alarm/state batch goes before ordinary data (and is not
held back by the byte budget); ordinary data keeps to the budget; on stop the engine
drains the store, then returns.

A spy sits at the transport contract (between the engine and the real session) and
records which entries each part carried, when its send started and when the destination
confirmed it; the destination is then read back to see what really arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config import GatewayInfluxV1, GatewayInfluxV2, GatewayMqtt
from gateway.model import STATE, Batch
from gateway.stats import GatewayStats
from gateway.store import Limits
from gateway.store.memory import MemoryStore
from gateway.uplink.engine import Engine
from gateway.uplink.influx import InfluxUplink, Write
from gateway.uplink.mqtt import MqttUplink
from gateway.uplink.transport import Session
from gateway.wire.encode import data_topic, encode_batch
from tests.gateway.uplink.test_mqtt_uplink import running
from tests.mqtt_sub import Subscriber
from tests.support.servers import (
    HttpServer,
    Influxd,
    Mosquitto,
    VictoriaMetrics,
    free_port,
    mosquitto,
)

pytestmark = pytest.mark.component

T0 = 1_780_000_000_000  # ms: the batches' read times (distinct points in InfluxDB)
RETRY = {"initial": "100ms", "max": "500ms"}


def seqs_of(part: Any) -> list[int]:
    if isinstance(part, Write):
        return [it.entry.seq for it in part.items]
    return [int(orjson.loads(part[1])["seq"])]  # MQTT JSON: (topic, payload)


@dataclass
class Spy:
    """What crossed the transport contract."""

    started: list[int] = field(default_factory=list)  # seqs, in the order sends began
    confirmed: set[int] = field(default_factory=set)  # seqs the destination confirmed
    acked_early: list[int] = field(default_factory=list)  # acked before confirmation

    def wrap(self, engine: Engine[Any]) -> None:
        t = engine.transport
        real_open = t.open
        spy = self

        class _Session:
            def __init__(self, real: Session[Any]) -> None:
                self.real = real

            async def send(self, part: Any) -> int:
                seqs = seqs_of(part)
                spy.started += seqs
                refused = await self.real.send(part)
                spy.confirmed.update(seqs)
                return refused

            def start(self, part: Any, done: Callable[[BaseException | None], None]) -> bool:
                seqs = seqs_of(part)
                spy.started += seqs

                def confirmed(exc: BaseException | None) -> None:
                    if exc is None:
                        spy.confirmed.update(seqs)
                    done(exc)

                if self.real.start(part, confirmed):
                    return True
                del spy.started[len(spy.started) - len(seqs):]  # it goes through send()
                return False

            async def background(self, wake: Callable[[], None]) -> None:
                await self.real.background(wake)

            async def close(self, clean: bool) -> None:
                await self.real.close(clean)

        async def open_() -> Any:
            return _Session(await real_open())

        t.open = open_  # type: ignore[method-assign]
        store = engine.store
        real_ack = store.ack

        def ack(seq: int) -> None:
            if seq not in spy.confirmed:
                spy.acked_early.append(seq)
            real_ack(seq)

        store.ack = ack  # type: ignore[method-assign]


class Route:
    """A destination: start/stop it, build an uplink to it, read back what arrived."""

    name: str

    def uplink(self, store: MemoryStore, stats: GatewayStats,
               budget: int | None = None) -> Engine[Any]:
        raise NotImplementedError

    async def arrived(self) -> list[int]:
        """The ``i`` values the destination holds."""
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def up(self) -> None:
        raise NotImplementedError


class MqttRoute(Route):
    name = "mqtt"

    def __init__(self, broker: Mosquitto, sub: Subscriber) -> None:
        self.broker, self.sub = broker, sub

    def uplink(self, store: MemoryStore, stats: GatewayStats,
               budget: int | None = None) -> Engine[Any]:
        cfg: dict[str, object] = {"port": self.broker.port, "reconnect": RETRY}
        if budget:
            cfg["budget"] = {"bytes_per_s": budget}
        return MqttUplink(GatewayMqtt.model_validate(cfg), "gw", store, stats)

    async def arrived(self) -> list[int]:
        return [int(d["p"]["i"]) for d in self.sub.data()]

    def down(self) -> None:
        self.broker.stop()

    def up(self) -> None:
        self.broker.start()


class InfluxRoute(Route):
    def __init__(self, server: HttpServer, tmp: Path) -> None:
        self.server, self.tmp = server, tmp
        self.name = "influx-v1" if isinstance(server, Influxd) else "influx-v2"

    def uplink(self, store: MemoryStore, stats: GatewayStats,
               budget: int | None = None) -> Engine[Any]:
        cfg: dict[str, object] = {"url": self.server.url, "retry": RETRY}
        if budget:
            cfg["budget"] = {"bytes_per_s": budget}
        if isinstance(self.server, Influxd):
            return InfluxUplink(GatewayInfluxV1.model_validate(
                {**cfg, "kind": "influxdb-v1", "database": "edgegw"}), store, stats,
                self.tmp / "dead-letter.jsonl")
        return InfluxUplink(GatewayInfluxV2.model_validate(
            {**cfg, "kind": "influxdb-v2", "org": "o", "bucket": "b"}), store, stats,
            self.tmp / "dead-letter.jsonl")

    async def arrived(self) -> list[int]:
        return await asyncio.to_thread(self._arrived)

    def _arrived(self) -> list[int]:
        s = self.server
        if isinstance(s, Influxd):
            try:
                series = s.query("SELECT i FROM p", "edgegw")
            except RuntimeError:  # no database yet
                return []
            return [int(v[1]) for v in series[0]["values"]] if series else []  # type: ignore[index]
        assert isinstance(s, VictoriaMetrics)
        return [int(v) for row in s.export('{__name__="p_i"}')
                for v in row["values"]]  # type: ignore[attr-defined]

    def down(self) -> None:
        self.server.stop()

    def up(self) -> None:
        self.server.start()


@pytest.fixture(params=["mqtt", "influx-v1", "influx-v2"])
async def route(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Route]:
    if request.param == "mqtt":
        # persistent broker and subscriber session: what the broker accepted while the
        # subscriber was away (a broker restart) still reaches it
        with mosquitto(tmp_path, persistent=True) as broker:
            async with Subscriber(broker.port, "edgegw/gw/+/data", session="conformance") \
                    as sub:
                yield MqttRoute(broker, sub)
        return
    kind = Influxd if request.param == "influx-v1" else VictoriaMetrics
    server = kind(free_port(), tmp_path)
    server.start()
    try:
        yield InfluxRoute(server, tmp_path)
    finally:
        server.stop()


def make_store() -> MemoryStore:
    return MemoryStore(lambda b: (data_topic("edgegw", "gw", b.device), encode_batch(b)),
                       Limits(10_000, 10**8))


async def fill(store: MemoryStore, start: int, n: int, priority: int = 2) -> list[int]:
    out = []
    for i in range(start, start + n):
        b = Batch("gw", "d1", "p@1", T0 + i, {"i": i})
        b.priority = priority
        out.append(await store.append(b))
    return out


async def until(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def arrived_all(route: Route, want: set[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        got = await route.arrived()
        if want <= set(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{route.name}: {len(want - set(got))} of {len(want)} "
                                 "never arrived")
        await asyncio.sleep(0.2)


async def test_delivers_everything_in_order_and_acks_only_after_delivery(
        route: Route) -> None:
    store, stats = make_store(), GatewayStats()
    uplink = route.uplink(store, stats)
    spy = Spy()
    spy.wrap(uplink)
    seqs = await fill(store, 0, 300)
    async with running(uplink, 15):
        await until(lambda: store.stats.entries == 0, "every entry acknowledged")
    got = await arrived_all(route, set(range(300)))
    assert sorted(set(got)) == list(range(300))
    assert spy.started == seqs, "sent once each, in sequence order"
    assert not spy.acked_early, "acknowledged before the destination confirmed"
    assert stats.published == 300


async def test_what_was_stored_while_the_destination_was_away_is_replayed(
        route: Route) -> None:
    store, stats = make_store(), GatewayStats()
    uplink = route.uplink(store, stats)
    spy = Spy()
    spy.wrap(uplink)
    route.down()
    async with running(uplink, 15):
        before = await fill(store, 0, 50)
        await asyncio.sleep(1.0)
        assert store.stats.entries == 50  # nothing lost, nothing acknowledged
        route.up()
        await until(lambda: store.stats.entries == 0, "the backlog acknowledged")
        after = await fill(store, 50, 20)
        await until(lambda: store.stats.entries == 0, "the new entries acknowledged")
    await arrived_all(route, set(range(70)))
    assert not spy.acked_early
    delivered = [s for s in spy.started if s in spy.confirmed]
    assert sorted(set(delivered)) == before + after
    assert stats.mqtt_connects >= 1


async def test_an_alarm_goes_before_ordinary_data_and_past_the_budget(route: Route) -> None:
    store, stats = make_store(), GatewayStats()
    uplink = route.uplink(store, stats, budget=2000)  # ~20 batches/s of ordinary data
    spy = Spy()
    spy.wrap(uplink)
    ordinary = await fill(store, 0, 400)  # ~20 s of budget
    async with running(uplink, 15):
        await until(lambda: len(spy.confirmed) >= 10, "ordinary data flowing")
        t0 = time.monotonic()
        alarm = (await fill(store, 1000, 1, priority=STATE))[0]
        await until(lambda: alarm in spy.confirmed, "the alarm delivered", timeout=5)
        took = time.monotonic() - t0
        waiting = len([s for s in ordinary if s not in spy.confirmed])
        uplink.budget = None  # let the rest go, for a quick drain
    assert took < 1.0, f"the alarm waited {took:.2f} s"
    assert waiting > 200, "the alarm went ahead of the ordinary backlog"
    assert stats.urgent == 1
    assert spy.started.count(alarm) == 1, "sent once (the cursors skip it later)"
    await arrived_all(route, {1000})


async def test_ordinary_data_keeps_to_the_budget(route: Route) -> None:
    store, stats = make_store(), GatewayStats()
    rate = 3000
    uplink = route.uplink(store, stats, budget=rate)
    await fill(store, 0, 2000)
    async with running(uplink, 15):
        await until(lambda: stats.bytes_sent > 0, "sending started")
        t0 = time.monotonic()
        b0 = stats.bytes_sent
        await asyncio.sleep(2.0)
        sent = stats.bytes_sent - b0
        elapsed = time.monotonic() - t0
        assert uplink.budget is not None
        waited = uplink.budget.waited
        uplink.budget = None
    # the burst (one second's worth) plus the rate, plus one message in flight
    assert sent <= rate * (elapsed + 1) + 500, (sent, elapsed)
    assert sent >= rate * (elapsed - 1), (sent, elapsed)
    assert waited > 0, "ordinary data waited for the budget"


async def test_stop_drains_the_store_then_returns(route: Route) -> None:
    store, stats = make_store(), GatewayStats()
    uplink = route.uplink(store, stats)
    await fill(store, 0, 500)
    task = asyncio.create_task(uplink.run())
    await asyncio.sleep(0)
    uplink.stop()
    await asyncio.wait_for(task, 20)
    assert store.stats.entries == 0
    await arrived_all(route, set(range(500)))
