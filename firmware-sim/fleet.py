"""A fleet of light simulated gateways, to load a backend (a broker cluster, ingest
workers, InfluxDB) without thousands of Modbus devices: each virtual gateway publishes
real edgegw batches (sequence numbers from 1, a counter field per device) over its own
MQTT 3.1.1 connection with QoS 1, as the gateway's uplink does: JSON v1, a message per
batch, or compact (a pack of every device's record per period, signed when a signer is
given, as the gateway's packs are). A batch counts as delivered at its message's PUBACK;
on a lost connection the unacknowledged message is sent again, the same bytes, to the
next node of ``hosts`` (at-least-once; the ingest and InfluxDB make it exactly once).

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

from gateway.crypto.signing import Signer
from gateway.model import Batch
from gateway.wire.compact import Schema, encode_pack, encode_record, pack_topic
from gateway.wire.encode import data_topic, encode_batch

log = logging.getLogger("edgegw-sim.fleet")
PROFILE = "edgegw-sim/fleet@1"  # profiles/edgegw-sim/fleet.yaml
SCHEMA = Schema.of(PROFILE, ["n", "temp"])


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
    compact: bool = False
    signer: Signer | None = None
    node: int = 0
    seq: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, Counts] = field(default_factory=dict)
    failovers: int = 0

    def _batch(self, device: str, ts_ms: int) -> tuple[Batch, int]:
        n = self.counters.get(device, 0) + 1
        self.counters[device] = n
        self.seq += 1
        b = Batch(self.gateway, device, PROFILE, ts_ms,
                  {"n": n, "temp": round(20 + 5 * random.random(), 2)})
        b.seq = self.seq
        return b, n

    def _messages(self) -> list[tuple[list[tuple[str, int]], str, bytes]]:
        """This period's messages: (the (device, n) each carries, topic, payload)."""
        ts = int(time.time() * 1000)
        made = [self._batch(dev, ts) for dev in self.devices]
        if not self.compact:
            out = []
            for b, n in made:
                payload = encode_batch(b)
                if self.signer is not None:
                    payload = self.signer.sign(payload)
                out.append(([(b.device, n)], data_topic(self.prefix, self.gateway, b.device),
                            payload))
            return out
        pack = encode_pack([encode_record(b, SCHEMA) for b, _ in made])
        if self.signer is not None:
            pack = self.signer.sign_pack(pack)
        return [([(b.device, n) for b, n in made], pack_topic(self.prefix, self.gateway),
                 pack)]

    async def run(self, stop: asyncio.Event) -> None:
        """Publish a batch per device per period until ``stop``; each delivered once
        acknowledged. Returns when stopped and nothing is left unacknowledged."""
        pending: list[tuple[list[tuple[str, int]], str, bytes]] = []
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
                            pending += self._messages()
                        carried, topic, payload = pending[0]
                        await client.publish(topic, payload, qos=1, timeout=10)
                        pending.pop(0)  # PUBACK: the broker has it
                        for dev, n in carried:
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
                 period: float, prefix: str = "edgegw", name: str = "fleet",
                 compact: bool = False, signer: Signer | None = None) -> None:
        self.gateways = [
            VirtualGateway(f"{name}-{g:05d}", [f"dev{d:03d}" for d in range(devices)],
                           hosts, period, prefix, compact, signer, node=g)  # spread
            for g in range(gateways)]
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for gw in self.gateways:
                tg.create_task(gw.run(self.stop), name=f"fleet:{gw.gateway}")

    def produced(self) -> dict[tuple[str, str], Counts]:
        return {(gw.gateway, dev): c for gw in self.gateways
                for dev, c in gw.delivered.items()}
