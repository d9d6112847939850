"""Per-device supervision and drift-free polling.

Poll groups tick at fixed wall-clock phases of their period: devices are assigned
round-robin to ``pipeline.poll_slots`` evenly spaced instants (``auto``: one per 32
devices), so one event-loop wakeup serves several devices (fewer wakeups and batched
syscalls: what a poll costs is mostly its share of the wake-ups) while bursts stay small
(a few ms of added latency); see bench/README.md for the measured trade-off.

Each device has one supervisor task: it connects (exponential backoff with jitter while
the device is unreachable), then runs one task per poll group under a TaskGroup. A poll
group ticks at ``start + k * period``: when a cycle overruns, the missed ticks are
skipped and counted, never bunched up. A DeviceUnreachable from any group sends the
device offline (one batch with state ``offline``), closes the connection and
reconnects; other devices are never delayed because each has its own connection, tasks
and timeouts. A bug inside one device task is logged with its traceback and the device
restarted: it never takes the gateway down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import cast

from drivers.base import Driver, StreamingDriver
from gateway.backoff import Backoff
from gateway.common import Backoff as BackoffConfig
from gateway.config import Device
from gateway.errors import DeviceUnreachable
from gateway.faultlog import FaultLog
from gateway.logs import current_device
from gateway.model import Batch, Reading
from gateway.pipeline import DevicePipeline
from gateway.production.machine import Machine
from gateway.profiles import Point
from gateway.stats import DeviceStats
from gateway.store import Store
from gateway.trace.service import Tracer

log = logging.getLogger("edgegw.scheduler")
#: a poll group whose first aligned tick is further away than this is read at once too
FIRST_READ_WAIT = 5.0


class DeviceRunner:
    def __init__(self, device: Device, driver: Driver, pipeline: DevicePipeline,
                 store: Store, stats: DeviceStats, faults: FaultLog,
                 backoff: BackoffConfig, phase: float = 0.0) -> None:
        self.device = device
        self.driver = driver
        self.pipeline = pipeline
        self.store = store
        self.stats = stats
        self.faults = faults
        self.backoff = Backoff(backoff.initial, backoff.max, backoff.jitter)
        # ticks fall on wall-clock times t with t = phase * period (mod period)
        self.phase = phase
        prof = device.profile
        groups: dict[str, list[Point]] = {}
        for p in prof.expanded_points():
            groups.setdefault(prof.group_of(p), []).append(p)
        self.groups: dict[str, tuple[float, Sequence[Point]]] = {
            g: (device.poll_periods[g], tuple(pts)) for g, pts in groups.items()
        }
        self.online = False
        #: a device whose stats.beat is older than this (s) is stalled: not being polled
        #: (/healthz says degraded); None for a pushing device without heartbeat
        self.stall_after = self._stall_after(backoff.max)
        #: set when the gateway stops this device: every loop ends at its next turn, even
        #: if a cancellation was lost inside a driver's wait (gateway/tasks.py)
        self.stopping = False
        #: (point, kind, pipelines): context codes this device hands to other devices
        self.contexts: list[tuple[str, str, list[DevicePipeline]]] = []
        self.on_context: Callable[[str, str, list[DevicePipeline]], None] | None = None
        self._shared: dict[str, str] = {}  # point -> the code last handed on
        #: production facts of this machine (gateway/production), when its profile says
        self.production: Machine | None = None
        #: each product's record at this machine (gateway/trace), when its profile says
        self.trace: Tracer | None = None

    def _stall_after(self, backoff_max: float) -> float | None:
        # a cycle every period (or every half heartbeat), a reconnect every backoff_max;
        # the margin covers a read's own timeouts and retries
        if self.driver.streaming:
            hb = self.pipeline.heartbeat
            return hb + backoff_max + 60.0 if hb > 0 else None
        fastest = min((p for p, _ in self.groups.values()), default=60.0)
        return 3 * fastest + backoff_max + 60.0

    def stalled(self, now: float) -> bool:
        """True when the device has not been polled (nor tried) for ``stall_after`` s."""
        return self.stall_after is not None and now - self.stats.beat > self.stall_after

    async def run(self) -> None:
        """Supervise forever (until cancelled)."""
        dev = self.device.id
        current_device.set(dev)  # every log line of this task and its children names it
        while not self.stopping:
            try:
                await self._connected_cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # a driver bug or a library's unexpected exception: the device is offline
                # (batch and reason published), never left 'starting' or 'online'
                log.exception("device %s: unexpected error; restarting its tasks", dev)
                await self.driver.close()
                await self._went_offline(f"internal error: {type(exc).__name__}: {exc}"
                                         if str(exc) else
                                         f"internal error: {type(exc).__name__}")
                await asyncio.sleep(self.backoff.next())

    async def _connected_cycle(self) -> None:
        dev = self.device.id
        self.stats.beat = time.monotonic()
        try:
            await self.driver.connect()
        except DeviceUnreachable as exc:
            await self._went_offline(str(exc))
            await asyncio.sleep(self.backoff.next())
            return
        if not self.online:
            self.online = True
            self.stats.state = "online"
            if self.stats.reconnects or self.stats.polls:
                self.faults.clear((dev, "unreachable"), f"device {dev}: back online")
        self.backoff.reset()
        try:
            if self.driver.streaming:
                await self._stream(cast(StreamingDriver, self.driver))
            else:
                async with asyncio.TaskGroup() as tg:
                    for group, (period, points) in self.groups.items():
                        tg.create_task(self._poll(group, period, points),
                                       name=f"poll:{dev}:{group}")
        except* DeviceUnreachable as eg:
            await self.driver.close()
            self.stats.reconnects += 1
            await self._went_offline(str(eg.exceptions[0]))
            await asyncio.sleep(self.backoff.next())

    async def _stream(self, driver: StreamingDriver) -> None:
        """Pushed data (subscriptions): every delivery is one pipeline cycle. A device
        pushes only changes, so every half heartbeat each group is also read once: the
        pipeline then re-reports the points whose heartbeat is due (proof of life)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(driver), name=f"stream:{self.device.id}")
            if self.pipeline.heartbeat > 0:
                tg.create_task(self._refresh(driver, self.pipeline.heartbeat / 2),
                               name=f"refresh:{self.device.id}")

    async def _consume(self, driver: StreamingDriver) -> None:
        async for group, readings in driver.stream(self.groups):
            if self.stopping:
                return
            self.stats.polls += 1
            self.stats.beat = time.monotonic()
            await self._emit(group, readings)

    async def _refresh(self, driver: StreamingDriver, interval: float) -> None:
        while not self.stopping:
            await asyncio.sleep(interval)
            for group, (_, points) in self.groups.items():
                readings = await driver.read(points)
                self.stats.beat = time.monotonic()
                if readings:  # empty: nothing received yet (a code reader before a scan)
                    await self._emit(group, readings)

    async def _went_offline(self, reason: str) -> None:
        dev = self.device.id
        self.stats.last_error = reason
        self.faults.fault((dev, "unreachable"), f"device {dev}: unreachable: {reason}")
        if self.online or self.stats.state != "offline":
            self.online = False
            self.stats.state = "offline"
            now = time.time()
            await self._store(self.pipeline.offline(reason, now), now)

    async def _emit(self, group: str, readings: list[Reading]) -> None:
        """Count, run the pipeline, share product context, store."""
        self._account(group, readings)
        batch = self.pipeline.process(group, readings)
        if batch is not None and self.contexts:
            self._share_context(batch)
        await self._store(batch, readings[0].read_ts if readings else time.time(), readings)

    async def _store(self, batch: Batch | None, ts: float,
                     readings: Sequence[Reading] = ()) -> None:
        """Store the cycle's batch and the machine's production and product records of
        this cycle, in one event-loop turn: one commit, and a state change's device batch
        and its record share the urgent lane's next message."""
        events = self._produced(ts) if self.production is not None else None
        if self.trace is not None:
            read = {n for r in readings if r.error is None for n in r.points}
            traced = self.trace.observe(ts, self.pipeline, read)
            if traced:
                events = [*(events or ()), *traced]
        if events:
            await asyncio.gather(*(self.store.append(b) for b in
                                   ([batch, *events] if batch is not None else events)))
        elif batch is not None:
            await self.store.append(batch)

    def _produced(self, ts: float) -> list[Batch]:
        """The machine's production records after this cycle (state intervals, counts)."""
        m = self.production
        assert m is not None
        pipe = self.pipeline
        m.ids = pipe.ids
        state = pipe.state if pipe.state_known() else None  # None: unknown
        return m.observe(ts, state, pipe.current)

    def _share_context(self, batch: Batch) -> None:
        """A code read by this device (a scanner) becomes the product/batch context of
        the devices it serves, from their next batch on; a new code is also handed to
        ``on_context`` (registration at the identifier node, enrichment)."""
        for point, kind, targets in self.contexts:
            code = batch.values.get(point)
            if isinstance(code, str) and code and self._shared.get(point) != code:
                self._shared[point] = code
                for t in targets:
                    t.set_context(kind, code, self.device.id)
                if self.on_context is not None:
                    self.on_context(kind, code, targets)

    def reshare_context(self) -> None:
        """Hand the codes last read to the (possibly new) target pipelines."""
        for point, kind, targets in self.contexts:
            code = self._shared.get(point)
            if code is not None:
                for t in targets:
                    t.set_context(kind, code, self.device.id)

    def _account(self, group: str, readings: list[Reading]) -> None:
        """Count points and read errors; one fault per failing request, cleared on success."""
        st = self.stats
        dev = self.device.id
        for r in readings:
            if r.error is not None:
                st.read_errors += 1
                st.last_error = r.error
                self.faults.fault((dev, group, r.points[0]),
                                  f"device {dev}: {r.error} reading {', '.join(r.points)}")
            else:
                st.points += len(r.values)
                st.last_ok = r.read_ts
                if self.faults.active:
                    self.faults.clear((dev, group, r.points[0]),
                                      f"device {dev}: {', '.join(r.points)} read again")

    async def _poll(self, group: str, period: float, points: Sequence[Point]) -> None:
        loop = asyncio.get_running_loop()
        dev = self.device.id
        st = self.stats
        read = self.driver.read
        emit = self._emit
        first = (self.phase * period - time.time()) % period
        deadline = loop.time() + first
        if first > FIRST_READ_WAIT:
            # a slow group (identity, recipe: minutes or hours) is read once at connect
            # rather than at its first aligned tick, which may be far away
            t0 = loop.time()
            readings = await read(points)
            st.read_seconds += loop.time() - t0
            st.polls += 1
            await emit(group, readings)
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        clock = loop.time
        while not self.stopping:
            t0 = clock()
            readings = await read(points)
            st.beat = t1 = clock()
            st.read_seconds += t1 - t0
            st.polls += 1
            await emit(group, readings)
            deadline += period
            now = loop.time()
            if now >= deadline:
                missed = int((now - deadline) // period) + 1
                st.missed_ticks += missed
                deadline += missed * period
                self.faults.fault((dev, group, "overrun"),
                                  f"device {dev}: poll group '{group}' overran its period "
                                  f"{period:g}s; skipped {missed} tick(s)")
            await asyncio.sleep(deadline - now)
