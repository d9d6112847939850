"""The production tracker against scripted timelines whose facts are computed here by
hand (durations, counts, KPIs as ISO 22400 defines them)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.model import STATE, Batch
from gateway.production.machine import (
    KPI_PROFILE,
    ORDER_PROFILE,
    STATE_PROFILE,
    Machine,
    counter_delta,
)
from gateway.production.shifts import Calendar
from gateway.production.spec import ProductionConfig, ProductionSpec, Shift

UTC = ZoneInfo("UTC")
T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC).timestamp()  # a Monday, 06:00 UTC


def _spec(**kw: Any) -> ProductionSpec:
    base: dict[str, Any] = {"count": "cycles", "scrap": "scrap", "ideal_cycle": 50.0,
                            "planned_stops": ["maintenance"], "order": "order_no",
                            "order_quantity": "order_qty",
                            "reasons": {"point": "alarm", "map": {101: "hydraulics"}}}
    base.update(kw)
    return ProductionSpec.model_validate(base)


def _machine(spec: ProductionSpec | None = None, shifts: list[Shift] | None = None,
             tz: str = "UTC") -> Machine:
    cfg = ProductionConfig(timezone=tz, shifts=shifts if shifts is not None else [
        Shift(name="early", start="06:00", end="14:00"),
        Shift(name="late", start="14:00", end="22:00")], kpi_interval=60)
    m = Machine("gw", "press1", spec or _spec(), Calendar(cfg), 60.0,
                {"cycles": 1 << 16, "scrap": 1 << 16})
    m.start(T0)
    return m


class Plant:
    """Drives a machine second by second, as the gateway does: observe per poll, tick
    once a second."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.t = T0
        self.events: list[Batch] = []
        self.values: dict[str, Any] = {"cycles": 1000, "scrap": 7, "alarm": 0}

    def run(self, seconds: int, state: str | None, every: int = 0, scrap_every: int = 0,
            poll: bool = True) -> None:
        for i in range(seconds):
            self.t += 1
            if every and i % every == every - 1:
                self.values["cycles"] = (self.values["cycles"] + 1) % (1 << 16)
            if scrap_every and i % scrap_every == scrap_every - 1:
                self.values["scrap"] += 1
            if poll:
                self.events += self.m.observe(self.t, state, dict(self.values))
            self.events += self.m.tick(self.t)

    def of(self, profile: str) -> list[dict[str, Any]]:
        return [{**b.values, "_ts": b.ts_ms / 1000} for b in self.events if b.profile == profile]


def test_counter_delta_wraps_and_resets() -> None:
    assert counter_delta(None, 5, 1 << 16) == 0
    assert counter_delta(10, 13, 1 << 16) == 3
    assert counter_delta(65534, 2, 1 << 16) == 4  # wrapped
    assert counter_delta(500, 3, 1 << 16) == 3  # reset by a power cycle: counted from 0
    assert counter_delta(500, 3, None) == 3


def test_a_scripted_shift_gives_iso22400_kpis() -> None:
    p = Plant(_machine())
    p.run(1800, "running", every=60, scrap_every=600)  # 30 min, 30 cycles, 3 scrap
    p.values["alarm"] = 101
    p.run(600, "fault")  # 10 min down, reason from the alarm code
    p.values["alarm"] = 0
    p.run(600, "maintenance")  # 10 min planned stop
    p.run(300, "offline")  # 5 min nobody knows (device offline)
    p.values["cycles"] = 0  # power cycle: the counter starts again at 0
    p.run(1200, "running", every=60)  # 20 min, 20 cycles
    k = p.of(KPI_PROFILE)[-1]
    assert k["shift"] == "early" and not k["final"]
    assert k["t_run"] == pytest.approx(3000, abs=2)
    assert k["t_down"] == pytest.approx(600, abs=2)
    assert k["t_planned"] == pytest.approx(600, abs=2)
    assert k["t_unknown"] == pytest.approx(300, abs=2)
    assert k["parts"] == 50 and k["scrap"] == 3 and k["good"] == 47
    # ISO 22400: A = APT / PBT, P = PQ * ideal / APT, Q = GQ / PQ
    a, perf, q = 3000 / 3600, 50 * 50 / 3000, 47 / 50
    assert k["availability"] == pytest.approx(a, abs=1e-3)
    assert k["performance"] == pytest.approx(perf, abs=1e-3)
    assert k["quality"] == pytest.approx(q, abs=1e-3)
    assert k["oee"] == pytest.approx(a * perf * q, abs=2e-3)
    assert k["cycle_mean"] == pytest.approx(60, abs=0.5)
    states = json.loads(k["states"])
    assert states["fault"] == pytest.approx(600, abs=2)
    # the state intervals, with the reasons and the previous interval's facts
    iv = [(e["state"], e.get("reason"), e.get("prev_s")) for e in p.of(STATE_PROFILE)]
    assert [s for s, _, _ in iv] == ["running", "fault", "maintenance", "unknown", "running"]
    assert iv[1][1] == "hydraulics" and iv[2][1] == "maintenance"
    assert iv[2][2] == pytest.approx(600, abs=1)
    assert all(b.priority == STATE for b in p.events if b.profile == STATE_PROFILE)
    first_running = p.of(STATE_PROFILE)[1]
    assert first_running["prev_parts"] == 30


def test_the_shift_end_closes_the_shift_with_a_final_record() -> None:
    p = Plant(_machine())
    p.run(8 * 3600 - 60, "running", every=100)
    p.run(120, "running", every=100)  # across 14:00
    finals = [k for k in p.of(KPI_PROFILE) if k["final"]]
    assert len(finals) == 1
    f = finals[0]
    assert f["shift"] == "early" and f["_ts"] == T0 + 8 * 3600
    assert f["t_run"] == pytest.approx(8 * 3600, abs=1)
    late = p.of(KPI_PROFILE)[-1]
    assert late["shift"] == "late" and late["t_run"] == pytest.approx(60, abs=2)
    assert p.m.summary()["shift"] == "late"


def test_time_outside_every_shift_counts_in_no_kpi() -> None:
    m = _machine(shifts=[Shift(name="early", start="06:00", end="07:00")])
    p = Plant(m)
    p.run(2 * 3600, "running")
    finals = [k for k in p.of(KPI_PROFILE) if k["final"]]
    assert len(finals) == 1 and finals[0]["t_run"] == pytest.approx(3600, abs=1)
    assert [k for k in p.of(KPI_PROFILE) if k["_ts"] > T0 + 3600] == []
    assert m.day is not None and m.day.cats["run"] == pytest.approx(7200, abs=1)


def test_a_restart_counts_the_gap_as_unknown_and_keeps_the_counts() -> None:
    p = Plant(_machine())
    p.run(600, "running", every=60)
    saved = json.loads(json.dumps(p.m.to_json()))
    stopped_at = p.t
    # gateway down for 5 minutes; the machine made 5 more cycles meanwhile
    m2 = _machine()
    p2 = Plant(m2)
    p2.t = stopped_at + 300
    p2.values = {**p.values, "cycles": p.values["cycles"] + 5}
    p2.events += m2.restore(saved, p2.t)
    p2.run(60, "running")
    iv = p2.of(STATE_PROFILE)
    assert [e["state"] for e in iv] == ["unknown", "running"]
    assert iv[0]["_ts"] == pytest.approx(stopped_at) and iv[1]["prev_s"] == pytest.approx(301)
    assert m2.shift is not None
    assert m2.shift.cats["unknown"] == pytest.approx(301, abs=1)
    assert m2.shift.parts == 10 + 5


def test_orders_from_the_plc_and_from_a_command() -> None:
    p = Plant(_machine())
    p.values.update(order_no="PO-1", order_qty=5)
    p.run(400, "running", every=60)
    orders = p.of(ORDER_PROFILE)
    assert orders[0]["order"] == "PO-1" and orders[0]["planned"] == 5
    done = [o for o in orders if o["status"] == "done"]
    assert done and done[0]["good"] == 5 and done[0]["_ts"] == pytest.approx(T0 + 300)
    # a command starts the next order; the PLC's code (unchanged) does not restart it
    p.events += p.m.start_order(p.t, "PO-2", 100, "TYRE-205", "cli")
    p.run(3600, "running", every=60)
    o2 = [o for o in p.of(ORDER_PROFILE) if o["order"] == "PO-2"]
    last = o2[-1]
    assert p.m.order is not None and p.m.order.tally is not None
    assert p.m.order.tally.good == 60  # one a minute for an hour
    assert last["good"] in (59, 60) and last["planned"] == 100  # (the last minute's record)
    assert last["rate_h"] == pytest.approx(60, abs=1)
    assert last["eta"] / 1000 == pytest.approx(last["_ts"] + 40 * 60, abs=90)
    closed = [o for o in p.of(ORDER_PROFILE) if o["status"] == "closed"]
    assert [o["order"] for o in closed] == []  # PO-1 was done, not closed
    p.events += p.m.stop_order(p.t)
    assert p.of(ORDER_PROFILE)[-1]["status"] == "closed"


def test_cycle_signal_counts_rising_edges() -> None:
    m = _machine(_spec(count=None, cycle_signal="done", scrap=None, parts_per_cycle=2))
    t = T0
    for i in range(100):
        t += 1
        m.observe(t, "running", {"done": i % 10 == 9})
    assert m.shift is not None and m.shift.parts == 20 and m.shift.good == 20


def test_an_unknown_code_is_named_by_its_value() -> None:
    p = Plant(_machine())
    p.values["alarm"] = 77
    p.run(5, "fault")
    assert p.of(STATE_PROFILE)[-1]["reason"] == "code 77"


def test_night_shift_and_dst() -> None:
    cfg = ProductionConfig(timezone="Europe/Berlin", shifts=[
        Shift(name="night", start="22:00", end="06:00"),
        Shift(name="day", start="06:00", end="22:00", days=["mon", "tue", "wed", "thu",
                                                             "fri"])])
    cal = Calendar(cfg)
    berlin = ZoneInfo("Europe/Berlin")
    t = datetime(2026, 12, 8, 2, 0, tzinfo=berlin).timestamp()  # Tuesday 02:00
    w = cal.shift_at(t)
    assert w is not None and w.key == "2026-12-07/night"
    assert w.end - w.start == 8 * 3600
    # the night of the change to summer time (29 March 2026) is an hour shorter
    t = datetime(2026, 3, 29, 1, 0, tzinfo=berlin).timestamp()
    w = cal.shift_at(t)
    assert w is not None and w.end - w.start == 7 * 3600
    # Saturday 10:00: no day shift on weekends
    assert cal.shift_at(datetime(2026, 12, 12, 10, 0, tzinfo=berlin).timestamp()) is None


def test_overlapping_shifts_are_refused() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        ProductionConfig(shifts=[Shift(name="a", start="06:00", end="14:00"),
                                 Shift(name="b", start="13:00", end="20:00")])
    with pytest.raises(ValueError, match="time zone"):
        ProductionConfig(timezone="Mars/Olympus")
