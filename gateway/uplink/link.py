"""The uplink's view of a scarce, flaky 5G link: a bandwidth budget (token bucket) and
link quality (time to PUBACK, failures) that stretches the pack delay on a bad link.

The budget holds back ordinary data only: alarm and state batches (the store's urgent
lane) are sent at once and their bytes are charged afterwards, so ordinary data waits
longer instead. What waits stays in the durable store: nothing is dropped for the
budget (the store's own limits and policy still apply, and are counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.model import LinkSample

#: MQTT bytes per message beyond topic and payload: PUBLISH fixed header (2-5), topic
#: length (2), packet id (2), and the PUBACK (4)
MQTT_OVERHEAD = 10


class Budget:
    """Token bucket: ``rate`` bytes per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._t = time.monotonic()
        self.waited = 0.0  # seconds ordinary data waited for the budget

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._t) * self.rate)
        self._t = now

    def charge(self, nbytes: int) -> None:
        """Spend without waiting (urgent data; may go into debt)."""
        self._refill()
        self.tokens -= nbytes

    async def take(self, nbytes: int, interrupt: asyncio.Event) -> bool:
        """Wait until ``nbytes`` fit, then spend them: True. False, having spent
        nothing, as soon as ``interrupt`` is set (urgent data arrived)."""
        need = min(nbytes, self.burst)  # a message larger than the burst goes when full
        while True:
            self._refill()
            if self.tokens >= need:
                self.tokens -= nbytes
                return True
            if interrupt.is_set():
                return False
            delay = (need - self.tokens) / self.rate
            t0 = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupt.wait(), delay)
            self.waited += time.monotonic() - t0


@dataclass(slots=True)
class LinkQuality:
    """Time to PUBACK (exponentially weighted), failures, and the pack delay factor:
    doubled (up to ``max_factor``) while publishes are slow or fail, halved back when
    the link is good again."""

    slow: float = 2.0  # seconds to PUBACK that count as a bad link
    max_factor: float = 8.0
    rtt: float = 0.0  # EWMA, seconds
    rtt_max: float = 0.0  # since the last status
    samples: int = 0
    failures: int = 0
    factor: float = 1.0
    _changed: float = 0.0

    def sample(self, seconds: float) -> None:
        self.samples += 1
        self.rtt = seconds if self.samples == 1 else 0.8 * self.rtt + 0.2 * seconds
        self.rtt_max = max(self.rtt_max, seconds)
        now = time.monotonic()
        if now - self._changed < 5.0:
            return
        if self.rtt > self.slow and self.factor < self.max_factor:
            self.factor = min(self.max_factor, self.factor * 2)
            self._changed = now
        elif self.rtt < self.slow / 4 and self.factor > 1.0:
            self.factor = max(1.0, self.factor / 2)
            self._changed = now

    def failed(self) -> None:
        self.failures += 1
        self.factor = min(self.max_factor, self.factor * 2)
        self._changed = time.monotonic()


@dataclass(slots=True)
class RadioState:
    """The modem's latest link sample, judged against the policy: a poor signal (or no
    registration), or one falling by ``falling_db`` within ``window`` seconds, stretches
    the pack delay, compresses harder and holds bulk batches back; when the signal is
    good (and steady) again, they drain at the normal pace."""

    poor_rsrp: float = -110.0
    poor_sinr: float = 0.0
    factor: float = 4.0
    compression: int = 9
    falling_db: float = 10.0  # 0: only the level counts
    window: float = 60.0
    poor: bool = False
    reason: str = ""
    changes: int = 0
    deferred: int = 0  # bulk batches held back now
    #: (monotonic time, best RSRP) of recent samples, for the falling-signal rule
    history: deque[tuple[float, float]] = field(default_factory=deque)
    _last: LinkSample | None = None

    def judge(self, sample: LinkSample | None) -> bool:
        """Update from the modem's latest sample (None: no modem reading); True when
        poor."""
        reason = ""
        if sample is not None:
            registered, sinr = sample.registered, sample.sinr_db
            rsrp, nr = sample.rsrp_dbm, sample.nr_rsrp_dbm
            best = max((x for x in (rsrp, nr) if x is not None), default=None)
            top = self._track(sample, best)
            if registered is False:
                reason = "not registered"
            elif best is not None and best <= self.poor_rsrp:
                reason = f"RSRP {best:.0f} dBm"
            elif sinr is not None and sinr <= self.poor_sinr:
                reason = f"SINR {sinr:.0f} dB"
            elif best is not None and self.falling_db and top - best >= self.falling_db:
                reason = f"RSRP falling: {top:.0f} -> {best:.0f} dBm"
        poor = bool(reason)
        if poor != self.poor:
            self.changes += 1
        self.poor, self.reason = poor, reason
        return poor

    def _track(self, sample: LinkSample, best: float | None) -> float:
        """Record a new sample's best RSRP; the highest within the window."""
        now = time.monotonic()
        h = self.history
        if sample is not self._last:
            self._last = sample
            if best is not None:
                h.append((now, best))
        while h and now - h[0][0] > self.window:
            h.popleft()
        return max((b for _, b in h), default=best if best is not None else 0.0)
