"""Reset a module whose link stays dead: rarely, and never in a loop.

The link is dead while the module answers but is not registered, or while the gateway
has no broker connection. When it has been dead for ``reset.after`` (10 min by
default), the module is reset (``radio``: radio off and on, which makes it attach
again; ``module``: a restart). The dead timer then starts again, so resets are at least
``after`` apart, and at most ``max_per_hour`` happen in any hour: after that the gateway
logs once and waits. A module that does not answer at all is not reset (nothing would
hear it): its device is offline and reconnects like any device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from drivers.modem.config import ModemAt, ModemMm, ModemReset
from gateway.httpserve import Family

if TYPE_CHECKING:
    from drivers.modem.driver import ModemDriver

log = logging.getLogger("edgegw.modem")
HOUR = 3600.0


class LinkWatchdog:
    CHECK_S = 5.0

    def __init__(self, modem: Callable[[], ModemDriver | None],
                 uplink_up: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.modem = modem  # looked up on each check: a reload may replace the driver
        self.uplink_up = uplink_up
        self.clock = clock
        self.dead_since: float | None = None
        self.recent: deque[float] = deque()  # times of the resets in the last hour
        self.resets = 0
        self._limit_logged = False

    def _config(self) -> tuple[ModemDriver, ModemReset] | None:
        driver = self.modem()
        if driver is None:
            return None
        conn = driver.device.connection
        reset = conn.reset if isinstance(conn, ModemAt | ModemMm) else None
        return None if reset is None else (driver, reset)

    def dead(self, driver: ModemDriver) -> str | None:
        """Why the link is dead now, or None."""
        if not driver.connected:
            return None
        latest = driver.latest
        if latest is not None and latest.registered is False:
            return "not registered"
        if not self.uplink_up():
            return "no broker connection"
        return None

    def due(self) -> tuple[str, ModemDriver, ModemReset] | None:
        """Why to reset now, with the modem and its reset settings; None when not
        (keeps the dead timer and the hourly count)."""
        found = self._config()
        why = self.dead(found[0]) if found is not None else None
        now = self.clock()
        if found is None or why is None:
            self.dead_since = None
            return None
        if self.dead_since is None:
            self.dead_since = now
            return None
        if now - self.dead_since < found[1].after:
            return None
        while self.recent and now - self.recent[0] >= HOUR:
            self.recent.popleft()
        if len(self.recent) >= found[1].max_per_hour:
            if not self._limit_logged:
                self._limit_logged = True
                log.error("modem: the link is still dead (%s), but %d reset(s) in the last "
                          "hour is the limit (reset.max_per_hour): waiting", why,
                          len(self.recent))
            return None
        self._limit_logged = False
        return why, *found

    async def check(self) -> bool:
        """Reset if due; True when a reset was sent."""
        due = self.due()
        if due is None:
            return False
        from drivers.modem.errors import ModemError

        why, driver, cfg = due
        now = self.clock()
        dead_for = now - (self.dead_since or now)
        self.recent.append(now)
        self.resets += 1
        self.dead_since = now  # the next reset, if any, is `after` away at the earliest
        log.warning("modem %s: link dead for %.0f s (%s): %s reset (%d in the last hour, "
                    "at most %d)", driver.device.id, dead_for, why, cfg.action,
                    len(self.recent), cfg.max_per_hour)
        try:
            await driver.reset(cfg.action)
        except ModemError as exc:
            log.warning("modem %s: the reset failed: %s", driver.device.id, exc)
        return True

    # -- Service (gateway/services.py) ---------------------------------------------------
    name = "modem-watchdog"

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.CHECK_S)
            await self.check()

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {}

    def metrics(self) -> list[Family]:
        if self.modem() is None:
            return []
        return [Family("modem_resets_total", "counter", "module resets after a dead link "
                       "(modem reset.after)", [({}, float(self.resets))])]
