"""The bandwidth budget (token bucket) and the link quality estimate."""

from __future__ import annotations

import asyncio
import time

from gateway.uplink.link import Budget, LinkQuality


async def test_budget_paces_ordinary_data_and_yields_to_urgent() -> None:
    b = Budget(rate=10_000, burst=1_000)
    urgent = asyncio.Event()
    t0 = time.monotonic()
    for _ in range(5):  # 5000 bytes at 10 kB/s with 1000 saved: about 0.4 s
        assert await b.take(1000, urgent)
    took = time.monotonic() - t0
    assert 0.3 < took < 0.6, took
    b.charge(3000)  # urgent data goes now, into debt
    assert b.tokens < -2000
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, urgent.set)
    t0 = time.monotonic()
    assert not await b.take(1000, urgent)  # gave way as soon as urgent data came
    assert time.monotonic() - t0 < 0.2
    assert b.waited > 0.3


def test_link_quality_stretches_the_pack_delay_on_a_slow_link() -> None:
    q = LinkQuality(slow=1.0)
    q.sample(0.05)
    assert q.factor == 1.0 and q.rtt == 0.05
    q._changed = -100.0
    for _ in range(20):
        q.sample(3.0)
    assert q.rtt > 1.0 and q.factor == 2.0  # at most one step per 5 s
    q.failed()
    assert q.factor == 4.0 and q.failures == 1
    q.rtt, q._changed = 0.01, -100.0  # fast again (and the last change long ago)
    q.sample(0.01)
    assert q.factor == 2.0
