"""The gateway's devices as one part: their runners and tasks, started, stopped one by
one (a reload) or all (shutdown) in bounded time, and what they report (the status
topic's ``devices``, ``/metrics``' ``device_*`` and each driver's own figures,
``/status.json``'s device state).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from gateway.httpserve import Family
from gateway.scheduler import DeviceRunner
from gateway.stats import DeviceStats, GatewayStats
from gateway.tasks import describe_stuck, stop_tasks

log = logging.getLogger("edgegw")

#: how long a device (its task, its connection's close) may take to stop
STOP_TIMEOUT = 5.0


def _json_safe(v: object) -> object:
    """NaN and infinities as text: JSON has no such numbers (a browser would refuse the
    whole document)."""
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v


class Devices:
    def __init__(self, stats: GatewayStats) -> None:
        self.stats = stats
        self.runners: list[DeviceRunner] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: device tasks a reload could not stop (cancelled again at shutdown)
        self.orphans: list[asyncio.Task[None]] = []
        #: names of tasks and closes that ignored every cancellation
        self.stuck: list[str] = []

    def __len__(self) -> int:
        return len(self.runners)

    def start(self, r: DeviceRunner) -> None:
        self.tasks[r.device.id] = asyncio.create_task(r.run(), name=f"device:{r.device.id}")

    def start_new(self) -> None:
        """Start every runner that has no task (at start, and after a reload)."""
        for r in self.runners:
            if r.device.id not in self.tasks:
                self.start(r)

    async def stop_all(self) -> list[asyncio.Task[object]]:
        """Stop every device task (shutdown); the ones that would not stop are returned."""
        for r in self.runners:
            r.stopping = True
        return await stop_tasks([*self.tasks.values(), *self.orphans], STOP_TIMEOUT)

    async def halt(self, r: DeviceRunner) -> None:
        """Stop one device's task and close its connection, in bounded time; its queued
        data stays."""
        task = self.tasks.pop(r.device.id, None)
        r.stopping = True
        if task is not None:
            stuck = await stop_tasks([task], STOP_TIMEOUT)
            if stuck:  # keeps being cancelled at shutdown
                self.orphans.extend(stuck)  # type: ignore[arg-type]
                log.error("device %s did not stop within %.0f s: %s", r.device.id,
                          STOP_TIMEOUT, describe_stuck(stuck))
        try:
            await asyncio.wait_for(asyncio.shield(r.driver.close()), STOP_TIMEOUT)
        except TimeoutError:
            log.error("device %s: closing its connection took longer than %.0f s",
                      r.device.id, STOP_TIMEOUT)

    async def close(self) -> None:
        """Close every connection, each within STOP_TIMEOUT (a driver stuck in close is
        left behind and logged, never waited for)."""
        closes = [asyncio.create_task(r.driver.close(), name=f"close:{r.device.id}")
                  for r in self.runners]
        if closes:
            done, pending = await asyncio.wait(closes, timeout=STOP_TIMEOUT)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    log.warning("%s: %s", t.get_name(), t.exception())
            if pending:
                stuck = await stop_tasks(pending, 0.5)
                self.stuck += [t.get_name() for t in stuck]

    def stalled(self) -> list[str]:
        """Devices not being polled: their task ended, or no cycle for too long."""
        now = asyncio.get_running_loop().time()
        out = []
        for r in self.runners:
            if r.stopping:  # being stopped or restarted (a reload)
                continue
            task = self.tasks.get(r.device.id)
            if task is None:  # not started yet
                continue
            if task.done() or r.stalled(now):
                out.append(r.device.id)
        return out

    def online(self) -> int:
        return sum(d.state == "online" for d in self.stats.devices.values())

    def polled(self) -> bool:
        """True once any device has completed a cycle."""
        return any(d.polls for d in self.stats.devices.values())

    def state(self) -> dict[str, dict[str, object]]:
        """For /status.json and the status page: each device's link and machine state,
        last read, last error and latest values."""
        out: dict[str, dict[str, object]] = {}
        for r in self.runners:
            st = r.stats
            r.pipeline.sync()
            values = {n: _json_safe(p.last) for n, p in r.pipeline.points.items()
                      if p.last is not None}
            out[r.device.id] = {"state": st.state, "machine": r.pipeline.state,
                                "last_ok": st.last_ok, "last_error": st.last_error,
                                "values": values}
        return out

    # -- Reporter ----------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        return {"devices": {k: {"state": v.state, "missed_ticks": v.missed_ticks,
                                "read_errors": v.read_errors, "reconnects": v.reconnects}
                            for k, v in self.stats.devices.items()}}

    def metrics(self) -> list[Family]:
        devs = [(r.device.id, r.stats) for r in self.runners]
        return [Family(name, kind, help_, [({"device": d}, get(s)) for d, s in devs])
                for name, kind, help_, get in _DEVICE_FAMILIES] + self._driver_metrics()

    def _driver_metrics(self) -> list[Family]:
        """Each driver's own figures (drivers/base.py DriverMetric), one family per name."""
        families: dict[str, Family] = {}
        for r in self.runners:
            for m in r.driver.metrics():
                fam = families.setdefault(m.name, Family(m.name, m.kind, m.help, []))
                fam.samples.append(({"device": r.device.id, **m.labels}, m.value))
        return list(families.values())


_DEVICE_FAMILIES: list[tuple[str, str, str, Callable[[DeviceStats], float]]] = [
    ("device_up", "gauge", "1 when the device answers",
     lambda s: 1.0 if s.state == "online" else 0.0),
    ("device_polls_total", "counter", "poll cycles (and pushed deliveries)", lambda s: s.polls),
    ("device_read_errors_total", "counter", "requests that failed", lambda s: s.read_errors),
    ("device_points_total", "counter", "values read", lambda s: s.points),
    ("device_missed_ticks_total", "counter", "poll ticks skipped (overruns)",
     lambda s: s.missed_ticks),
    ("device_reconnects_total", "counter", "connections lost", lambda s: s.reconnects),
    ("device_read_seconds_total", "counter", "time spent reading",
     lambda s: round(s.read_seconds, 6)),
    ("device_last_success_timestamp_seconds", "gauge", "last successful read",
     lambda s: round(s.last_ok, 3)),
]
