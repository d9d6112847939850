"""A fleet of light simulated gateways, to load a backend (a broker cluster, ingest
workers, InfluxDB) without thousands of Modbus devices: each virtual gateway publishes
real edgegw batches (JSON v1, sequence numbers from 1, a counter field per device) over
its own MQTT 3.1.1 connection with QoS 1, as the gateway's uplink does: a batch counts
as delivered at its PUBACK; on a lost connection the unacknowledged one is sent again,
the same bytes, to the next node of ``hosts`` (at-least-once; the ingest and InfluxDB
make it exactly once).

``produced()`` says what was delivered per (gateway, device): the number of batches and
the sum of the counter field ``n`` (1, 2, 3 ...), which is what the database must hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiomqtt

from gateway.model import Batch
from gateway.wire.encode import data_topic, encode_batch

log = logging.getLogger("edgegw-sim.fleet")
PROFILE = "edgegw-sim/fleet@1"


@dataclass
class Counts:
    batches: int = 0
    total: int = 0  # sum of n


@dataclass
class VirtualGateway:
    gateway: str
    devices: list[str]
    hosts: Sequence[tuple[str, int]]
    period: float
    prefix: str = "edgegw"
    node: int = 0
    seq: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, Counts] = field(default_factory=dict)
    failovers: int = 0

    def _next(self, device: str) -> tuple[str, bytes, int]:
        n = self.counters.get(device, 0) + 1
        self.counters[device] = n
        self.seq += 1
        b = Batch(self.gateway, device, PROFILE, int(time.time() * 1000),
                  {"n": n, "temp": round(20 + 5 * random.random(), 2)})
        b.seq = self.seq
        return data_topic(self.prefix, self.gateway, device), encode_batch(b), n

    async def run(self, stop: asyncio.Event) -> None:
        """Publish a batch per device per period until ``stop``; each delivered once
        acknowledged. Returns when stopped and nothing is left unacknowledged."""
        pending: list[tuple[str, str, bytes, int]] = []  # (device, topic, payload, n)
        next_at = time.monotonic()
        while True:
            host, port = self.hosts[self.node % len(self.hosts)]
            try:
                async with aiomqtt.Client(host, port, identifier=self.gateway,
                                          protocol=aiomqtt.ProtocolVersion.V311,
                                          clean_session=True, timeout=10) as client:
                    while True:
                        if not pending and stop.is_set():
                            return
                        if not pending:
                            delay = next_at - time.monotonic()
                            if delay > 0:
                                with contextlib.suppress(TimeoutError):
                                    await asyncio.wait_for(stop.wait(), delay)
                                continue
                            next_at += self.period
                            for dev in self.devices:
                                pending.append((dev, *self._next(dev)))
                        dev, topic, payload, n = pending[0]
                        await client.publish(topic, payload, qos=1, timeout=10)
                        pending.pop(0)  # PUBACK: the broker has it
                        c = self.delivered.setdefault(dev, Counts())
                        c.batches += 1
                        c.total += n
            except aiomqtt.MqttError as exc:
                self.node += 1
                self.failovers += 1
                log.info("%s: %s; to node %s", self.gateway, exc,
                         self.hosts[self.node % len(self.hosts)])
                await asyncio.sleep(0.2)


class Fleet:
    def __init__(self, hosts: Sequence[tuple[str, int]], gateways: int, devices: int,
                 period: float, prefix: str = "edgegw", name: str = "fleet") -> None:
        self.gateways = [
            VirtualGateway(f"{name}-{g:05d}", [f"dev{d:03d}" for d in range(devices)],
                           hosts, period, prefix, node=g)  # spread over the nodes
            for g in range(gateways)]
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for gw in self.gateways:
                tg.create_task(gw.run(self.stop), name=f"fleet:{gw.gateway}")

    def produced(self) -> dict[tuple[str, str], Counts]:
        return {(gw.gateway, dev): c for gw in self.gateways
                for dev, c in gw.delivered.items()}
