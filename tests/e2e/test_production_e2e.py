"""Production facts end to end: the simulator plays a scripted day in miniature (state
durations, part counts, a counter reset, a gateway restart, a broker outage); the state
intervals and the KPI record that reach InfluxDB (simulator -> `edgegw run` -> mosquitto
-> `edgegw ingest` -> influxd) equal what the script did, to within a poll or two."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from firmware_sim.sim import Simulator

from tests.e2e.harness import GatewayProcess, write_config
from tests.e2e.test_ingest_e2e import start_ingest
from tests.mqtt_sub import Subscriber
from tests.support.servers import Influxd, Mosquitto, influxd

pytestmark = pytest.mark.e2e

TOL = 1.2  # s: polls every 200 ms; a state change is seen within a poll or two


def rows(db: Influxd, q: str) -> list[dict[str, Any]]:
    try:
        series = db.query(q, "edgegw")
    except (OSError, RuntimeError):
        return []
    if not series:
        return []
    cols = series[0]["columns"]
    return [dict(zip(cols, v, strict=True)) for v in series[0]["values"]]  # type: ignore[call-overload]


async def test_intervals_and_kpis_reach_influxdb(
    sim: Simulator, persistent_broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path
) -> None:
    if not shutil.which("influxd"):
        pytest.fail("influxd is not installed: run scripts/test")
    cnc = sim.add_profile_device("cnc1", "acme/cnc-vmc850", port=0)
    imm = sim.add_profile_device("imm1", "moldtech/imm-h250", port=0)  # good + scrap counters
    for dev in (cnc, imm):
        dev.set_state("idle")
    cnc.force("part_count", 500)
    for point, v in (("shot_counter", 1000), ("good_parts", 990), ("reject_parts", 10)):
        imm.force(point, v)
    await sim.start()
    write_config(sim, gateway.config, persistent_broker,
                 production={"kpi_interval": 1, "save_interval": 1})
    cfg = yaml.safe_load(gateway.config.read_text())
    for d in cfg["devices"]:  # every state point read every 200 ms
        d["poll"] = {"fast": "200ms", "slow": "1s"} if d["id"] == "cnc1" else \
            {"cycle": "200ms", "process": "200ms", "info": "1s"}
    gateway.config.write_text(yaml.safe_dump(cfg))
    (tmp_path / "influx").mkdir()
    spans: list[tuple[str, float]] = []  # (state, seconds) as the script made them

    async def hold(state: str, seconds: float,
                   steps: list[tuple[int, int, int, int]] | None = None) -> None:
        """Both machines in ``state``; each step sets (CNC parts, shots, good, rejects)."""
        for dev in (cnc, imm):
            dev.set_state(state)
        t0 = time.monotonic()
        for parts, shots, good, rejects in steps or []:
            await asyncio.sleep(seconds / (len(steps or []) + 1))
            cnc.force("part_count", parts)
            for point, v in (("shot_counter", shots), ("good_parts", good),
                             ("reject_parts", rejects)):
                imm.force(point, v)
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        spans.append((state, time.monotonic() - t0))

    with influxd(tmp_path / "influx") as db:
        ingest = start_ingest(tmp_path, persistent_broker, db)
        try:
            gateway.start()
            for _ in range(100):  # until the gateway has seen the machine
                if (tmp_path / "production.json").exists():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)
            await hold("running", 6, [(501, 1001, 991, 10), (502, 1002, 991, 11),
                                      (503, 1003, 992, 11)])    # 3 parts (imm: 1 scrap)
            await hold("fault", 4)                               # alarm 1021
            await hold("maintenance", 3)                         # a planned stop
            gateway.signal(signal.SIGTERM)                       # gateway down 3 s:
            await hold("running", 3, [(504, 1004, 993, 11)])   # unknown to the gateway
            gateway.start()
            await asyncio.sleep(1.0)                             # (start-up: unknown too)
            persistent_broker.stop()                             # link down 3 s
            await hold("running", 5, [(0, 0, 0, 0), (2, 2, 2, 0)])  # power cycle, 2 more
            persistent_broker.start()
            await hold("idle", 3)
            assert gateway.signal(signal.SIGTERM) == 0

            def landed() -> bool:
                return any(r["final"] is False and r["t_down"] and r["t_down"] > 6
                           for r in rows(db, 'SELECT * FROM "edgegw/kpi" ORDER BY time DESC '
                                            'LIMIT 1'))

            for _ in range(100):
                if landed():
                    break
                await asyncio.sleep(0.3)
            await asyncio.sleep(2.0)
            intervals = rows(db, 'SELECT * FROM "edgegw/state" WHERE device = \'cnc1\'')
            kpi = rows(db, 'SELECT * FROM "edgegw/kpi" WHERE device = \'cnc1\' '
                           "ORDER BY time DESC LIMIT 1")
            imm_kpi = rows(db, 'SELECT * FROM "edgegw/kpi" WHERE device = \'imm1\' '
                               "ORDER BY time DESC LIMIT 1")
        finally:
            ingest.terminate()
            ingest.wait(10)
            print((tmp_path / "ingest.log").read_text()[-2000:])
    print("script", spans)
    print("intervals", [(r["prev"], r["prev_s"], r["state"], r.get("reason")) for r in intervals])
    print("kpi", kpi)
    seq = [r["state"] for r in intervals]
    assert seq == ["idle", "running", "fault", "maintenance", "unknown", "running", "idle"], seq
    # each completed interval as long as the script held it (the restart's running span
    # is partly unknown: the gateway was down)
    got = {(r["prev"], i): r["prev_s"] for i, r in enumerate(intervals)}
    assert got[("running", 2)] == pytest.approx(spans[0][1], abs=TOL)
    assert got[("fault", 3)] == pytest.approx(spans[1][1], abs=TOL)
    assert intervals[2]["reason"] == "spindle overload"
    # the gateway was down for spans[3] and starting for a moment after: unknown; then it
    # saw the machine running until the script made it idle
    unknown, after = got[("unknown", 5)], got[("running", 6)]
    assert unknown >= spans[3][1] - TOL
    assert unknown + after == pytest.approx(spans[3][1] + 1.0 + spans[4][1], abs=2 * TOL)
    k = kpi[0]
    assert k["t_planned"] == pytest.approx(3, abs=TOL)
    assert k["t_run"] == pytest.approx(spans[0][1] + after, abs=2 * TOL)
    assert k["t_unknown"] >= unknown
    # parts: 3 before the restart, 1 made while the gateway was down (counted from the
    # counter at the next read), then a reset to 0 and 2 more
    assert k["parts"] == 3 + 1 + 2
    assert k["good"] == 6 and k["scrap"] == 0
    run, pbt = k["t_run"], k["t_run"] + k["t_down"]
    assert k["availability"] == pytest.approx(run / pbt, abs=0.01)
    # the moulding machine counts good and scrap parts on their own counters
    m = imm_kpi[0]
    assert (m["parts"], m["good"], m["scrap"]) == (6, 5, 1)
    assert m["quality"] == pytest.approx(5 / 6, abs=1e-3)
    assert m["t_planned"] == pytest.approx(3, abs=TOL)


async def test_orders_by_mqtt_command_and_by_the_cli(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path
) -> None:
    dev = sim.add_profile_device("cnc1", "acme/cnc-vmc850", port=0)
    dev.set_state("running")
    dev.force("part_count", 10)
    await sim.start()
    write_config(sim, gateway.config, broker, production={"kpi_interval": 1})
    async with Subscriber(broker.port, "edgegw/gw-e2e/+/production") as sub:
        gateway.start()

        def orders(code: str) -> list[dict[str, Any]]:
            return [d["p"] for d in sub.production("cnc1")
                    if d["prof"] == "edgegw/order@1" and d["p"]["order"] == code]

        await sub.wait_for(lambda: any(d["prof"] == "edgegw/state@1"
                                       for d in sub.production()), 20, "the first state")
        cmd = json.dumps({"action": "start", "device": "cnc1", "order": "PO-MQTT",
                          "quantity": 3, "product": "<b>P</b>"})
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t",
                        "edgegw/gw-e2e/cmd/order", "-m", cmd], check=True, timeout=10)
        await sub.wait_for(lambda: bool(orders("PO-MQTT")), 10, "the order from MQTT")
        assert orders("PO-MQTT")[0]["planned"] == 3
        assert orders("PO-MQTT")[0]["product"] == "<b>P</b>"
        for n in (11, 12, 13):
            dev.force("part_count", n)
            await asyncio.sleep(0.6)
        await sub.wait_for(lambda: any(o["status"] == "done" for o in orders("PO-MQTT")), 10,
                           "the order done at 3 good parts")
        # a garbage command is refused and counted; the CLI's command goes through the inbox
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-t",
                        "edgegw/gw-e2e/cmd/order", "-m", "{garbage"], check=True, timeout=10)
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "order", "start", "-c",
                            str(gateway.config), "cnc1", "PO-CLI", "--quantity", "100"],
                           capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        await sub.wait_for(lambda: bool(orders("PO-CLI")), 10, "the order from the CLI")
        assert [o["status"] for o in orders("PO-MQTT")][-1] == "done"
        assert gateway.signal(signal.SIGTERM) == 0
    assert "order command over MQTT refused" in gateway.log.read_text()
