"""The shift calendar: which shift (and which local day) an instant belongs to.

Shift instances are named ``<date>/<name>`` by the local date on which they start, so a
night shift 22:00-06:00 that starts on Monday is ``2026-12-07/night`` until Tuesday
06:00. Times are wall-clock seconds (UTC epoch); the calendar is local (``zoneinfo``), so
a shift across a DST change is an hour shorter or longer, as it is on the shop floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

from gateway.production.spec import WEEKDAYS, ProductionConfig, Shift


@dataclass(frozen=True, slots=True)
class Window:
    """One instance of a shift (or a day): ``[start, end)`` in epoch seconds."""

    key: str  # 2026-12-07/early, or 2026-12-07 for a day
    name: str
    start: float
    end: float

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


class Calendar:
    def __init__(self, cfg: ProductionConfig) -> None:
        self.tz = ZoneInfo(cfg.timezone)
        self.shifts = cfg.calendar

    def _at(self, day: date, clock: dtime) -> float:
        return datetime.combine(day, clock, self.tz).timestamp()

    def _instance(self, s: Shift, day: date) -> Window:
        start = self._at(day, s.start_time)
        if s.end == "24:00":
            end = self._at(day + timedelta(days=1), dtime(0, 0))
        else:
            hh, mm = (int(x) for x in s.end.split(":"))
            clock = dtime(hh, mm)
            end = self._at(day + timedelta(days=1) if clock <= s.start_time else day, clock)
        return Window(f"{day.isoformat()}/{s.name}", s.name, start, end)

    def shift_at(self, t: float) -> Window | None:
        """The shift instance ``t`` falls in, or None (no shift: the plant does not work)."""
        today = datetime.fromtimestamp(t, self.tz).date()
        for day in (today, today - timedelta(days=1)):
            wd = WEEKDAYS[day.weekday()]
            for s in self.shifts:
                if wd in s.days:
                    w = self._instance(s, day)
                    if w.contains(t):
                        return w
        return None

    def next_change(self, t: float) -> float:
        """The first instant after ``t`` at which a shift starts or ends (within 8 days)."""
        today = datetime.fromtimestamp(t, self.tz).date()
        best = t + 8 * 86400
        for k in range(-1, 8):
            day = today + timedelta(days=k)
            wd = WEEKDAYS[day.weekday()]
            for s in self.shifts:
                if wd in s.days:
                    w = self._instance(s, day)
                    for edge in (w.start, w.end):
                        if t < edge < best:
                            best = edge
        return best

    def day_at(self, t: float) -> Window:
        """The local calendar day of ``t``."""
        d = datetime.fromtimestamp(t, self.tz).date()
        return Window(d.isoformat(), "day", self._at(d, dtime(0, 0)),
                      self._at(d + timedelta(days=1), dtime(0, 0)))
