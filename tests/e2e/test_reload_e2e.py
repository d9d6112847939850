"""Reload end to end: a real `edgegw run` process, `edgegw reload` (SIGHUP). Devices are
added, removed and changed while an untouched device keeps reporting without a gap; an
invalid config is refused and the running one stays."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from firmware_sim.sim import Simulator

from tests.e2e.harness import GatewayProcess, run_cli, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def reload_cmd(config: Path) -> tuple[int, str, str]:
    """`edgegw reload` as a process, awaited: the simulator runs in this test's event loop,
    and a blocking subprocess.run stalled it long enough for the gateway to see a device
    time out (a 1 s gap in the untouched device's stream)."""
    return await run_cli("reload", "-c", str(config))


def rewrite(config: Path, doc: dict[str, Any], keep: list[str],
            change: Any = None) -> None:
    d = {**doc, "devices": [dict(x) for x in doc["devices"] if x["id"] in keep]}
    if change is not None:
        change(d)
    config.write_text(yaml.safe_dump(d))


async def test_reload_adds_removes_changes_and_refuses_bad_config(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    for i in range(4):
        sim.add_profile_device(f"dev{i}", "acme/cnc-vmc850", port=0, seed=i)
    await sim.start()
    write_config(sim, gateway.config, broker, pipeline={"report": "always"})
    full = yaml.safe_load(gateway.config.read_text())
    rewrite(gateway.config, full, ["dev0", "dev1", "dev2"])
    pidfile = gateway.config.parent / "edgegw.pid"
    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(lambda: all(sub.data(f"dev{i}") for i in range(3)), 20,
                           "data from dev0..dev2")
        assert pidfile.read_text().strip() == str(gateway.proc.pid)  # type: ignore[union-attr]

        # an invalid config: `edgegw reload` refuses it without signalling
        gateway.config.write_text(gateway.config.read_text().replace("port: ", "port: x", 1))
        code, _, err = await reload_cmd(gateway.config)
        assert code == 1 and "Input should be a valid integer" in err
        # a SIGHUP anyway (e.g. kill -HUP): the gateway says so and keeps running
        gateway.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        n = len(sub.data("dev1"))
        await sub.wait_for(lambda: len(sub.data("dev1")) > n + 5, 10, "dev1 still reporting")
        assert "still running the previous config" in gateway.log.read_text()

        # dev2 removed, dev3 added, dev1 changed (slower poll), dev0 untouched
        def slower(d: dict[str, Any]) -> None:
            d["devices"][1]["poll"] = dict.fromkeys(d["devices"][1]["poll"], "600ms")

        rewrite(gateway.config, full, ["dev0", "dev1", "dev3"], slower)
        t_reload = time.time()
        code, out, err = await reload_cmd(gateway.config)
        # the CLI has signalled; the gateway now reads the file itself (under a loaded
        # test run, both config loads took more than the second allowed from t_reload)
        t_signalled = time.time()
        assert code == 0, err
        assert f"pid {gateway.proc.pid}" in out  # type: ignore[union-attr]
        await sub.wait_for(lambda: sub.data("dev3"), 15, "data from the added dev3")
        await asyncio.sleep(3.0)
        await sub.wait_for(
            lambda: any(s["status"] == "online" and set(s["devices"]) == {"dev0", "dev1", "dev3"}
                        for s in sub.status()), 5, "status listing dev0, dev1, dev3")
    log = gateway.log.read_text()
    assert "reload: 1 added, 1 removed, 1 changed, 1 unchanged (+dev3 -dev2 ~dev1)" in log
    late = [d for d in sub.data("dev2") if d["ts"] / 1000 > t_signalled + 1.0]
    assert late == [], "the removed device still reports"
    # dev0 was not touched: no gap in its stream across both reloads
    ts = [d["ts"] for d in sub.data("dev0")]
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    assert max(gaps) < 1000, f"dev0 stalled for {max(gaps)} ms"
    # dev1 now polls its fast group every 600 ms
    fast = [d["ts"] for d in sub.data("dev1") if d.get("grp") == "fast"
            and d["ts"] / 1000 > t_reload + 2]
    period = (fast[-1] - fast[0]) / (len(fast) - 1)
    assert 500 < period < 700, period
    assert gateway.signal(signal.SIGTERM) == 0
    assert not pidfile.exists()
