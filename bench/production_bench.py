"""Bytes per machine-hour of the production records (issue 21), JSON and compact.

    .venv/bin/python -m bench.production_bench               # 8 h per shipped machine profile
    .venv/bin/python -m bench.production_bench --hours 24 --kpi-interval 300

Offline and deterministic (seeded): each shipped profile with a ``production:`` section
plays its simulator's state machine (``simulation.states``: dwell ranges and
transitions, the counters' rates and the fault codes of ``sim``), polled once a second,
through the gateway's own :class:`~gateway.production.machine.Machine`; every event batch
is encoded as the uplink encodes it. Bytes are MQTT PUBLISH packets as sent with QoS 1:
fixed header (2), topic length (2) and topic, packet id (2), payload; the PUBACK (4) the
broker sends back is counted too. JSON: one message per record. Compact: records of the
same second share a pack (zlib 6), as with ``pack.max_delay: 1s``. The simulator's dwell
times are short (a demo shows changes within minutes); ``--dwell-scale`` (default 10)
stretches them to a few to ~20 state changes an hour.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from typing import Any

from gateway.config import Device, DeviceConfig
from gateway.model import Batch, Reading
from gateway.pipeline import DevicePipeline
from gateway.production.machine import Machine
from gateway.production.shifts import Calendar
from gateway.production.spec import ProductionConfig
from gateway.profiles import (
    ModbusPoint,
    Point,
    Profile,
    default_profile_dirs,
    list_profiles,
    load_profile,
)
from gateway.state import derive_state
from gateway.wire.compact import Schemas, encode_pack, encode_record, pack_topic, schema_of
from gateway.wire.encode import data_topic, encode_batch

T0 = 1_796_000_400.0  # a Monday 06:00 UTC in 2026 (fixed: deterministic output)


def _mqtt(topic: str, payload: int) -> int:
    return 2 + 2 + len(topic.encode()) + 2 + payload + 4  # + the PUBACK


def play(prof: Profile, hours: float, seed: int, dwell_scale: float,
         kpi_interval: float = 60.0) -> dict[str, Any]:
    """One machine for ``hours``: the events and the facts behind them."""
    assert prof.production is not None
    assert prof.simulation is not None
    sim = prof.simulation
    rng = random.Random(seed)
    cfg = ProductionConfig(kpi_interval=kpi_interval)
    m = Machine("gw", "m1", prof.production, Calendar(cfg), kpi_interval, {})
    m.start(T0)
    points = {p.name: p for p in prof.expanded_points()}
    counters: dict[str, float] = {}
    state, until = sim.initial, T0
    events: list[Batch] = []
    telemetry: list[Batch] = []
    changes = 0
    pipe = None
    groups: dict[str, tuple[float, tuple[str, ...]]] = {}
    if prof.protocol == "modbus":
        dc = DeviceConfig.model_validate({"id": "m1", "profile": "x/y", "connection": {
            "kind": "modbus-tcp", "host": "127.0.0.1"}})
        pipe = DevicePipeline("gw", Device(dc, "x/y", prof, prof.workarounds,
                                           dict(prof.poll_groups)), 60.0)
        by: dict[str, list[str]] = defaultdict(list)
        for p in prof.expanded_points():
            by[prof.group_of(p)].append(p.name)
        groups = {g: (prof.poll_groups[g], tuple(n)) for g, n in by.items()}
    t = T0
    while t < T0 + hours * 3600:
        t += 1.0
        if t >= until:
            spec = sim.states.get(state)
            if spec is not None and spec.next and until > T0:
                state = rng.choices(list(spec.next), list(spec.next.values()))[0]
                changes += 1
            spec = sim.states.get(state)
            lo, hi = spec.dwell if spec else (5.0, 20.0)
            until = t + rng.uniform(lo, hi) * dwell_scale
        values = _values(points, state, counters, rng)
        derived = derive_state(prof.state, values) if prof.state else state
        events += m.observe(t, derived, values)
        events += m.tick(t)
        if pipe is not None:  # the raw telemetry of the same machine, report by exception
            for group, (period, names) in groups.items():
                if int(t - T0) % max(1, round(period)) == 0:
                    raw = [_raw(points[n], values.get(n)) for n in names]
                    b = pipe.process(group, [Reading(names, raw, t)])
                    if b is not None:
                        telemetry.append(b)
    return {"events": events, "changes": changes, "telemetry": telemetry}


def _values(points: dict[str, Point], state: str, counters: dict[str, float],
            rng: random.Random) -> dict[str, Any]:
    """One second of the simulator's model of the points (engineering units)."""
    values: dict[str, Any] = {}
    for name, p in points.items():
        s = p.sim
        if s is None:
            continue
        if s.kind == "counter":
            rate = s.levels.get(state, 0.0) if s.levels else (
                s.rate if not s.when or state in s.when else 0.0)
            start = float(s.value) if isinstance(s.value, int | float) else 0.0
            counters[name] = counters.get(name, start) + rate
            values[name] = int(counters[name])
        elif s.kind == "follow":  # its level in this state with the noise (no lag)
            level = s.levels.get(state, s.levels.get("default", 0.0))
            values[name] = level + (rng.gauss(0, s.noise) if s.noise else 0.0)
        elif s.kind == "state_code":
            values[name] = s.map.get(state, 0)
        elif s.kind == "alarm":
            values[name] = not s.when or state in s.when
        elif s.kind == "constant":
            values[name] = s.value
    return values


def _raw(p: Point, v: Any) -> Any:
    """The value as the device holds it (a scaled point's register holds the raw number)."""
    if v is None or not isinstance(p, ModbusPoint) or isinstance(v, bool | str):
        return v if v is not None else 0
    if p.type in ("float32", "float64"):
        return float(v)
    return round((float(v) - p.offset) / p.scale)


def measure(events: list[Batch], prof: Profile | None = None) -> dict[str, int]:
    schemas = Schemas()
    if prof is not None and events:
        schemas.add(schema_of(events[0].profile, prof))
    js = sum(_mqtt(data_topic("edgegw", b.gateway, b.device), len(encode_batch(b)))
             for b in events)
    by_second: dict[int, list[bytes]] = defaultdict(list)
    for seq, b in enumerate(events, 1):
        b.seq = seq
        by_second[b.ts_ms // 1000].append(encode_record(b, schemas.get(b.profile)))
    topic = pack_topic("edgegw", "gw")
    compact = sum(_mqtt(topic, len(encode_pack(recs))) for recs in by_second.values())
    kinds: dict[str, int] = defaultdict(int)
    for b in events:
        kinds[b.profile.split("@")[0]] += 1
    return {"json": js, "compact": compact, **kinds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dwell-scale", type=float, default=10.0,
                    help="the simulator's dwell times (seconds, for demos) times this: 10 gives "
                    "a machine a few to ~20 state changes an hour")
    ap.add_argument("--kpi-interval", type=float, default=60.0, help="seconds")
    args = ap.parse_args()
    dirs = default_profile_dirs()
    print("| profile | state changes / h | records / h (state, kpi, order) | JSON bytes / "
          "machine-hour | compact bytes / machine-hour | raw telemetry (report by exception), "
          "compact bytes / machine-hour |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in list_profiles(dirs):
        prof = load_profile(name, dirs)
        if prof.production is None or prof.simulation is None:
            continue
        r = play(prof, args.hours, args.seed, args.dwell_scale, args.kpi_interval)
        b = measure(r["events"])
        h = args.hours
        kinds = ", ".join(f"{b.get(k, 0) / h:.0f}" for k in
                          ("edgegw/state", "edgegw/kpi", "edgegw/order"))
        raw = measure(r["telemetry"], prof)["compact"] / h if r["telemetry"] else None
        print(f"| {name} | {r['changes'] / h:.0f} | {len(r['events']) / h:.0f} ({kinds}) | "
              f"{b['json'] / h:,.0f} | {b['compact'] / h:,.0f} | "
              f"{'-' if raw is None else f'{raw:,.0f}'} |")


if __name__ == "__main__":
    main()
