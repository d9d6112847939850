"""Property tests of the production tracker: for any interleaving of polls, state
changes, counter steps (through the counter's wrap), outages and a gateway restart, no
time and no part is lost or counted twice, and the state records form one chain."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Batch
from gateway.production.machine import KPI_PROFILE, STATE_PROFILE, Machine
from gateway.production.shifts import Calendar
from gateway.production.spec import ProductionConfig, ProductionSpec

T0 = datetime(2026, 12, 7, 20, 0, tzinfo=ZoneInfo("UTC")).timestamp()
MOD = 1 << 16
STATES = ["running", "idle", "fault", "maintenance", "offline", None]

step = st.tuples(
    st.floats(min_value=0.05, max_value=5000.0),  # seconds until this poll
    st.sampled_from(STATES),  # what the gateway sees (None, offline: unknown, no values)
    st.integers(min_value=0, max_value=40),  # parts made since the step before
)


def _run(steps: list[tuple[float, str | None, int]], restart_at: int | None
         ) -> tuple[Machine, list[Batch], float, int]:
    spec = ProductionSpec.model_validate({"count": "c", "ideal_cycle": 10,
                                          "planned_stops": ["maintenance"]})
    cal = Calendar(ProductionConfig(kpi_interval=60))  # one shift a day, 00:00-24:00

    def machine() -> Machine:
        return Machine("gw", "m", spec, cal, 60.0, {"c": MOD})

    m = machine()
    m.start(T0)
    t, counter = T0, MOD - 300  # wraps through zero on the way
    expected, pending, seen_once = 0, 0, False
    events: list[Batch] = []
    for i, (dt, state, made) in enumerate(steps):
        t += dt
        counter = (counter + made) % MOD
        pending += made
        if state in (None, "offline"):
            events += m.observe(t, state, {})
        else:
            if seen_once:  # parts since the last reading are counted at this one
                expected += pending
            pending, seen_once = 0, True
            events += m.observe(t, state, {"c": counter})
        events += m.tick(t)
        if i == restart_at:
            saved: dict[str, Any] = m.to_json()
            m = machine()
            t += 30.0
            events += m.restore(saved, t)
    return m, events, t, expected


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=60), st.integers(min_value=-1, max_value=60))
def test_no_time_and_no_part_is_lost_or_counted_twice(
        steps: list[tuple[float, str | None, int]], restart: int) -> None:
    m, events, t, expected = _run(steps, restart if restart >= 0 else None)
    finals = [b.values for b in events if b.profile == KPI_PROFILE and b.values["final"]]
    assert m.shift is not None
    # time: every second since the start is in exactly one shift (final record or the
    # current one), in one of the four categories
    total = sum(float(f["t_run"]) + float(f["t_down"]) + float(f["t_planned"])  # type: ignore[arg-type]
                + float(f["t_unknown"]) for f in finals) + m.shift.elapsed  # type: ignore[arg-type]
    assert abs(total - (t - T0)) < 0.01 * len(finals) + 1e-3
    # parts: what the counter advanced between the first and the last good reading
    parts = sum(int(f["parts"]) for f in finals) + m.shift.parts  # type: ignore[call-overload]
    assert parts == expected
    # the state records form one chain, in strictly increasing time
    chain = [b for b in events if b.profile == STATE_PROFILE]
    for a, b in itertools.pairwise(chain):
        assert b.values["prev"] == a.values["state"]
        assert b.ts_ms > a.ts_ms
