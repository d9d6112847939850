"""One machine's production facts, derived at the edge from every poll.

:meth:`Machine.observe` runs after the pipeline on every cycle of the device (and when it
goes offline) with the machine state and the current good values of the points the
``production:`` section names; :meth:`Machine.tick` runs once a second from the
production service. Both return event batches for the durable spool:

- ``edgegw/state``: a state interval began (state, reason; the previous interval's
  state, reason, duration and parts), state priority;
- ``edgegw/kpi``: the shift so far, every ``kpi_interval`` (``final`` at shift end);
- ``edgegw/order``: an order's progress (at start, every ``kpi_interval``, when done,
  when closed).

Counts come from counter deltas: a counter that goes down wrapped (it was near the top of
its type's range) or was reset (power cycle: counted from zero). Time is split at shift
and day boundaries (:mod:`gateway.production.shifts`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.model import PROCESS, STATE, Batch, Value
from gateway.production.shifts import Calendar, Window
from gateway.production.spec import UNKNOWN, ProductionSpec
from gateway.production.tally import Tally

STATE_PROFILE = "edgegw/state@1"
KPI_PROFILE = "edgegw/kpi@1"
ORDER_PROFILE = "edgegw/order@1"
GROUP = "production"
#: record fields of each event kind (the compact wire format's schemas)
FIELDS = {
    STATE_PROFILE: ("state", "reason", "cat", "prev", "prev_reason", "prev_cat", "prev_s",
                    "prev_parts", "product", "recipe", "order"),
    KPI_PROFILE: ("shift", "shift_start", "shift_end", "final", "t_run", "t_down", "t_planned",
                  "t_unknown", "parts", "good", "scrap", "availability", "performance",
                  "quality", "oee", "cycle_mean", "cycle_p95", "states"),
    ORDER_PROFILE: ("order", "product", "status", "planned", "parts", "good", "scrap",
                    "started", "rate_h", "eta", "t_run"),
}


def counter_delta(prev: int | None, cur: int, modulus: int | None) -> int:
    """Parts counted between two readings of a counter: a wrap when it was in the top
    tenth of its range and is now in the bottom tenth, else a drop is a reset to zero."""
    if prev is None:
        return 0
    if cur >= prev:
        return cur - prev
    if modulus and prev >= modulus * 0.9 and cur < modulus * 0.1:
        return cur + modulus - prev
    return cur


def _int(v: Value) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return int(v)


def _text(v: Value) -> str | None:
    if v is None or isinstance(v, tuple | bool):
        return None
    s = str(v).strip()
    return s if s and s != "0" else None


@dataclass(slots=True)
class Order:
    code: str
    start: float
    source: str  # point, cli, mqtt
    planned: int | None = None
    product: str | None = None
    status: str = "running"
    tally: Tally | None = None

    def to_json(self) -> dict[str, Any]:
        assert self.tally is not None
        return {"code": self.code, "start": self.start, "source": self.source,
                "planned": self.planned, "product": self.product, "status": self.status,
                "tally": self.tally.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Order:
        return cls(str(d["code"]), float(d["start"]), str(d.get("source", "point")),
                   d.get("planned"), d.get("product"), str(d.get("status", "running")),
                   Tally.from_json(d["tally"]))


class Machine:
    def __init__(self, gateway: str, device: str, spec: ProductionSpec, calendar: Calendar,
                 kpi_interval: float, moduli: Mapping[str, int | None]) -> None:
        self.gateway = gateway
        self.device = device
        self.spec = spec
        self.cal = calendar
        self.kpi_interval = kpi_interval
        self.moduli = moduli
        self.running = frozenset(spec.running)
        self.planned = frozenset(spec.planned_stops)
        self.ids: dict[str, str] = {}
        self.state = UNKNOWN
        self.reason: str | None = None
        self.since = 0.0
        self.interval_parts = 0
        self.last = 0.0  # time accrued up to
        self.counters: dict[str, int] = {}
        self.signal: bool | None = None
        self.last_cycle: float | None = None  # time of the last counted cycle while running
        self.context: dict[str, str] = {}  # product, recipe, order (last good values)
        self.shift: Tally | None = None
        self.shift_window: Window | None = None
        self.no_shift_until = 0.0
        self.day: Tally | None = None
        self.order: Order | None = None
        self.order_seen: str | None = None  # the order point's last code
        self.next_kpi = 0.0
        self.state_ms = 0  # the time of the last state event, ms

    # -- categories and events ------------------------------------------------------------
    def category(self, state: str) -> str:
        if state == UNKNOWN:
            return "unknown"
        if state in self.running:
            return "run"
        return "planned" if state in self.planned else "down"

    def _batch(self, profile: str, ts: float, values: dict[str, Value], prio: int) -> Batch:
        ms = int(ts * 1000)
        if profile == STATE_PROFILE:
            # a point in InfluxDB is its series and time: two state changes in one
            # millisecond (two poll groups read at once) must not overwrite each other
            ms = max(ms, self.state_ms + 1)
            self.state_ms = ms
        return Batch(self.gateway, self.device, profile, ms, values, ids=self.ids,
                     group=GROUP, priority=prio)

    # -- time -----------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """A new machine (no saved state): unknown from now on."""
        self.since = self.last = now
        self.next_kpi = (now // self.kpi_interval + 1) * self.kpi_interval
        self._windows(now)

    def _windows(self, t: float) -> list[Batch]:
        """Make the shift and day tallies the ones ``t`` falls in; the final KPI record of
        a shift that ended."""
        out: list[Batch] = []
        if self.shift_window is not None and not self.shift_window.contains(t):
            out.append(self._kpi(self.shift_window.end, final=True))
            self.shift = self.shift_window = None
        if self.shift_window is None and t >= self.no_shift_until:
            w = self.cal.shift_at(t)
            if w is None:
                self.no_shift_until = self.cal.next_change(t)
            else:
                self.shift_window = w
                if self.shift is None or self.shift.key != w.key:
                    self.shift = Tally(w.key, w.start, w.end)
        if self.day is None or not (self.day.start <= t < self.day.end):
            d = self.cal.day_at(t)
            self.day = Tally(d.key, d.start, d.end)
        return out

    def _advance(self, now: float) -> list[Batch]:
        """Accrue the time since the last call to the current state, window by window."""
        out: list[Batch] = []
        t = self.last
        cat = self.category(self.state)
        while t < now:
            out += self._windows(t)
            assert self.day is not None
            end = min(now, self.day.end,
                      self.shift_window.end if self.shift_window else self.no_shift_until)
            if end <= t:  # (cannot happen: the windows hold t; never loop forever)
                end = now
            dt = end - t
            for tally in (self.shift, self.day, self.order.tally if self.order else None):
                if tally is not None:
                    tally.add_time(self.state, cat, dt)
            t = end
        self.last = max(self.last, now)
        out += self._windows(self.last)
        return out

    # -- what the gateway calls -------------------------------------------------------------
    def observe(self, ts: float, machine_state: str | None, values: Mapping[str, Value]) \
            -> list[Batch]:
        """One cycle of the device: ``machine_state`` None or ``offline`` is unknown;
        ``values`` holds the good current values (a point missing is not known now)."""
        out = self._advance(ts)
        state = UNKNOWN if machine_state in (None, "offline") else str(machine_state)
        if state != UNKNOWN:
            self._context(ts, values, out)
            if self._count(ts, state, values):  # the order's planned quantity is reached
                out.append(self._order_record(ts))
        reason = self._reason(state, values)
        if state != self.state or reason != self.reason:
            out.append(self._interval(ts, state, reason))
        return out

    def tick(self, now: float) -> list[Batch]:
        """Once a second: accrue time; KPI and order records when due."""
        out = self._advance(now)
        if now >= self.next_kpi:
            at = self.next_kpi
            self.next_kpi = (now // self.kpi_interval + 1) * self.kpi_interval
            if self.shift is not None and self.shift_window is not None \
                    and at < self.shift_window.end:
                out.append(self._kpi(at, final=False))
            if self.order is not None:
                out.append(self._order_record(at))
        return out

    # -- parts of observe --------------------------------------------------------------------
    def _reason(self, state: str, values: Mapping[str, Value]) -> str | None:
        if state == UNKNOWN or state in self.running:
            return None
        rs = self.spec.reasons
        if rs is None or rs.point not in values:
            return state
        code = values[rs.point]
        if code is None or code in rs.ok or str(code) in (str(x) for x in rs.ok):
            return state
        for key in (code if isinstance(code, int | str) else None, str(code), _int(code)):
            if key is not None and key in rs.map:
                return rs.map[key]
        return f"code {code}"

    def _interval(self, ts: float, state: str, reason: str | None) -> Batch:
        v: dict[str, Value] = {"state": state, "cat": self.category(state),
                               "prev": self.state, "prev_cat": self.category(self.state),
                               "prev_s": round(max(0.0, ts - self.since), 3),
                               "prev_parts": self.interval_parts}
        if reason is not None:
            v["reason"] = reason
        if self.reason is not None:
            v["prev_reason"] = self.reason
        for k in ("product", "recipe", "order"):
            if k in self.context:
                v[k] = self.context[k]
        self.state, self.reason, self.since, self.interval_parts = state, reason, ts, 0
        if state not in self.running:
            self.last_cycle = None
        return self._batch(STATE_PROFILE, ts, v, STATE)

    def _context(self, ts: float, values: Mapping[str, Value], out: list[Batch]) -> None:
        spec = self.spec
        for key, point in (("product", spec.product), ("recipe", spec.recipe)):
            if point is not None and point in values:
                text = _text(values[point])
                if text is not None:
                    self.context[key] = text
        if spec.order is not None and spec.order in values:
            code = _text(values[spec.order])
            if code is not None and code != self.order_seen:
                # a new code at the machine (a command's order stays until the PLC's changes)
                self.order_seen = code
                planned = _int(values.get(spec.order_quantity)) if spec.order_quantity else None
                out += self.start_order(ts, code, planned, self.context.get("product"),
                                        "point")

    def _tallies(self) -> list[Tally]:
        return [t for t in (self.shift, self.day, self.order.tally if self.order else None)
                if t is not None]

    def _count(self, ts: float, state: str, values: Mapping[str, Value]) -> bool:
        """Count the parts since the last cycle; True when this completed the order."""
        spec = self.spec
        cycles = 0
        if spec.count is not None:
            cycles = self._delta(spec.count, values)
        elif spec.cycle_signal is not None and spec.cycle_signal in values:
            on = bool(values[spec.cycle_signal])
            cycles = 1 if on and self.signal is False else 0
            self.signal = on
        dg = self._delta(spec.good, values) if spec.good else 0
        ds = self._delta(spec.scrap, values) if spec.scrap else 0
        parts = cycles * spec.parts_per_cycle
        if spec.good and spec.scrap:
            good, scrap = dg, ds
        elif spec.good:
            good, scrap = dg, parts - dg
        elif spec.scrap:
            good, scrap = parts - ds, ds
        else:
            good, scrap = parts, 0
        if not (parts or good or scrap):
            return False
        ideal = self._ideal(values) * cycles
        cycle = None
        if cycles and state in self.running:
            if self.last_cycle is not None:
                cycle = (ts - self.last_cycle) / cycles
            self.last_cycle = ts
        self.interval_parts += parts
        for t in self._tallies():
            t.parts += parts
            t.good += good
            t.scrap += scrap
            t.ideal += ideal
            if cycle is not None:
                t.add_cycle(cycle)
        if self.order is not None and self.order.planned and self.order.status == "running":
            assert self.order.tally is not None
            if self.order.tally.good >= self.order.planned:
                self.order.status = "done"
                return True
        return False

    def _delta(self, point: str, values: Mapping[str, Value]) -> int:
        if point not in values:
            return 0
        cur = _int(values[point])
        if cur is None:
            return 0
        d = counter_delta(self.counters.get(point), cur, self.moduli.get(point))
        self.counters[point] = cur
        return d

    def _ideal(self, values: Mapping[str, Value]) -> float:
        if self.spec.ideal_cycle is not None:
            return self.spec.ideal_cycle
        p = self.spec.ideal_cycle_point
        v = values.get(p) if p else None
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 and math.isfinite(v):
            return float(v)
        return 0.0

    # -- orders ---------------------------------------------------------------------------
    def start_order(self, ts: float, code: str, planned: int | None, product: str | None,
                    source: str) -> list[Batch]:
        """A new order on this machine (the previous one is closed)."""
        out = self.stop_order(ts)
        self.order = Order(code, ts, source, planned, product, "running", Tally(code, ts))
        self.context["order"] = code
        out.append(self._order_record(ts))
        return out

    def stop_order(self, ts: float) -> list[Batch]:
        if self.order is None:
            return []
        out = self._advance(ts)
        if self.order.status == "running":
            self.order.status = "closed"
        out.append(self._order_record(ts))
        self.order = None
        self.context.pop("order", None)
        return out

    def _order_record(self, ts: float) -> Batch:
        o = self.order
        assert o is not None
        t = o.tally
        assert t is not None
        v: dict[str, Value] = {"order": o.code, "status": o.status, "parts": t.parts,
                               "good": t.good, "scrap": t.scrap,
                               "started": int(o.start * 1000),
                               "t_run": round(t.cats.get("run", 0.0), 3)}
        if o.product:
            v["product"] = o.product
        if o.planned is not None:
            v["planned"] = o.planned
        elapsed = ts - o.start
        if elapsed >= 60 and t.good > 0:
            rate = t.good / elapsed * 3600
            v["rate_h"] = round(rate, 2)
            if o.planned is not None and o.planned > t.good:
                v["eta"] = int((ts + (o.planned - t.good) / rate * 3600) * 1000)
        return self._batch(ORDER_PROFILE, ts, v, PROCESS)

    def _kpi(self, ts: float, final: bool) -> Batch:
        s = self.shift
        w = self.shift_window
        assert s is not None
        assert w is not None
        v: dict[str, Value] = {"shift": w.name, "shift_start": int(w.start * 1000),
                               "shift_end": int(w.end * 1000), "final": final}
        v.update(s.record())
        v["states"] = json.dumps({k: round(x, 3) for k, x in s.times.items()},
                                 separators=(",", ":"), sort_keys=True)
        return self._batch(KPI_PROFILE, ts, v, PROCESS)

    # -- status and persistence ---------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "since": int(self.since * 1000)}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.shift is not None and self.shift_window is not None:
            out["shift"] = self.shift_window.name
            out["shift_parts"] = self.shift.parts
            out.update({f"shift_{k}": v for k, v in self.shift.kpis().items()})
        if self.day is not None:
            out["today_parts"] = self.day.parts
            k = self.day.kpis()
            if "availability" in k:
                out["today_availability"] = k["availability"]
        if self.order is not None and self.order.tally is not None:
            out["order"] = {"code": self.order.code, "status": self.order.status,
                            "planned": self.order.planned, "good": self.order.tally.good}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since": self.since,
                "interval_parts": self.interval_parts, "last": self.last,
                "counters": self.counters, "signal": self.signal, "context": self.context,
                "order_seen": self.order_seen, "state_ms": self.state_ms,
                "shift": self.shift.to_json() if self.shift else None,
                "day": self.day.to_json() if self.day else None,
                "order": self.order.to_json() if self.order else None}

    def restore(self, d: dict[str, Any], now: float) -> list[Batch]:
        """Take up a saved state: the time since it was saved (the gateway was not
        running) is unknown; a shift that ended meanwhile gets its final record."""
        self.state = str(d.get("state", UNKNOWN))
        self.reason = d.get("reason")
        self.since = float(d.get("since", now))
        self.interval_parts = int(d.get("interval_parts", 0))
        self.last = min(float(d.get("last", now)), now)
        self.counters = {str(k): int(v) for k, v in d.get("counters", {}).items()}
        self.signal = d.get("signal")
        self.order_seen = d.get("order_seen")
        self.state_ms = int(d.get("state_ms", 0))
        self.context = {str(k): str(v) for k, v in d.get("context", {}).items()}
        self.shift = Tally.from_json(d["shift"]) if d.get("shift") else None
        self.day = Tally.from_json(d["day"]) if d.get("day") else None
        self.order = Order.from_json(d["order"]) if d.get("order") else None
        if self.shift is not None:
            w = self.cal.shift_at(self.shift.start)
            self.shift_window = w if w is not None and w.key == self.shift.key else None
            if self.shift_window is None:
                self.shift = None
        self.next_kpi = (now // self.kpi_interval + 1) * self.kpi_interval
        out: list[Batch] = []
        if self.state != UNKNOWN:  # the gateway stopped: nobody knows from then on
            out += self._advance(self.last)
            out.append(self._interval(self.last, UNKNOWN, None))
        out += self._advance(now)
        return out
