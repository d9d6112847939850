"""The one delivery engine: the store's entries over any transport, with every guarantee.

The store is the queue. Each round the engine peeks the oldest unacknowledged entries,
sends up to ``max_inflight`` parts at once (tasks start in creation order, so a transport
writes them in sequence order) and acknowledges an entry to the store only after the
destination confirmed its message. When the transport fails, every send in flight is
abandoned, the engine reconnects with backoff and starts again from the oldest
unacknowledged entry (at-least-once; the backend drops duplicates by gateway + seq).

Order within a session: the urgent lane (alarm and state batches, handed over by the
store as they are appended) at once, then live entries (newer than the session's start),
then bulk batches held back while the radio was poor, then the backlog, each in sequence
order. Ordinary data waits for the budget (when one is set) and, with a pack delay, up to
that long after its read time for others to share its message; an urgent batch
interrupts both waits. While the radio is poor (``defer_bulk``), bulk batches are passed
over and remembered; they stay in the store (a new session starts from the oldest entry
anyway). On stop the engine drains the store, then closes the session cleanly.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

from gateway.backoff import Backoff
from gateway.common import Backoff as BackoffConfig
from gateway.config import BudgetConfig
from gateway.httpserve import Family
from gateway.model import LinkSample
from gateway.stats import GatewayStats
from gateway.store import Entry, Store
from gateway.uplink.link import Budget, LinkQuality, RadioState
from gateway.uplink.transport import P, Session, Transport, TransportError

log = logging.getLogger("edgegw.uplink")

SENT, YIELDED, FAILED = 0, 1, 2
#: urgent entries kept for the lane at most (a flood of alarms while the link is down
#: goes out with the backlog, in order, anyway)
URGENT_MAX = 10_000


@dataclass(slots=True)
class Policy:
    """What the engine applies on every route (from the route's config)."""

    backoff: Backoff
    budget: Budget | None
    link: LinkQuality
    radio: RadioState
    #: hold bulk batches back while the radio is poor (needs a radio sample)
    defer_bulk: bool = False

    @classmethod
    def of(cls, backoff: BackoffConfig, budget: BudgetConfig | None, link: LinkQuality,
           radio: RadioState, defer_bulk: bool = False) -> Policy:
        """From a route's config: its backoff and its budget (a burst defaults to one
        second's worth)."""
        return cls(Backoff(backoff.initial, backoff.max, backoff.jitter),
                   Budget(budget.bytes_per_s, budget.burst or budget.bytes_per_s)
                   if budget else None, link, radio, defer_bulk)


class Engine(Generic[P]):
    def __init__(self, transport: Transport[P], store: Store, stats: GatewayStats,
                 policy: Policy) -> None:
        self.transport = transport
        self.store = store
        self.stats = stats
        self.policy = policy
        self.link = policy.link
        self.radio = policy.radio
        self.budget = policy.budget
        #: the modem's latest link sample (set by the gateway when a modem is configured)
        self.radio_sample: Callable[[], LinkSample | None] | None = None
        self.urgent: deque[Entry] = deque(maxlen=URGENT_MAX)
        self.urgent_ready = asyncio.Event()
        store.on_urgent = self._on_urgent
        self._stopping = False

    def _on_urgent(self, entry: Entry) -> None:
        self.urgent.append(entry)
        self.urgent_ready.set()

    def wake(self) -> None:
        """Look at the urgent lane and the transport's extras now."""
        self.urgent_ready.set()

    def stop(self) -> None:
        """Ask :meth:`run` to deliver what is queued, close the session and return. The
        caller bounds the wait (a dead destination never drains)."""
        self._stopping = True

    async def run(self) -> None:
        """Connect, send, reconnect: forever, until :meth:`stop` has drained the store."""
        t = self.transport
        while not self._stopping:
            try:
                session = await t.open()
            except TransportError as exc:
                await self._retry(exc)
                continue
            self.stats.mqtt_connects += 1
            self.stats.uplink_connected = True
            self.policy.backoff.reset()
            failure: TransportError | None = None
            try:
                await self._session(session)
            except* TransportError as eg:
                failure = _first(eg)
            finally:
                self.stats.uplink_connected = False
                await session.close(clean=failure is None)
            if failure is not None:
                await self._retry(failure)

    async def _retry(self, failure: TransportError) -> None:
        why = str(failure)
        delay = failure.retry_after if failure.retry_after is not None else \
            self.policy.backoff.next()
        log.warning("%s: %s; reconnecting in %.1f s (%d batches waiting)",
                    self.transport.name, why, delay, self.store.stats.entries)
        await asyncio.sleep(delay)

    async def _session(self, session: Session[P]) -> None:
        async with asyncio.TaskGroup() as tg:
            bg = tg.create_task(session.background(self.wake),
                                name=f"{self.transport.name}-session")
            await _Pump(self, session, tg).run()
            bg.cancel()

    # -- Service (gateway/services.py) ---------------------------------------------------
    name = "uplink"

    def status(self) -> dict[str, object]:
        """``published`` and ``link``: send times (the maximum since the status topic
        last took it, :meth:`take_rtt_max`), failures, the pack delay, urgent batches,
        the radio and the budget when there are."""
        link, radio = self.link, self.radio
        out: dict[str, object] = {"puback_ms": round(link.rtt * 1000, 1),
                                  "puback_max_ms": round(link.rtt_max * 1000, 1),
                                  "failures": link.failures, "pack_delay_factor": link.factor,
                                  "urgent": self.stats.urgent}
        if self.radio_sample is not None:
            out["radio"] = f"poor: {radio.reason}" if radio.poor else "good"
            out["bulk_held"] = radio.deferred
        if self.budget is not None:
            out["budget_bytes_per_s"] = self.budget.rate
            out["budget_wait_s"] = round(self.budget.waited, 1)
        return {"published": self.stats.published, "link": out}

    def take_rtt_max(self) -> None:
        """The status topic took the maximum send time: the next one starts afresh."""
        self.link.rtt_max = 0.0

    def metrics(self) -> list[Family]:
        s, link = self.stats, self.link
        out = [
            Family("uplink_connected", "gauge", "1 while connected to the broker",
                   [({}, 1.0 if s.uplink_connected else 0.0)]),
            Family("uplink_published_total", "counter", "batches acknowledged",
                   [({}, s.published)]),
            Family("uplink_publish_errors_total", "counter", "failed publishes",
                   [({}, s.publish_errors)]),
            Family("uplink_connects_total", "counter", "broker connections",
                   [({}, s.mqtt_connects)]),
            Family("uplink_bytes_total", "counter", "payload and topic bytes acknowledged",
                   [({}, s.bytes_sent)]),
            Family("uplink_publish_seconds_total", "counter", "time from publish to PUBACK",
                   [({}, round(s.publish_seconds, 6))]),
            Family("uplink_messages_total", "counter", "data messages acknowledged (compact: "
                   "one pack holds many batches)", [({}, s.messages)]),
            Family("uplink_urgent_total", "counter",
                   "alarm/state batches sent ahead of the rest", [({}, s.urgent)]),
            Family("uplink_puback_seconds", "gauge", "time to PUBACK (or the database's "
                   "reply), moving average", [({}, round(link.rtt, 4))]),
            Family("uplink_pack_delay_factor", "gauge", "pack delay multiplier (1 on a good "
                   "link, up to 8 on a slow one)", [({}, link.factor)]),
        ]
        if self.radio_sample is not None:
            out.append(Family("uplink_radio_poor", "gauge", "1 while the modem reports a "
                              "poor signal (packs grow, compression is harder, bulk waits)",
                              [({}, 1.0 if self.radio.poor else 0.0)]))
            out.append(Family("uplink_bulk_held_batches", "gauge", "bulk batches held back "
                              "in the store for a good signal", [({}, self.radio.deferred)]))
        if self.budget is not None:
            out.append(Family("uplink_budget_bytes_per_second", "gauge",
                              "the configured budget", [({}, self.budget.rate)]))
            out.append(Family("uplink_budget_wait_seconds_total", "counter", "time ordinary "
                              "data waited for the budget", [({}, round(self.budget.waited, 3))]))
        return out

    def delay_factor(self) -> float:
        """Pack delay multiplier: the larger of what the send times and the radio say."""
        r = self.radio
        if self.radio_sample is not None:
            was = r.poor
            if r.judge(self.radio_sample()) != was:
                log.warning("uplink: radio %s%s", "poor: " if r.poor else "good again",
                            r.reason if r.poor else "; packs back to normal")
        return max(self.link.factor, r.factor if r.poor else 1.0)


def _first(eg: BaseExceptionGroup[TransportError]) -> TransportError:
    """The first failure in a (nested) exception group, for the log."""
    exc: BaseException = eg
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, TransportError)
    return exc


class _Pump(Generic[P]):
    """One session's sending: the cursors, the fast lane's and the deferral's memory."""

    def __init__(self, engine: Engine[P], session: Session[P],
                 tg: asyncio.TaskGroup) -> None:
        self.e = engine
        self.t = engine.transport
        self.session = session
        self.tg = tg
        self.store = engine.store
        self.sem = asyncio.Semaphore(self.t.max_inflight)
        self.failed = False
        self.sent_urgent: set[int] = set()  # sent through the fast lane: skipped later
        self.deferred: set[int] = set()  # bulk batches passed over while the radio was poor
        self.defer_bulk = engine.policy.defer_bulk and engine.radio_sample is not None
        self.hold = False  # holding bulk back now
        self.n = self.t.round_size
        # the fast lane is for fresh alarms: what queued while disconnected goes out with
        # the backlog, in order
        engine.urgent.clear()
        #: entries up to this seq were stored before this session began
        self.live_from = self.store.last_seq
        self.live_cur, self.back_cur = self.live_from, 0

    async def run(self) -> None:
        """Send until stopping and drained; a TransportError ends the session."""
        e, store = self.e, self.store
        backlog = store.stats.entries
        t0 = time.monotonic()
        if backlog:
            log.info("%s: replaying %d stored batch(es), live data first", self.t.name,
                     backlog)
        while not (e._stopping and store.stats.entries == 0):
            e.urgent_ready.clear()
            factor = e.delay_factor()
            self.hold = self.defer_bulk and e.radio.poor and not e._stopping
            e.radio.deferred = len(self.deferred)
            if await self._extras() == FAILED or await self._urgent() == FAILED:
                return
            live = await self._live(factor)
            if live is None:
                continue  # an urgent batch came while live data lingered
            back: list[Entry] = []
            if len(live) < self.n and self.back_cur < self.live_from:
                back = await store.peek(self.n - len(live), after=self.back_cur,
                                        before=self.live_from + 1)
                if not back:
                    self.back_cur = self.live_from
                    if backlog:
                        log.info("%s: backlog of %d batch(es) sent in %.1f s", self.t.name,
                                 backlog, time.monotonic() - t0)
            drainable = not self.hold and bool(self.deferred) and \
                any(self._passed(s) for s in self.deferred)
            if not live and not back and not drainable:
                # re-check stopping now and then (a timer, not wait_for's task per wait)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2 if e._stopping else 1.0):
                        await store.wait(self.live_cur)
                continue
            if await self._round(live, back, drainable) == FAILED:
                return

    async def _round(self, live: list[Entry], back: list[Entry], drainable: bool) -> int:
        self.live_cur, r = await self._send_all(self._fresh(live), live, self.live_cur)
        if r == SENT and drainable:
            r = await self._drain()
        if r == SENT:
            self.back_cur, r = await self._send_all(self._fresh(back), back, self.back_cur)
        if self.sent_urgent:  # forget what both cursors have passed
            lc, bc, lf = self.live_cur, self.back_cur, self.live_from
            self.sent_urgent = {s for s in self.sent_urgent if s > lc or bc < s <= lf}
        return r

    async def _live(self, factor: float) -> list[Entry] | None:
        """Entries newer than the live cursor, after the pack delay (None: an urgent
        batch interrupted it)."""
        e, store, n = self.e, self.store, self.n
        live = await store.peek(n, after=self.live_cur)
        if self.t.linger and live and not e._stopping and len(live) < n:
            delay = self.t.linger * factor
            linger = live[0].ts_ms / 1000 + delay - time.time()
            if linger > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(linger, delay)):
                        await e.urgent_ready.wait()
                if e.urgent_ready.is_set():
                    return None
                live = await store.peek(n, after=self.live_cur)
        return live

    async def _extras(self) -> int:
        for part in self.t.extras():
            if await self._start(part, [], False) == FAILED:
                return FAILED
        return SENT

    async def _urgent(self) -> int:
        lane = self.e.urgent
        if not lane:
            return SENT
        now = [lane.popleft() for _ in range(len(lane))]
        self.sent_urgent.update(x.seq for x in now)
        self.e.stats.urgent += len(now)
        for msg in self.t.group(now):
            if await self._publish(msg, urgent=True) == FAILED:
                return FAILED
        return SENT

    async def _publish(self, msg: list[Entry], urgent: bool = False) -> int:
        """Start the sends of one message: SENT; YIELDED when ordinary data gave way to
        urgent data; FAILED when a send failed (the session is ending)."""
        t, budget = self.t, self.e.budget
        backlog = bool(msg) and msg[0].seq <= self.live_from
        # encode first and charge what goes on the wire, unless encoding spends something
        # (Sparkplug's seq): then estimate
        parts = None if t.encode_spends else t.encode(msg, backlog, self.e.radio.poor)
        if budget is not None and not urgent:
            size = (sum(t.size(p) for p in parts) if parts is not None
                    else sum(len(x.payload) for x in msg)) + t.overhead
            if not await budget.take(size, self.e.urgent_ready):
                return YIELDED
        if parts is None:
            parts = t.encode(msg, backlog, self.e.radio.poor)
        if not parts:
            for x in msg:
                self.store.ack(x.seq)
            return SENT
        if budget is not None and urgent:
            budget.charge(sum(t.size(p) + t.overhead for p in parts))
        for k, part in enumerate(parts):
            if await self._start(part, msg, k == len(parts) - 1) == FAILED:
                return FAILED
        return SENT

    async def _start(self, part: P, msg: list[Entry], last: bool) -> int:
        await self.sem.acquire()
        if self.failed:  # the TaskGroup is shutting down with the TransportError
            self.sem.release()
            return FAILED
        t0 = time.monotonic()
        if self.session.start(part, lambda exc: self._done(exc, part, msg, last, t0)):
            return SENT
        self.tg.create_task(self._send(part, msg, last), name=f"{self.t.name}-send")
        return SENT

    async def _send(self, part: P, msg: list[Entry], last: bool) -> None:
        t0 = time.monotonic()
        try:
            refused = await self.session.send(part)
        except TransportError as exc:
            self._done(exc, part, msg, last, t0)
            raise
        self.e.stats.published -= refused
        self._done(None, part, msg, last, t0)

    def _done(self, exc: BaseException | None, part: P, msg: list[Entry], last: bool,
              t0: float) -> None:
        """A send ended: count it and, when it carried a message's last part,
        acknowledge the message's entries to the store."""
        self.sem.release()
        stats, link = self.e.stats, self.e.link
        if exc is not None:
            if not self.failed:
                stats.publish_errors += 1
                link.failed()
            self.failed = True
            return
        took = time.monotonic() - t0
        link.sample(took)
        stats.messages += 1
        stats.publish_seconds += took
        stats.bytes_sent += self.t.size(part)
        if last:
            stats.published += len(msg)
            ack = self.store.ack
            for x in msg:
                ack(x.seq)

    def _fresh(self, entries: list[Entry]) -> list[Entry]:
        if self.sent_urgent:
            entries = [x for x in entries if x.seq not in self.sent_urgent]
        if self.hold:
            held = [x.seq for x in entries if x.bulk]
            if held:
                self.deferred.update(held)
                entries = [x for x in entries if not x.bulk]
        elif self.deferred:  # a cursor sends these itself (it stopped short of them before)
            self.deferred.difference_update(x.seq for x in entries)
        return entries

    def _passed(self, seq: int) -> bool:
        return seq <= self.live_cur if seq > self.live_from else seq <= self.back_cur

    async def _drain(self) -> int:
        """Send the oldest held-back bulk batches (up to n) still in the store that the
        cursors have passed (one that stopped short sends the rest itself)."""
        n = self.n
        want = [s for s in sorted(self.deferred) if self._passed(s)][:n]
        wanted = set(want)
        found: list[Entry] = []
        i = 0
        while i < len(want):
            chunk = await self.store.peek(n, after=want[i] - 1, before=want[-1] + 1)
            if not chunk:
                break
            found += [x for x in chunk if x.seq in wanted]
            i = bisect.bisect_right(want, chunk[-1].seq)
        for msg in self.t.group(found):
            r = await self._publish(msg)
            if r != SENT:
                return r
            self.deferred.difference_update(x.seq for x in msg)
        self.deferred.difference_update(want)  # the rest is gone (store limits)
        return SENT

    async def _send_all(self, entries: list[Entry], seen: list[Entry],
                        cursor: int) -> tuple[int, int]:
        """Send ``entries`` (``seen`` without the ones the fast lane sent) in order; the
        new cursor and SENT, or the cursor where it stopped and why."""
        for msg in self.t.group(entries):
            r = await self._publish(msg)
            if r != SENT:
                return cursor, r
            cursor = msg[-1].seq
        return (seen[-1].seq if seen else cursor), SENT
