"""The store contract, run against every store backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.model import Batch
from gateway.store import Store
from gateway.store.memory import MemoryStore


def encode(b: Batch) -> tuple[str, bytes]:
    return f"t/{b.device}", f"{b.device}:{b.seq}".encode() + b"x" * 90


def memory(max_batches: int = 1000, max_bytes: int = 10**9,
           policy: str = "drop-oldest") -> Store:
    return MemoryStore(encode, max_batches, max_bytes, policy, first_seq=0)


BACKENDS: list[Callable[..., Store]] = [memory]


def batch(dev: str = "d") -> Batch:
    return Batch("gw", dev, "p@1", 0, {"a": 1})


@pytest.fixture(params=BACKENDS, ids=lambda f: f.__name__)
def make(request: pytest.FixtureRequest) -> Callable[..., Store]:
    return request.param  # type: ignore[no-any-return]


async def test_append_peek_ack_in_order(make: Callable[..., Store]) -> None:
    s = make()
    seqs = [await s.append(batch()) for _ in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [e.seq for e in await s.peek(10)] == seqs
    assert [e.seq for e in await s.peek(2, after=seqs[1])] == seqs[2:4]
    await s.ack(seqs[0])
    await s.ack(seqs[2])  # out of order ack
    assert [e.seq for e in await s.peek(10)] == [seqs[1], seqs[3], seqs[4]]
    assert s.stats.entries == 3


async def test_ack_of_unknown_seq_is_ignored(make: Callable[..., Store]) -> None:
    s = make()
    seq = await s.append(batch())
    await s.ack(seq + 100)
    await s.ack(seq)
    await s.ack(seq)
    assert s.stats.entries == 0 and s.stats.acked == 1


async def test_peek_waits_for_data(make: Callable[..., Store]) -> None:
    s = make()
    waiter = asyncio.create_task(s.peek(5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    seq = await s.append(batch())
    assert [e.seq for e in await asyncio.wait_for(waiter, 1)] == [seq]


async def test_drop_oldest_counts(make: Callable[..., Store]) -> None:
    s = make(max_batches=10)
    seqs = [await s.append(batch()) for _ in range(15)]
    assert s.stats.dropped == 5
    assert [e.seq for e in await s.peek(100)] == seqs[5:]


async def test_drop_newest_counts(make: Callable[..., Store]) -> None:
    s = make(max_batches=10, policy="drop-newest")
    seqs = [await s.append(batch()) for _ in range(15)]
    assert s.stats.dropped == 5
    assert [e.seq for e in await s.peek(100)] == seqs[:10]


async def test_byte_cap(make: Callable[..., Store]) -> None:
    s = make(max_bytes=1000)  # each entry is ~95 bytes
    for _ in range(20):
        await s.append(batch())
    assert s.stats.bytes <= 1000
    assert s.stats.dropped == 20 - s.stats.entries


async def test_concurrent_producer_consumer(make: Callable[..., Store]) -> None:
    s = make()
    got: list[int] = []

    async def consume() -> None:
        while len(got) < 200:
            entries = await s.peek(7, after=got[-1] if got else 0)
            for e in entries:
                got.append(e.seq)
                await s.ack(e.seq)

    consumer = asyncio.create_task(consume())
    sent = []
    for i in range(200):
        sent.append(await s.append(batch()))
        if i % 13 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(consumer, 5)
    assert got == sent and s.stats.entries == 0


async def test_sequence_numbers_keep_rising_across_restarts() -> None:
    a = MemoryStore(encode, 10, 10**6)
    last = await a.append(batch())
    b = MemoryStore(encode, 10, 10**6)
    assert await b.append(batch()) > last
