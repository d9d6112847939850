"""Time and counts accumulated over a window (a shift, a day, an order), and the KPIs of
ISO 22400-2 computed from them.

Time is kept per machine state and per category: ``run`` (actual production time, APT),
``planned`` (planned stops), ``unknown`` (offline, gateway not running) and ``down``
(everything else). Planned busy time PBT = elapsed - planned - unknown, so time nobody
saw is neither downtime nor production time.

- availability = APT / PBT
- performance = (produced quantity x planned run time per unit) / APT; the planned time
  is summed per counted cycle, so a recipe change mid-shift is weighted right
- quality = good quantity / produced quantity
- OEE = availability x performance x quality
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: cycle times kept per window for the mean and p95 (the newest; a shift of 1 s cycles
#: keeps its last ~1.1 h, enough for a stable p95)
MAX_CYCLES = 4000
CATEGORIES = ("run", "down", "planned", "unknown")


@dataclass(slots=True)
class Tally:
    key: str
    start: float
    end: float = math.inf
    times: dict[str, float] = field(default_factory=dict)  # per state
    cats: dict[str, float] = field(default_factory=dict)  # per category
    parts: int = 0
    good: int = 0
    scrap: int = 0
    ideal: float = 0.0  # planned run time of what was produced, s
    cycles: list[float] = field(default_factory=list)

    def add_time(self, state: str, cat: str, seconds: float) -> None:
        self.times[state] = self.times.get(state, 0.0) + seconds
        self.cats[cat] = self.cats.get(cat, 0.0) + seconds

    def add_cycle(self, seconds: float) -> None:
        self.cycles.append(seconds)
        if len(self.cycles) > MAX_CYCLES:
            del self.cycles[: len(self.cycles) - MAX_CYCLES]

    @property
    def elapsed(self) -> float:
        return sum(self.cats.values())

    def kpis(self) -> dict[str, float]:
        """availability, performance, quality, oee: each only when it is defined (a
        window with no planned busy time has no availability)."""
        run = self.cats.get("run", 0.0)
        pbt = self.elapsed - self.cats.get("planned", 0.0) - self.cats.get("unknown", 0.0)
        out: dict[str, float] = {}
        if pbt > 0:
            out["availability"] = round(run / pbt, 4)
        if run > 0 and self.ideal > 0:
            out["performance"] = round(self.ideal / run, 4)
        if self.parts > 0:
            out["quality"] = round(self.good / self.parts, 4)
        if len(out) == 3:
            out["oee"] = round(out["availability"] * out["performance"] * out["quality"], 4)
        return out

    def cycle_stats(self) -> dict[str, float]:
        if not self.cycles:
            return {}
        c = sorted(self.cycles)
        return {"cycle_mean": round(sum(c) / len(c), 3),
                "cycle_p95": round(c[min(len(c) - 1, math.ceil(0.95 * len(c)) - 1)], 3)}

    def record(self) -> dict[str, Any]:
        """The window's facts as record fields (times in seconds, rounded to ms)."""
        out: dict[str, Any] = {f"t_{c}": round(self.cats.get(c, 0.0), 3) for c in CATEGORIES}
        out.update(parts=self.parts, good=self.good, scrap=self.scrap)
        out.update(self.kpis())
        out.update(self.cycle_stats())
        return out

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "start": self.start,
                "end": None if math.isinf(self.end) else self.end,
                "times": self.times, "cats": self.cats, "parts": self.parts,
                "good": self.good, "scrap": self.scrap, "ideal": self.ideal,
                "cycles": self.cycles}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Tally:
        return cls(str(d["key"]), float(d["start"]),
                   math.inf if d.get("end") is None else float(d["end"]),
                   {str(k): float(v) for k, v in d.get("times", {}).items()},
                   {str(k): float(v) for k, v in d.get("cats", {}).items()},
                   int(d.get("parts", 0)), int(d.get("good", 0)), int(d.get("scrap", 0)),
                   float(d.get("ideal", 0.0)), [float(x) for x in d.get("cycles", [])])
