"""Compact encoding end to end: simulator -> `edgegw run` (uplink.mqtt.encoding: compact)
-> mosquitto -> `edgegw ingest` -> influxd. Every record lands in InfluxDB with the
values the gateway read, and the packs are a fraction of the JSON size."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess, start_sim, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto, influxd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_compact_packs_reach_influxdb(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path
) -> None:
    if not shutil.which("influxd"):
        pytest.fail("influxd is not installed: run scripts/test")
    await start_sim(sim)
    sim.devices["dev0"].set_state("running")  # type: ignore[union-attr]
    write_config(sim, gateway.config, broker)
    cfg = yaml.safe_load(gateway.config.read_text())
    cfg["uplink"]["mqtt"].update(encoding="compact", pack={"max_delay": "500ms"})
    write_yaml(gateway.config, cfg)
    (tmp_path / "influx").mkdir()
    with influxd(tmp_path / "influx") as db:
        icfg = tmp_path / "ingest.yaml"
        write_yaml(icfg, {"mqtt": {"port": broker.port, "client_id": "e2e-compact"},
                          "sink": {"kind": "influxdb-v1", "url": db.url, "database": "edgegw"},
                          "batch": {"max_lines": 500, "max_interval": "200ms"}})
        with (tmp_path / "ingest.log").open("ab") as log:
            ingest = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "ingest", "-c", str(icfg)], cwd="/",
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            async with Subscriber(broker.port) as sub:
                gateway.start()
                await sub.wait_for(lambda: len(sub.packs) >= 8, 30, "8 packs")
            gateway.stop()
            docs = sub.data("dev0")
            merged: dict[str, Any] = {}
            for d in docs:
                merged.update(d["p"])
            assert merged["program_name"] == "O4711-FLANGE"
            assert merged["cycle_time"] == pytest.approx(19.87)
            json_bytes = sum(len(orjson.dumps(d)) for d in sub.data())
            packed = sum(len(p) for p in sub.packs)
            assert packed < json_bytes / 3, (packed, json_bytes)
            # every dev0 record with a spindle_speed is in InfluxDB, with the same values
            want = {d["ts"]: d["p"]["spindle_speed"] for d in docs
                    if "spindle_speed" in d["p"]}

            def got() -> dict[int, Any]:
                try:
                    (s,) = db.query('SELECT spindle_speed FROM "acme/cnc-vmc850" '
                                    "WHERE device = 'dev0'", "edgegw")
                except (OSError, RuntimeError, ValueError):
                    return {}
                return {int(t): v for t, v in s["values"]}  # type: ignore[union-attr]

            await sub.wait_for(lambda: set(want) <= set(got()), 20, "dev0 in InfluxDB")
            assert {t: got()[t] for t in want} == want
            assert "dead letter" not in (tmp_path / "ingest.log").read_text()
        finally:
            ingest.terminate()
            ingest.wait(10)
