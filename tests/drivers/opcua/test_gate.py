"""The read gate (``connection.gather``): sockets read together at the ticks of a shared
clock, on real loopback TCP connections; and a subscribing driver behind it against an
OPC UA server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.opcua.gate import Gate, gate
from gateway.config import load_config
from gateway.errors import ConfigError
from tests.drivers.opcua.helpers import groups_of, served

pytestmark = pytest.mark.timeout(30)


class Sink(asyncio.Protocol):
    """What a connection received, and when (the loop's time of each data_received)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.times: list[float] = []

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.times.append(asyncio.get_running_loop().time())


Pair = tuple[asyncio.Transport, Sink, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def connections(n: int) -> AsyncIterator[list[Pair]]:
    """``n`` loopback connections: the gated side (transport, protocol) and the writer
    of the peer that sends to it."""
    loop = asyncio.get_running_loop()
    peers: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await peers.put(w)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out = []
    for _ in range(n):
        transport, sink = await loop.create_connection(Sink, "127.0.0.1", port)
        out.append((transport, sink, await peers.get()))
    try:
        yield out
    finally:
        for t, _, w in out:
            t.close()
            w.close()
        server.close()


async def _next_tick(g: Gate) -> float:
    """Wait for the gate's next tick; the loop time it fired at."""
    n = g.ticks
    while g.ticks == n:
        await asyncio.sleep(0.005)
    return asyncio.get_running_loop().time()


async def test_answers_wait_for_the_tick_and_are_read_in_one_turn() -> None:
    g = Gate(0.2)
    async with connections(3) as pairs:
        for t, _, _ in pairs:
            g.add(t)
        await _next_tick(g)
        await asyncio.sleep(0.02)  # paused again
        for _, _, w in pairs:
            w.write(b"notification")
        await asyncio.sleep(0.1)
        assert all(not s.data for _, s, _ in pairs), "read before the tick"
        unread = asyncio.get_running_loop().time()
        await _next_tick(g)
        await asyncio.sleep(0.02)
        assert [bytes(s.data) for _, s, _ in pairs] == [b"notification"] * 3
        times = [s.times[0] for _, s, _ in pairs]
        assert min(times) > unread and max(times) - min(times) < 0.05, times
        for t, _, _ in pairs:
            g.discard(t)


async def test_an_answer_larger_than_a_read_is_read_whole_at_one_tick() -> None:
    g = Gate(0.3)
    async with connections(1) as pairs:
        t, sink, w = pairs[0]
        g.add(t)
        big = bytes(range(256)) * 4096  # 1 MiB: four reads of asyncio's 256 KiB at least
        w.write(big)
        await w.drain()
        tick = await _next_tick(g)
        while len(sink.data) < len(big):
            await asyncio.sleep(0.005)
        assert asyncio.get_running_loop().time() - tick < 0.2, "waited for another tick"
        assert bytes(sink.data) == big
        g.discard(t)


async def test_a_transport_let_go_reads_at_once_and_an_empty_gate_is_forgotten() -> None:
    async with connections(2) as pairs:
        (t1, s1, w1), (t2, s2, w2) = pairs
        g = gate(10.0)  # ticks far away
        assert gate(10.0) is g
        g.add(t1)
        g.add(t2)
        w1.write(b"a")
        w2.write(b"b")
        await asyncio.sleep(0.05)
        assert not s1.data and not s2.data
        g.discard(t1)
        await asyncio.sleep(0.05)
        assert bytes(s1.data) == b"a" and not s2.data
        t2.close()  # a closed member leaves at the next tick, or when let go
        g.discard(t2)
        assert gate(10.0) is not g
        gate(10.0).discard(t2)  # nothing to let go: no error


async def test_a_late_let_go_leaves_the_newer_gate_of_its_interval_alone() -> None:
    """A server drops B's connection: the tick lets it go, A's stream ends and the gate is
    forgotten, C's stream opens a new one; then B's driver sees its session lost and lets
    go of the old gate. C's gate stays the one every new stream of that interval joins."""
    async with connections(3) as pairs:
        (ta, _, _), (tb, _, _), (tc, _, _) = pairs
        old = gate(0.05)
        old.add(ta)
        old.add(tb)
        tb.close()  # as a server restart leaves it
        await _next_tick(old)
        assert tb not in old.members
        old.discard(ta)
        new = gate(0.05)
        assert new is not old
        new.add(tc)
        old.discard(tb)  # B's stream ends late
        assert gate(0.05) is new
        new.discard(tc)
        assert gate(0.05) is not new


@pytest.mark.parametrize(("conn", "says"), [
    ("gather: 100ms", "gather applies to mode subscribe"),
    ("mode: subscribe, gather: 3s", "gather (3 s) must be at most half the timeout (4 s)"),
])
def test_gather_is_for_subscriptions_and_short(tmp_path: Path, conn: str, says: str) -> None:
    (tmp_path / "gateway.yaml").write_text(
        "gateway: {id: gw-test}\nuplink: {mqtt: {host: 127.0.0.1, port: 1883}}\n"
        "devices:\n  - id: cnc\n    profile: acme/cnc-ua500\n"
        f"    connection: {{kind: opcua, endpoint: 'opc.tcp://127.0.0.1:4840', {conn}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "gateway.yaml")
    assert f"gateway.yaml: devices[0].connection: {says}" in str(err.value)


async def test_a_gathered_subscription_delivers_at_the_ticks(tmp_path: Path) -> None:
    """Against an OPC UA server (the simulator's asyncua server): every notification
    reaches the stream in the turn of a tick of the shared clock, and every point's value
    arrives."""
    period = 0.23  # off the simulator's 50 ms grid
    async with served(tmp_path, "cnc", "acme/cnc-ua500", mode="subscribe",
                      gather=f"{int(period * 1000)}ms") as (_sim, drv):
        loop = asyncio.get_running_loop()
        phases: list[float] = []
        names: set[str] = set()
        t0 = time.monotonic()
        shared: Gate | None = None
        async with contextlib.aclosing(drv.stream(groups_of(drv.device))) as stream:
            async for _group, readings in stream:
                shared = shared or gate(period)
                if time.monotonic() - t0 > 0.5:  # past the initial reads
                    phases.append(loop.time() % period)
                names.update(p for r in readings for p in r.points)
                if time.monotonic() - t0 > 4.5:
                    break
        assert len(names) == 24
        # read as they come, the phases would spread over the period; at the ticks
        # they are ~0-10 ms (up to 120 ms allowed: a loaded machine runs the tick late)
        assert len(phases) >= 12
        late = [p for p in phases if 0.12 < p < period - 0.01]
        assert not late, f"delivered between ticks: {phases}"
        assert shared is not None and shared.ticks >= 14
        assert gate(period) is not shared, "the gate outlived its last stream"
