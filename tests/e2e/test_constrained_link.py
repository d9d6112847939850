"""A narrow uplink: the gateway -> broker path is a 64 kbit/s link (a rate-limiting
proxy, since network namespaces and tc are not available to the tests), the budget is
6000 bytes/s and the devices produce more than that. Alarms and state changes arrive
within 1 s (p99) while ordinary data falls behind, and once the load stops everything
arrives: nothing is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess, write_config
from tests.mqtt_sub import Subscriber
from tests.proxy import Proxy
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

LINK = 8000  # bytes/s each way: 64 kbit/s
BUDGET = 6000


def seqs(sub: Subscriber) -> set[int]:
    return {d["seq"] for d in [*sub.data(), *sub.production()]}


async def test_alarms_first_on_a_narrow_link_and_nothing_lost(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path
) -> None:
    for i in range(2):
        sim.add_profile_device(f"dev{i}", "acme/cnc-vmc850", port=0, seed=i)
    await sim.start()
    for i in range(2):
        sim.devices[f"dev{i}"].set_state("running")  # type: ignore[union-attr]
    async with Proxy(broker.port, rate=LINK) as link:
        write_config(sim, gateway.config, link.port, pipeline={"report": "always"})
        cfg = yaml.safe_load(gateway.config.read_text())
        cfg["uplink"]["mqtt"]["budget"] = {"bytes_per_s": BUDGET}
        cfg["uplink"]["mqtt"]["status_interval"] = "30s"
        write_yaml(gateway.config, cfg)
        async with Subscriber(broker.port, "edgegw/gw-e2e/+/+") as sub:
            gateway.start()
            await sub.wait_for(lambda: len(sub.data("dev0")) > 3, 20, "data")
            # alarms: dev0 goes to fault and back every 1.5 s, under full load
            changes: list[tuple[float, bool]] = []
            for k in range(10):
                await asyncio.sleep(1.5)
                fault = k % 2 == 0
                sim.devices["dev0"].set_state("fault" if fault else "running")  # type: ignore[union-attr]
                changes.append((time.monotonic(), fault))
            await asyncio.sleep(1.5)
            # ordinary data fell behind: the newest arrivals were read long ago
            # (receive time - read time) of the last ordinary batches
            offset = time.time() - time.monotonic()
            lag = max(m.at + offset - m.doc["ts"] / 1000 for m in sub.messages[-20:])
            await sim.stop()  # the load stops; the gateway drains what waits
            await sub.wait_for(
                lambda: max(seqs(sub)) - min(seqs(sub)) + 1 == len(seqs(sub))
                and len(sub.data()) > 0, 60, "every batch")
            await asyncio.sleep(2.0)
    got = sorted(seqs(sub))
    assert got == list(range(got[0], got[-1] + 1)), "a batch was lost"
    latencies = []
    for t_set, fault in changes:
        first = next(m.at for m in sub.messages if m.topic.endswith("/dev0/data")
                     and m.at >= t_set and m.doc["p"].get("alarm_active") is fault)
        latencies.append(first - t_set)
    latencies.sort()
    print(f"alarm latencies (s): {[round(x, 3) for x in latencies]}; ordinary data lag "
          f"{lag:.1f} s; batches {len(got)}")
    assert latencies[-1] < 1.0, latencies  # p99 of 10 = the worst one
    assert lag > 2.0, lag  # the link was saturated: ordinary data waited
    assert "Traceback" not in gateway.log.read_text()
