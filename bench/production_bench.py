"""Bytes per machine-hour of the production records (issue 21), JSON and compact.

    .venv/bin/python -m bench.production_bench               # 8 h per shipped machine profile
    .venv/bin/python -m bench.production_bench --hours 24 --kpi-interval 300

Offline and deterministic (seeded): each shipped profile with a ``production:`` section
runs as the simulator's device (its state machine and point model, on a clock the bench
advances second by second), read per poll group into the gateway's pipeline (report by
exception: the raw telemetry), whose machine state and current values feed the gateway's
production tracker as the scheduler does; every batch is encoded as the uplink encodes
it. Bytes are MQTT PUBLISH packets as sent with QoS 1:
fixed header (2), topic length (2) and topic, packet id (2), payload; the PUBACK (4) the
broker sends back is counted too. JSON: one message per record. Compact: records of the
same second share a pack (zlib 6), as with ``pack.max_delay: 1s``. The simulator's dwell
times are short (a demo shows changes within minutes); ``--dwell-scale`` (default 10)
stretches them to a few to ~20 state changes an hour.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from firmware_sim.machine import SimDevice

from gateway.config import Device, DeviceConfig
from gateway.model import Batch, Reading
from gateway.pipeline import DevicePipeline
from gateway.production.machine import GROUP, Machine
from gateway.production.service import moduli
from gateway.production.shifts import Calendar
from gateway.production.spec import ProductionConfig
from gateway.profiles import Profile, default_profile_dirs, list_profiles, load_profile
from gateway.wire.compact import Schemas, encode_pack, encode_record, pack_topic, schema_of
from gateway.wire.encode import data_topic, encode_batch, production_topic

T0 = 1_796_000_400.0  # a Monday 06:00 UTC in 2026 (fixed: deterministic output)


def _mqtt(topic: str, payload: int) -> int:
    return 2 + 2 + len(topic.encode()) + 2 + payload + 4  # + the PUBACK


def play(prof: Profile, name: str, hours: float, seed: int, dwell_scale: float,
         kpi_interval: float = 60.0) -> dict[str, Any]:
    """One machine for ``hours``, as the gateway sees it: the simulator's device (its own
    state machine and point model, on a clock the bench advances), read once a second
    per poll group into the gateway's pipeline, and the pipeline's state and current
    values into the production tracker, as the scheduler does."""
    t = T0
    dev = SimDevice("m1", prof, seed=seed, time_scale=1.0 / dwell_scale, clock=lambda: t)
    dc = DeviceConfig.model_validate({"id": "m1", "profile": name, "connection": {
        "kind": "modbus-tcp", "host": "127.0.0.1"}})
    device = Device(dc, name, prof, prof.workarounds, dict(prof.poll_groups))
    pipe = DevicePipeline("gw", device, 60.0)
    assert prof.production is not None
    m = Machine("gw", "m1", prof.production, Calendar(ProductionConfig(
        kpi_interval=kpi_interval)), kpi_interval, moduli(device))
    m.start(T0)
    by: dict[str, list[str]] = defaultdict(list)
    for p in prof.expanded_points():
        by[prof.group_of(p)].append(p.name)
    groups = [(max(1, round(prof.poll_groups[g])), tuple(n)) for g, n in by.items()]
    events: list[Batch] = []
    telemetry: list[Batch] = []
    changes, state = 0, dev.state
    while t < T0 + hours * 3600:
        t += 1.0
        dev.step(1.0)
        changes += dev.state != state
        state = dev.state
        readings = [Reading(names, [dev.values.get(n, 0) for n in names], t)
                    for period, names in groups if int(t - T0) % period == 0]
        for r in readings:  # the raw telemetry, report by exception
            b = pipe.process("g", [r])
            if b is not None:
                telemetry.append(b)
        events += m.observe(t, pipe.state if pipe.state_known() else None, pipe.current)
        events += m.tick(t)
    return {"events": events, "changes": changes, "telemetry": telemetry}


def measure(events: list[Batch], prof: Profile | None = None) -> dict[str, int]:
    schemas = Schemas()
    if prof is not None and events:
        schemas.add(schema_of(events[0].profile, prof))
    js = sum(_mqtt((production_topic if b.group == GROUP else data_topic)(
        "edgegw", b.gateway, b.device), len(encode_batch(b))) for b in events)
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
        r = play(prof, name, args.hours, args.seed, args.dwell_scale, args.kpi_interval)
        b = measure(r["events"])
        h = args.hours
        kinds = ", ".join(f"{b.get(k, 0) / h:.0f}" for k in
                          ("edgegw/state", "edgegw/kpi", "edgegw/order"))
        raw = measure(r["telemetry"], prof)["compact"] / h
        print(f"| {name} | {r['changes'] / h:.0f} | {len(r['events']) / h:.0f} ({kinds}) | "
              f"{b['json'] / h:,.0f} | {b['compact'] / h:,.0f} | "
              f"{raw:,.0f} |")


if __name__ == "__main__":
    main()
