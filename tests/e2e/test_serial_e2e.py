"""End to end with serial devices: simulated scale, code reader and temperature
controller on ptys plus a Modbus curing press -> `edgegw run` -> mosquitto. The code
read at the press tags every press sample until the next read; the scale's USB adapter
is pulled and plugged back in."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_serial_devices_and_product_context(
    tmp_path: Path, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    sim = Simulator(0.05, serial_dir=tmp_path / "tty")
    sim.time_scale = 20.0  # a code every 0.5 s instead of every 10 s
    sim.add_profile_device("scanner", "scanfast/bcr-200")
    sim.add_profile_device("press", "presstec/tyre-curing-tc48", port=0, seed=3)
    sim.add_profile_device("scale", "weightec/scale-ws300")
    sim.add_profile_device("tc", "thermoline/tc-96")
    async with sim:
        write_config(sim, gateway.config, broker)
        cfg = yaml.safe_load(gateway.config.read_text())
        for d in cfg["devices"]:
            if d["id"] == "scanner":
                d["context_for"] = ["press"]
        write_yaml(gateway.config, cfg)
        async with Subscriber(broker.port) as sub:
            gateway.start()
            await sub.wait_for(lambda: all(sub.data(d) for d in ("scanner", "press", "scale",
                                                                  "tc")), 30, "every device")
            # press samples carry the code last read at the press, and follow new reads
            def products() -> set[str]:
                return {d["ids"]["product"] for d in sub.data("press")
                        if "product" in d.get("ids", {})}

            await sub.wait_for(lambda: len(products()) >= 2, 20, "two products at the press")
            codes = [d["p"]["code"] for d in sub.data("scanner") if "code" in d["p"]]
            tagged = [d["ids"]["product"] for d in sub.data("press")
                      if "product" in d.get("ids", {})]
            assert set(tagged) <= set(codes)
            assert all(c.startswith("88.118.8/TYRE-2026-") for c in codes)
            assert tagged == sorted(tagged)  # one product after the other, never back
            scale = [d for d in sub.data("scale") if "weight" in d["p"]]
            # report by exception: the unit comes with the first sample (and heartbeats),
            # not with every weight change
            assert scale and {d["p"]["unit"] for d in scale if "unit" in d["p"]} == {"kg"}
            tc = [d for d in sub.data("tc") if "pv" in d["p"]]
            assert tc and tc[0]["p"]["sp"] == 125.0

            # the scale's adapter is pulled: offline with the reason, then back
            n = len(sub.data("scale"))
            sim.set_fault("scale", "drop")
            await sub.wait_for(lambda: any(d.get("state") == "offline"
                                           for d in sub.data("scale")[n:]), 15, "scale offline")
            gap = next(d for d in sub.data("scale")[n:] if d.get("state") == "offline")
            assert gap["err"]
            sim.set_fault("scale", "none")
            await sub.wait_for(lambda: "weight" in sub.data("scale")[-1]["p"]
                               and sub.data("scale")[-1]["seq"] > gap["seq"], 20,
                               "scale back online")
        assert gateway.signal(signal.SIGTERM) == 0
