"""What production facts a machine yields (a profile's ``production:`` section) and when
the factory works (``gateway.yaml``'s ``production:``: shift calendar, time zone, KPI
interval). Data, not code; validated like the rest of the config."""

from __future__ import annotations

import re
from datetime import time as dtime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.durations import Duration, TimeZone

#: the state of a machine whose state nobody knows: offline, or the gateway was not
#: running. Never downtime, never running time.
UNKNOWN = "unknown"
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reasons(_Strict):
    """Downtime reasons from a fault or alarm code point."""

    point: str = Field(description="the point that holds the fault/alarm code")
    map: dict[int | str, str] = Field(
        default_factory=dict, description="code -> reason text (e.g. 101: hydraulic pressure "
        "low); a code not listed is reported as 'code <value>'")
    ok: list[int | str] = Field(
        default_factory=lambda: list[int | str]([0, ""]),
        description="values that mean 'no fault' (no reason)")


class ProductionSpec(_Strict):
    """How a machine's production facts are derived from its points and states."""

    count: str | None = Field(
        default=None, description="counter point that goes up by one per cycle (or per part "
        "with parts_per_cycle 1); wraps at its type's range, and a reset (power cycle) counts "
        "from zero")
    cycle_signal: str | None = Field(
        default=None, description="instead of count: a bool point that turns true once per "
        "completed cycle (each rising edge is one cycle)")
    parts_per_cycle: Annotated[int, Field(ge=1)] = Field(
        default=1, description="parts made per counted cycle (a twin-cavity press: 2)")
    good: str | None = Field(default=None, description="counter point of good parts")
    scrap: str | None = Field(
        default=None, description="counter point of scrapped parts (without 'good': good = "
        "parts - scrap)")
    ideal_cycle: Duration | None = Field(
        default=None, description="the ideal (planned) time of one cycle, for performance")
    ideal_cycle_point: str | None = Field(
        default=None, description="instead of ideal_cycle: a point holding it in seconds "
        "(a recipe's cycle setpoint)")
    order: str | None = Field(
        default=None, description="point holding the order code the machine works on (a PLC "
        "or a scanner); a new code starts a new order")
    order_quantity: str | None = Field(
        default=None, description="point holding the order's planned quantity")
    product: str | None = Field(default=None, description="point holding the product code")
    recipe: str | None = Field(default=None, description="point holding the recipe/program")
    running: list[str] = Field(
        default_factory=lambda: ["running"], description="machine states that count as "
        "producing (ISO 22400 actual production time)")
    planned_stops: list[str] = Field(
        default_factory=list, description="machine states that are planned stops "
        "(maintenance, no order): not downtime, outside planned busy time")
    reasons: Reasons | None = Field(
        default=None, description="where a stop's reason comes from (default: the state name)")

    @model_validator(mode="after")
    def _one_counter(self) -> ProductionSpec:
        if self.count is not None and self.cycle_signal is not None:
            raise ValueError("production: give 'count' (a counter point) or 'cycle_signal' "
                             "(a bool point), not both (neither: a machine that makes no "
                             "parts, e.g. a compressor: states and availability only)")
        if self.ideal_cycle is not None and self.ideal_cycle_point is not None:
            raise ValueError("production: give 'ideal_cycle' or 'ideal_cycle_point', not both")
        if self.ideal_cycle is not None and self.ideal_cycle <= 0:
            raise ValueError("production.ideal_cycle must be more than 0")
        both = set(self.running) & set(self.planned_stops)
        if both:
            raise ValueError(f"production: {sorted(both)} cannot be running and a planned stop")
        return self

    def points(self) -> set[str]:
        """Every point the section names."""
        names = {self.count, self.cycle_signal, self.good, self.scrap, self.ideal_cycle_point,
                 self.order, self.order_quantity, self.product, self.recipe,
                 self.reasons.point if self.reasons else None}
        return {n for n in names if n is not None}


_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _clock(v: str) -> dtime | None:
    """``HH:MM`` -> a time; ``24:00`` -> None (midnight at the end of the day)."""
    m = _HHMM.match(v)
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"expected a time of day HH:MM (00:00-24:00), got {v!r}")
    if m.group(1) == "24":
        return None
    return dtime(int(m.group(1)), int(m.group(2)))


class Shift(_Strict):
    name: str = Field(description="the shift's name (early, late, night, A, ...)")
    start: str = Field(description="local start time, HH:MM")
    end: str = Field(description="local end time, HH:MM; earlier than start: the next day "
                     "(a night shift 22:00-06:00); 24:00 is midnight")
    days: list[Weekday] = Field(
        default_factory=lambda: list[Weekday](WEEKDAYS), description="the days on which the shift "
        "starts")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        _clock(v)
        return v

    @property
    def start_time(self) -> dtime:
        return _clock(self.start) or dtime(0, 0)

    @property
    def minutes(self) -> int:
        """The shift's length in minutes (wall clock, without DST changes)."""
        s = self.start_time
        e = _clock(self.end)
        a = s.hour * 60 + s.minute
        b = 24 * 60 if e is None else e.hour * 60 + e.minute
        return b - a if b > a else b + 24 * 60 - a


class ProductionConfig(_Strict):
    timezone: TimeZone = Field(default="UTC", description="the factory's time zone (IANA name, "
                          "e.g. Asia/Shanghai): shifts and days are local")
    shifts: list[Shift] = Field(
        default_factory=list, description="the shift calendar; none: one shift 'day' from "
        "00:00 to 24:00 every day. Time outside every shift counts in no KPI")
    kpi_interval: Duration = Field(
        default=60.0, description="a KPI record per machine this often (and at shift end)")
    save_interval: Duration = Field(
        default=10.0, description="how often the production state is written to the state "
        "directory (and at stop); counts come from counters, so a crash loses no parts")

    @field_validator("kpi_interval")
    @classmethod
    def _interval(cls, v: float) -> float:
        if v < 1:
            raise ValueError("kpi_interval must be at least 1s")
        return v

    @model_validator(mode="after")
    def _shifts(self) -> ProductionConfig:
        names = [s.name for s in self.shifts]
        if len(names) != len(set(names)):
            raise ValueError("production.shifts: shift names must be unique")
        # overlap: minutes of the week each shift covers
        week = 7 * 24 * 60
        taken: dict[int, str] = {}
        for s in self.shifts:
            st = s.start_time
            for day in s.days:
                a = WEEKDAYS.index(day) * 24 * 60 + st.hour * 60 + st.minute
                for m in range(a, a + s.minutes):
                    other = taken.setdefault(m % week, s.name)
                    if other != s.name:
                        raise ValueError(f"production.shifts: '{s.name}' overlaps "
                                         f"'{other}' on {day}")
        return self

    @property
    def calendar(self) -> list[Shift]:
        return self.shifts or [Shift(name="day", start="00:00", end="24:00")]
