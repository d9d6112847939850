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
    # paced: not before 0.4 s (less timer slack); the upper bound only catches a bucket
    # that waits far too long, with room for a stalled CI machine
    assert 0.3 < took < 1.5, took
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


def test_radio_poor_by_level_registration_or_a_falling_signal() -> None:
    from types import SimpleNamespace

    from gateway.uplink.link import RadioState

    def s(rsrp: float | None, sinr: float = 10.0, registered: bool = True) -> object:
        return SimpleNamespace(registered=registered, rsrp_dbm=rsrp, nr_rsrp_dbm=None,
                               sinr_db=sinr)

    r = RadioState(falling_db=10.0, window=60.0)
    assert not r.judge(s(-80.0))
    assert r.judge(s(-92.0)) and r.reason == "RSRP falling: -80 -> -92 dBm"
    assert r.judge(s(-112.0)) and r.reason == "RSRP -112 dBm"
    assert r.judge(s(-90.0, sinr=-1.0)) and r.reason == "SINR -1 dB"
    assert r.judge(s(-85.0, registered=False)) and r.reason == "not registered"
    r.history.clear()  # a minute later: -92 is steady, and good enough
    assert not r.judge(s(-92.0)) and not r.judge(s(-92.5))
    assert not RadioState(falling_db=0).judge(s(-80.0))
    flat = RadioState(falling_db=0)
    flat.judge(s(-80.0))
    assert not flat.judge(s(-100.0))  # the falling rule is off
    assert r.changes >= 2
