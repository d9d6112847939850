"""Scaling, quality, deadband, report-by-exception with heartbeat, machine state."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Device, DeviceConfig
from gateway.model import Quality, Reading
from gateway.pipeline import DevicePipeline
from gateway.profiles import Profile

PROFILE = Profile.model_validate({
    "vendor": "t", "model": "m",
    "state": {"default": "idle", "rules": [
        {"state": "fault", "when": {"point": "alarm", "eq": True}},
        {"state": "running", "when": {"all": [{"point": "speed", "gt": 0},
                                              {"point": "mode", "in": [1, 2]}]}},
    ]},
    "points": [
        {"name": "speed", "table": "holding", "address": 0, "deadband": {"absolute": 5}},
        {"name": "temp", "table": "holding", "address": 1, "type": "int16", "scale": 0.1},
        {"name": "flow", "table": "holding", "address": 2, "type": "float32",
         "deadband": {"percent": 10}},
        {"name": "mode", "table": "holding", "address": 4},
        {"name": "alarm", "table": "coil", "address": 0, "type": "bool", "priority": "alarm"},
        {"name": "energy", "table": "input", "address": 0, "type": "uint32",
         "priority": "bulk"},
        {"name": "hours", "table": "input", "address": 2, "type": "uint32",
         "priority": "bulk"},
    ],
})
NAMES = ("speed", "temp", "flow", "mode")


def pipe(heartbeat: float = 60.0) -> DevicePipeline:
    dc = DeviceConfig.model_validate({"id": "d1", "profile": "t/m", "identifier": "88.1.2/D1",
                                     "connection": {"kind": "modbus-tcp", "host": "x"}})
    return DevicePipeline("gw", Device(dc, "t/m", PROFILE, PROFILE.workarounds,
                                       dict(PROFILE.poll_groups)), heartbeat)


def rd(values: list[object], ts: float, names: tuple[str, ...] = NAMES) -> Reading:
    return Reading(names, list(values), ts)  # type: ignore[arg-type]


def test_first_cycle_reports_everything_scaled_as_float() -> None:
    p = pipe()
    b = p.process("g", [rd([100, 214, 1.5, 1], 10.0), rd([False], 10.0, ("alarm",))])
    assert b is not None
    assert b.values == {"speed": 100, "temp": 21.4, "flow": 1.5, "mode": 1, "alarm": False}
    assert isinstance(b.values["temp"], float)
    assert b.state == "running"
    assert b.ids == {"device": "88.1.2/D1"}
    assert b.ts_ms == 10_000


def test_deadband_absolute_and_percent() -> None:
    p = pipe()
    p.process("g", [rd([100, 214, 10.0, 1], 0.0)])
    b = p.process("g", [rd([104, 214, 10.9, 1], 1.0)])  # within both deadbands
    assert b is None
    b = p.process("g", [rd([106, 214, 11.1, 1], 2.0)])
    assert b is not None and b.values == {"speed": 106, "flow": 11.1}


def test_heartbeat_reports_unchanged_points() -> None:
    p = pipe(heartbeat=5.0)
    p.process("g", [rd([1, 2, 3.0, 1], 0.0)])
    assert p.process("g", [rd([1, 2, 3.0, 1], 4.0)]) is None
    b = p.process("g", [rd([1, 2, 3.0, 1], 5.0)])
    assert b is not None and set(b.values) == set(NAMES)


def test_bad_quality_reported_once_then_recovery_reported() -> None:
    p = pipe()
    p.process("g", [rd([1, 2, 3.0, 1], 0.0)])
    err = Reading(NAMES, [None] * 4, 1.0, "modbus exception 2 (illegal data address)")
    b = p.process("g", [err])
    assert b is not None
    assert b.values == dict.fromkeys(NAMES)
    assert b.quality["speed"] == (Quality.BAD, "modbus exception 2 (illegal data address)")
    assert p.process("g", [Reading(NAMES, [None] * 4, 2.0, "modbus exception 2 (x)")]) is None
    b = p.process("g", [rd([1, 2, 3.0, 1], 3.0)])
    assert b is not None and set(b.values) == set(NAMES) and not b.quality


def test_non_finite_float_is_bad() -> None:
    p = pipe()
    b = p.process("g", [rd([1, 2, math.nan, 1], 0.0)])
    assert b is not None
    assert b.values["flow"] is None
    assert b.quality["flow"] == (Quality.BAD, "not a finite number")


def test_state_changes_are_reported_even_without_value_changes() -> None:
    p = pipe()
    p.process("g", [rd([100, 2, 3.0, 1], 0.0), rd([False], 0.0, ("alarm",))])
    b = p.process("g", [rd([True], 1.0, ("alarm",))])
    assert b is not None and b.state == "fault"


def test_state_ignores_bad_points() -> None:
    p = pipe()
    p.process("g", [rd([100, 2, 3.0, 1], 0.0)])
    b = p.process("g", [Reading(NAMES, [None] * 4, 1.0, "timeout")])
    assert b is not None and b.state == "idle"


def test_offline_then_every_point_again() -> None:
    p = pipe()
    p.process("g", [rd([1, 2, 3.0, 1], 0.0)])
    off = p.offline("no response", 1.0)
    assert off.state == "offline" and off.error == "no response" and not off.values
    b = p.process("g", [rd([1, 2, 3.0, 1], 2.0)])
    assert b is not None and set(b.values) == set(NAMES)


# -- readings with per-value quality and source timestamps (OPC UA) --------------------
def test_per_value_status_marks_only_those_points() -> None:
    p = pipe()
    r = Reading(NAMES, [100, None, 1.5, 1], 10.0,
                status={1: (Quality.BAD, "BadSensorFailure"),
                        2: (Quality.UNCERTAIN, "UncertainLastUsableValue")},
                times=[10.0] * 4)
    b = p.process("g", [r])
    assert b is not None
    assert b.values == {"speed": 100, "temp": None, "flow": 1.5, "mode": 1}
    assert b.quality == {"temp": (Quality.BAD, "BadSensorFailure"),
                         "flow": (Quality.UNCERTAIN, "UncertainLastUsableValue")}
    # same values, flow good again: only the quality change of flow is reported
    r2 = Reading(NAMES, [100, None, 1.5, 1], 11.0,
                 status={1: (Quality.BAD, "BadSensorFailure")}, times=[11.0] * 4)
    b2 = p.process("g", [r2])
    assert b2 is not None and b2.values == {"flow": 1.5} and b2.quality == {}


def test_source_timestamps_that_differ_from_the_batch_are_kept() -> None:
    p = pipe()
    r = Reading(("speed", "temp"), [100, 214], 20.0, times=[20.0, 17.25])
    b = p.process("g", [r])
    assert b is not None
    assert b.ts_ms == 20_000 and b.values == {"speed": 100, "temp": 21.4}
    assert b.src == {"temp": 17_250}


def test_pushed_readings_with_new_name_tuples_do_not_grow_caches() -> None:
    p = pipe()
    for i in range(200):
        p.process("g", [Reading(("speed",), [i * 10], float(i), times=[float(i)])])
    assert len(p._plans) == 0


def test_product_context_tags_later_batches_only() -> None:
    p = pipe()
    before = p.process("g", [rd([100, 214, 1.5, 1], 10.0)])
    p.set_context("product", "88.118.8/TYRE-2026-000123")
    after = p.process("g", [rd([200, 214, 1.5, 1], 11.0)])
    assert before is not None and after is not None
    assert before.ids == {"device": "88.1.2/D1"}  # made earlier: unchanged
    assert after.ids == {"device": "88.1.2/D1", "product": "88.118.8/TYRE-2026-000123"}
    assert p.offline("gone", 12.0).ids["product"] == "88.118.8/TYRE-2026-000123"


def test_priority_alarm_and_state_changes_only() -> None:
    from gateway.model import ALARM, PROCESS, STATE

    p = pipe(heartbeat=10.0)
    first = p.process("g", [rd([100, 2, 3.0, 1], 0.0), rd([False], 0.0, ("alarm",))])
    assert first is not None and first.priority == ALARM  # first value of an alarm point
    b = p.process("g", [rd([200, 2, 3.0, 1], 1.0), rd([False], 1.0, ("alarm",))])
    assert b is not None and b.priority == PROCESS  # only a process value changed
    b = p.process("g", [rd([200, 2, 3.0, 1], 2.0), rd([True], 2.0, ("alarm",))])
    assert b is not None and b.priority == ALARM and b.state == "fault"
    b = p.process("g", [rd([200, 2, 3.0, 1], 13.0), rd([True], 13.0, ("alarm",))])
    assert b is not None and "alarm" in b.values and b.priority == PROCESS  # a heartbeat
    b = p.process("g", [rd([0, 2, 3.0, 1], 14.0), rd([False], 14.0, ("alarm",))])
    assert b is not None and b.priority == ALARM
    b = p.process("g", [rd([300, 2, 3.0, 1], 15.0)])  # speed > 0: running, a state change
    assert b is not None and b.state == "running" and b.priority == STATE
    assert p.offline("gone", 16.0).priority == STATE


def test_a_batch_of_bulk_points_only_is_bulk() -> None:
    from gateway.model import BULK, PROCESS

    p = pipe(heartbeat=10.0)
    p.process("g", [rd([100, 2, 3.0, 1], 0.0), rd([False], 0.0, ("alarm",))])
    b = p.process("g", [rd([5, 7], 1.0, ("energy", "hours"))])
    assert b is not None and b.priority == BULK
    b = p.process("g", [rd([6, 7], 2.0, ("energy", "hours")), rd([200, 2, 3.0, 1], 2.0)])
    assert b is not None and b.priority == PROCESS  # with process data: not held back
    b = p.process("g", [rd([6, 7], 3.0, ("energy", "hours")), rd([200, 2, 3.0, 1], 3.0)])
    assert b is None
    b = p.process("g", [rd([7, 7], 4.0, ("energy", "hours")), rd([200, 2, 3.0, 1], 4.0)])
    assert b is not None and b.priority == BULK  # only the bulk point changed


def test_a_bitfields_bits_work_in_state_rules_and_carry_priority() -> None:
    prof = Profile.model_validate({
        "vendor": "t", "model": "bits",
        "state": {"default": "idle", "rules": [
            {"state": "fault", "when": {"point": "alarm.phase_loss", "eq": True}}]},
        "points": [{"name": "alarm", "table": "input", "address": 0, "type": "bitfield",
                    "priority": "state",
                    "bits": {0: "phase_loss", 3: {"name": "overtemp", "priority": "alarm"}}},
                   {"name": "p", "table": "input", "address": 1}]})
    bits = {p.name: p for p in prof.expanded_points()}
    assert bits["alarm.phase_loss"].priority == "state"  # the field's
    assert bits["alarm.overtemp"].priority == "alarm"  # its own
    dc = DeviceConfig.model_validate({"id": "d", "profile": "t/bits",
                                      "connection": {"kind": "modbus-tcp", "host": "x"}})
    pl = DevicePipeline("gw", Device(dc, "t/bits", prof, prof.workarounds,
                                     dict(prof.poll_groups)), 60.0)
    names = ("alarm", "alarm.phase_loss", "alarm.overtemp", "p")
    first = pl.process("g", [rd([0, False, False, 1], 1.0, names)])
    assert first is not None and first.state == "idle"
    b = pl.process("g", [rd([8, False, True, 1], 2.0, names)])
    assert b is not None and b.priority == 0  # ALARM: the overtemp bit changed
    b = pl.process("g", [rd([9, True, True, 1], 3.0, names)])
    assert b is not None and b.state == "fault"


# -- the fast path (plain Modbus points) against the per-point path ----------------------
PLAIN = Profile.model_validate({
    "vendor": "t", "model": "plain",
    "state": {"default": "idle", "rules": [{"state": "running", "when": {"point": "a", "gt": 1}}]},
    "points": [
        {"name": "a", "table": "holding", "address": 0},
        {"name": "b", "table": "holding", "address": 1, "type": "int32"},
        {"name": "s", "table": "holding", "address": 3, "type": "string", "count": 2},
        {"name": "c", "table": "coil", "address": 0, "type": "bool"},
        # may be a float: the fast path looks at the values' types (ints here sometimes,
        # as an OPC UA node of unknown type gives)
        {"name": "f", "table": "holding", "address": 5, "type": "float32"},
    ],
})
ALL, LEFT, RIGHT = ("a", "b", "s", "c", "f"), ("a", "b"), ("s", "c", "f")


def plain_pipe(heartbeat: float, fast: bool) -> DevicePipeline:
    dc = DeviceConfig.model_validate({"id": "d1", "profile": "t/plain",
                                     "connection": {"kind": "modbus-tcp", "host": "x"}})
    p = DevicePipeline("gw", Device(dc, "t/plain", PLAIN, PLAIN.workarounds,
                                    dict(PLAIN.poll_groups)), heartbeat, heartbeat == 0)
    if not fast:
        for st in p.points.values():
            st.plain = st.exact = False
    return p


# values that mostly stay the same (heartbeats matter), sometimes change
_value = {"a": st.sampled_from([0] * 4 + [1, 2]), "b": st.sampled_from([7] * 6 + [-1]),
          "s": st.sampled_from([""] * 6 + ["X"]), "c": st.sampled_from([False] * 6 + [True]),
          "f": st.sampled_from([1] * 6 + [2, 1.5, math.nan, math.inf])}
_read = st.tuples(st.just("read"), st.fixed_dictionaries(_value), st.floats(0.1, 4.0))
_step = st.one_of(
    *[_read] * 16,  # mostly reads, in a row
    st.tuples(st.just("error"), st.sampled_from([ALL, LEFT, RIGHT]), st.floats(0.1, 4.0)),
    st.tuples(st.just("offline")), st.tuples(st.just("sync")), st.tuples(st.just("split")),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0.0, 5.0]), st.lists(_step, min_size=10, max_size=80))
def test_fast_path_gives_the_same_batches_as_point_by_point(
        heartbeat: float, steps: list[tuple[object, ...]]) -> None:
    """Random reads (values that often repeat), failed reads, offline, the status page
    syncing, and a request plan split in two (a refusal learned): both paths agree."""
    fast, slow = plain_pipe(heartbeat, True), plain_pipe(heartbeat, False)
    ts = 0.0
    shape: tuple[tuple[str, ...], ...] = (ALL,)
    for step in steps:
        outs = []
        if step[0] == "split":
            shape = (LEFT, RIGHT) if shape == (ALL,) else (ALL,)
            continue
        for p in (fast, slow):
            if step[0] == "read":
                _, vals, dt = step
                t = ts + dt  # type: ignore[operator]
                readings = [Reading(n, [vals[k] for k in n], t)  # type: ignore[index]
                            for n in shape]
                outs.append(p.process("g", readings))
            elif step[0] == "error":
                _, names, dt = step
                t = ts + dt  # type: ignore[operator]
                outs.append(p.process("g", [Reading(names, [None] * len(names), t, "timeout")]))  # type: ignore[arg-type]
            elif step[0] == "offline":
                t = ts + 1.0
                outs.append(p.offline("gone", t))
            else:
                t = ts
                p.sync()
                outs.append(None)
        ts = t
        a, b = outs
        assert (a is None) == (b is None), step
        if a is not None and b is not None:
            assert (a.values, a.quality, a.state, a.priority) == \
                (b.values, b.quality, b.state, b.priority), step
    fast.sync()
    assert [(x.last, x.last_ts, x.last_quality) for x in fast.points.values()] == \
        [(x.last, x.last_ts, x.last_quality) for x in slow.points.values()]
    assert any(plan.fast for plan in fast._plans.values()) or not fast._plans


def test_fast_path_heartbeats_every_period() -> None:
    """Unchanged plain values, read every second, heartbeat 5 s: reported at 0, 5, 10, 15."""
    p = plain_pipe(5.0, True)
    reported = []
    for t in range(20):
        b = p.process("g", [Reading(ALL, [1, 2, "X", True, 3], float(t))])
        if b is not None:
            assert set(b.values) == set(ALL)
            reported.append(t)
    assert reported == [0, 5, 10, 15]
    assert p._plans[id(ALL)].active
