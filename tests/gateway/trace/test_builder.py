"""The product record builder (gateway/trace/builder.py): unit cases and properties over
arbitrary interleavings of process start/stop, code changes, outages and restarts."""

from __future__ import annotations

import json
from itertools import pairwise
from statistics import mean

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.trace.builder import FAIL, PASS, TraceBuilder, TraceRecord
from gateway.trace.spec import TraceSpec, record_fields

SPEC = TraceSpec.model_validate({
    "recipe": "recipe_id",
    "summaries": [
        {"point": "platen", "above": 160, "min": 150, "min_time_above": "5s"},
        {"point": "pressure", "max": 25},
    ]})
READ = ("platen", "pressure", "recipe_id")


def _cure(b: TraceBuilder, code: str | None, t0: float, temps: list[float],
          pressure: float = 21.5) -> list[TraceRecord]:
    out: list[TraceRecord] = []
    for i, temp in enumerate(temps):
        out += b.observe(t0 + i, True, code, {"platen": temp, "pressure": pressure,
                                               "recipe_id": 305}, READ, {"r1": "88.1.2/C-1"})
    return out


def test_a_cure_gives_one_record_with_its_summary_and_verdict() -> None:
    b = TraceBuilder(SPEC)
    temps = [150.0, 162.0, 165.0, 170.0, 171.0, 169.0, 168.0, 158.0]
    assert _cure(b, "88.1.2/T-1", 100.0, temps) == []
    [rec] = b.observe(108.0, False, "88.1.2/T-1", {}, ())
    assert (rec.code, rec.start, rec.end, rec.recipe) == ("88.1.2/T-1", 100.0, 108.0, 305)
    assert rec.inputs == ["88.1.2/C-1"]
    s = rec.stats["platen"]
    assert (s.n, s.min, s.max, s.final) == (8, 150.0, 171.0, 158.0)
    assert s.mean() == mean(temps)
    assert s.above_s == 6.0  # 101..107: samples above 160 hold one second each
    assert rec.verdict(SPEC) == (PASS, "")
    f = rec.fields(SPEC, "88.1.2/PRESS-1")
    assert set(f) <= set(record_fields(SPEC))
    assert f["verdict"] == "pass" and f["platen_n"] == 8 and f["end"] == 108_000


def test_limits_broken_fail_the_verdict_with_the_reason() -> None:
    b = TraceBuilder(SPEC)
    _cure(b, "88.1.2/T-2", 0.0, [149.0, 161.0, 161.0], pressure=26.0)
    [rec] = b.observe(3.0, False, None, {}, ())
    verdict, why = rec.verdict(SPEC)
    assert verdict == FAIL
    assert why == ("platen min 149 < 150; platen above 160 for 2 s < 5 s; "
                   "pressure max 26 > 25")


def test_a_fault_mid_cure_continues_the_same_record_marked_resumed() -> None:
    b = TraceBuilder(SPEC)
    _cure(b, "88.1.2/T-3", 0.0, [165.0] * 4)
    [first] = b.observe(4.0, False, "88.1.2/T-3", {}, ())
    assert first.resumed == 0 and not first.interrupted
    _cure(b, "88.1.2/T-3", 10.0, [166.0] * 3)
    [again] = b.observe(13.0, False, "88.1.2/T-3", {}, ())
    assert again is first and again.resumed == 1 and again.interrupted
    assert again.start == 0.0 and again.end == 13.0 and again.gap_s == 6.0
    assert again.stats["platen"].n == 7


def test_device_offline_marks_the_record_interrupted_with_the_gap() -> None:
    b = TraceBuilder(SPEC)
    _cure(b, "88.1.2/T-4", 0.0, [165.0] * 3)
    assert b.observe(3.0, None, None, {}, ()) == []
    assert b.observe(8.0, None, None, {}, ()) == []
    _cure(b, "88.1.2/T-4", 10.0, [165.0] * 2)
    [rec] = b.observe(12.0, False, None, {}, ())
    assert rec.interrupted and rec.gap_s == 7.0 and rec.stats["platen"].n == 5
    # time above is not carried over the gap: 0..3 and 10..12
    assert rec.stats["platen"].above_s == 5.0


def test_the_next_code_closes_the_record() -> None:
    b = TraceBuilder(SPEC)
    _cure(b, "88.1.2/T-5", 0.0, [165.0] * 2)
    [rec] = _cure(b, "88.1.2/T-6", 2.0, [165.0])
    assert rec.code == "88.1.2/T-5" and rec.end == 2.0
    assert b.open is not None and b.open.code == "88.1.2/T-6"


def test_a_restart_mid_cure_loses_nothing_and_marks_the_gap() -> None:
    b = TraceBuilder(SPEC)
    _cure(b, "88.1.2/T-7", 0.0, [165.0] * 3)
    saved = json.loads(json.dumps(b.to_json(now=3.0)))
    b2 = TraceBuilder(SPEC)
    b2.restore(saved)
    _cure(b2, "88.1.2/T-7", 20.0, [166.0] * 2)
    [rec] = b2.observe(22.0, False, None, {}, ())
    assert rec.start == 0.0 and rec.interrupted and rec.gap_s == 17.0
    assert rec.stats["platen"].n == 5 and rec.stats["platen"].max == 166.0


def test_the_last_code_and_inputs_hold_until_the_next_scan_even_over_a_restart() -> None:
    b = TraceBuilder(SPEC)
    b.observe(0.0, False, "88.1.2/T-8", {}, (), {"mixer-reader": "88.1.2/C-7"})
    b2 = TraceBuilder(SPEC)
    b2.restore(json.loads(json.dumps(b.to_json(now=1.0))))
    _cure(b2, None, 5.0, [165.0] * 2)
    [rec] = b2.observe(7.0, False, None, {}, ())
    assert rec.code == "88.1.2/T-8" and rec.inputs == ["88.1.2/C-7", "88.1.2/C-1"]


def test_a_code_point_with_a_prefix() -> None:
    spec = TraceSpec.model_validate({"code": "tyre_code", "code_prefix": "88.118.8"})
    b = TraceBuilder(spec)
    assert b.code_of({"tyre_code": " TYRE-1 "}, {}) == "88.118.8/TYRE-1"
    assert b.code_of({"tyre_code": ""}, {}) is None
    assert TraceBuilder(SPEC).code_of({}, {"product": "88.1/X"}) == "88.1/X"


# -- properties -----------------------------------------------------------------------
CODES = st.sampled_from([None, "88.1.2/A", "88.1.2/B", "88.1.2/C"])
STEP = st.tuples(
    st.floats(0.01, 30.0),  # time since the previous cycle
    st.sampled_from([True, True, True, False, None]),  # in process / not / unknown
    CODES,
    st.floats(100.0, 200.0, allow_nan=False),
    st.booleans(),  # the point was read this cycle
    st.sampled_from([{}, {"r1": "88.1.2/C-1"}, {"r1": "88.1.2/C-2", "r2": "88.1.2/W-9"}]),
    st.booleans(),  # a gateway restart before this cycle
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=60))
def test_every_sample_in_process_lands_in_exactly_one_record(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    """Whatever the interleaving: each sample read while a coded product is in process
    is in exactly one record (of that code); a record's stats are those of its samples;
    records never overlap in time; an interruption is always marked."""
    b = TraceBuilder(SPEC)
    ts = 0.0
    emitted: list[TraceRecord] = []
    # a record is known by its code and start (a restart rebuilds it as a new object)
    samples: dict[tuple[str, float], list[float]] = {}
    expected = 0
    saw_unknown: set[tuple[str, float]] = set()
    for dt, active, code, v, read, inputs, restart in steps:
        ts += dt
        if restart:
            doc = json.loads(json.dumps(b.to_json(now=ts)))
            b = TraceBuilder(SPEC)
            b.restore(doc)
            if b.open is not None:
                saw_unknown.add((b.open.code, b.open.start))
            ts += 1.0
        out = b.observe(ts, active, code, {"platen": v, "pressure": 20.0},
                        ("platen",) if read else (), inputs)
        emitted += [TraceRecord.from_json(r.to_json()) for r in out]  # as sent
        rec = b.open
        if active is None and rec is not None:
            saw_unknown.add((rec.code, rec.start))
        if rec is not None and active and read:
            assert rec.code == b.code
            samples.setdefault((rec.code, rec.start), []).append(v)
            expected += 1
    emitted += b.observe(ts + 1.0, False, None, {}, ())
    final = {(r.code, r.start): r for r in emitted}  # the last copy sent wins (resumed)
    assert sum(r.stats["platen"].n for r in final.values() if "platen" in r.stats) == expected
    for key, r in final.items():
        got = samples.get(key, [])
        st_ = r.stats.get("platen")
        assert (st_.n if st_ else 0) == len(got)
        if got and st_ is not None:
            assert (st_.min, st_.max, st_.final) == (min(got), max(got), got[-1])
            assert abs((st_.mean() or 0) - mean(got)) < 1e-9
        assert r.end is not None and r.end >= r.start and r.gap_s >= 0
        if key in saw_unknown or r.resumed:
            assert r.interrupted
        assert r.code not in r.inputs
    spans = sorted((r.start, r.end) for r in final.values())
    for (_, e1), (s2, _) in pairwise(spans):
        assert e1 is not None and e1 <= s2
