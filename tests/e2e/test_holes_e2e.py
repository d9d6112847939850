"""End to end against devices whose register maps have holes, with the default
workarounds: the shipped meter and curing-press profiles declare unmapped ranges (and a
register limit) in their simulation section, so the default coalescing asks for reads
the devices refuse. Every point must still arrive; the gateway learns the refusals once,
keeps them across a restart, and `edgegw read --explain` shows the learned plan."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from firmware_sim.sim import Simulator

from gateway.profiles import default_profile_dirs, load_profile
from tests.e2e.harness import GatewayProcess, run_cli, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

PROFILES = {"meter": "voltmeter/em340-3ph", "press": "presstec/tyre-curing-tc48"}


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _points(profile: str) -> set[str]:
    return {p.name for p in load_profile(profile, default_profile_dirs()).expanded_points()}


async def test_meters_with_holes_read_every_point_and_learn_once(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path,
) -> None:
    for dev_id, profile in PROFILES.items():
        sim.add_profile_device(dev_id, profile, port=0)
    await sim.start()
    health = free_port()
    write_config(sim, gateway.config, broker, health={"port": health})
    latest: dict[str, dict[str, Any]] = {d: {} for d in PROFILES}
    quality: dict[str, dict[str, Any]] = {d: {} for d in PROFILES}

    def every_point_good() -> bool:
        for d in sub.data():
            latest[d["dev"]].update(d["p"])
            for name in d["p"]:
                quality[d["dev"]][name] = d.get("q", {}).get(name)
        sub.messages.clear()
        return all(set(latest[d]) >= _points(p) and
                   all(v is not None for v in latest[d].values()) and
                   not any(quality[d].values()) for d, p in PROFILES.items())

    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(every_point_good, 30, "every point of both devices, good")
        body = await asyncio.to_thread(_metrics, health)
    refused = {line.split("{")[1].split('"')[1]: float(line.rsplit(" ", 1)[1])
               for line in body.splitlines() if line.startswith("edgegw_modbus_refused_ranges{")}
    assert refused["meter"] >= 2 and refused["press"] >= 2, refused
    assert gateway.signal(signal.SIGTERM) == 0
    log = gateway.log.read_text()
    assert log.count("device meter: refuses input 0-17 (fc 4), 18 registers") == 1, log
    assert "to encode it in the profile: workarounds: {max_gap: 5}" in log
    assert "device press: refuses holding 1-35 (fc 3), 35 registers: modbus exception 3 " \
        "(illegal data value)" in log
    assert (tmp_path / "modbus" / "meter.json").is_file()

    # commissioning read with the plan: from '/', as an integrator's shell may be
    before = sim.devices["meter"].requests
    code, out, err = await run_cli("read", "-c", str(gateway.config), "meter", "--explain",
                                   cwd="/")
    assert code == 0, err
    asked = sim.devices["meter"].requests - before
    assert "voltage_l1" in out and "BAD" not in out
    assert "fc 4  input            0-5    6 registers  voltage_l1 voltage_l2 voltage_l3" in out
    assert "refused by the device, learned" in out and "input 0-17 (fc 4, 18)" in out
    planned = sum(1 for line in out.splitlines() if line.startswith("  fc "))
    assert asked == planned  # nothing refused was asked again
    assert "refuses" not in err

    # a restart plans around what was learned at once: nothing is asked twice
    mark = len(log)
    gateway.start()
    async with Subscriber(broker.port) as sub:
        await sub.wait_for(lambda: len(sub.data("meter")) > 2 and len(sub.data("press")) > 2,
                           20, "data after the restart")
    assert gateway.signal(signal.SIGTERM) == 0
    again = gateway.log.read_text()[mark:]
    assert "refuses" not in again and "learned earlier" in again, again
