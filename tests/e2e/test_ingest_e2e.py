"""End to end with faults: simulator -> `edgegw run` -> mosquitto -> `edgegw ingest` ->
influxd. InfluxDB stopped for 30 s, broker restarted, gateway SIGKILLed: every sample is
in InfluxDB exactly once (count and checksum per device)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Influxd, Mosquitto, influxd

pytestmark = pytest.mark.e2e

MEAS = "acme/cnc-vmc850"


def start_ingest(tmp_path: Path, broker: Mosquitto, db: Influxd) -> subprocess.Popen[bytes]:
    cfg = tmp_path / "ingest.yaml"
    write_yaml(cfg, {
        "mqtt": {"port": broker.port, "client_id": "e2e-ingest",
                 "reconnect": {"initial": "200ms", "max": "1s"}},
        "sink": {"kind": "influxdb-v1", "url": db.url, "database": "edgegw"},
        "batch": {"max_lines": 200, "max_interval": "300ms",
                  "retry": {"initial": "200ms", "max": "1s"}},
    })
    log = (tmp_path / "ingest.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "ingest", "-c", str(cfg)],
                            cwd="/", stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def in_db(db: Influxd) -> dict[str, tuple[int, float]]:
    try:
        series = db.query(f'SELECT count(x_position), sum(x_position) FROM "{MEAS}" '
                          "GROUP BY device", "edgegw")
    except (OSError, RuntimeError):
        return {}
    out = {}
    for s in series:
        _, count, total = s["values"][0]  # type: ignore[index]
        out[s["tags"]["device"]] = (int(count), float(total))  # type: ignore[index]
    return out


async def test_every_sample_exactly_once_through_faults(
    sim: Simulator, persistent_broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path
) -> None:
    if not shutil.which("influxd"):
        pytest.fail("influxd is not installed: run scripts/test")
    for i in range(3):
        sim.add_profile_device(f"dev{i}", MEAS, port=0, seed=i)
    await sim.start()
    write_config(sim, gateway.config, persistent_broker, pipeline={"report": "always"})
    (tmp_path / "influx").mkdir()
    with influxd(tmp_path / "influx") as db:
        ingest = start_ingest(tmp_path, persistent_broker, db)
        try:
            async with Subscriber(persistent_broker.port, "edgegw/gw-e2e/+/data",
                                  session="e2e-truth") as truth:
                gateway.start()
                await truth.wait_for(lambda: len(truth.data()) > 30, 20, "data")
                db.stop()  # 1. InfluxDB down for 30 s
                await asyncio.sleep(float(os.environ.get("EDGEGW_TEST_DB_OUTAGE", "30")))
                db.start()
                persistent_broker.stop()  # 2. broker restart
                await asyncio.sleep(2)
                persistent_broker.start()
                await asyncio.sleep(3)
                gateway.signal(signal.SIGKILL)  # 3. gateway killed and restarted
                gateway.start()
                await asyncio.sleep(3)
                assert gateway.signal(signal.SIGTERM) == 0
                expected = expected_per_device(truth.data())

                def done() -> bool:
                    got = in_db(db)
                    return all(got.get(d, (0, 0))[0] >= n for d, (n, _) in expected.items())

                try:
                    await truth.wait_for(done, 60, "InfluxDB to hold every sample")
                finally:
                    print("expected", expected, "in the database", in_db(db))
                # the drain's last messages may reach the database before this subscriber
                # has them all: the truth is what it holds once nothing more arrives
                seen = -1
                while seen != len(truth.messages):
                    seen = len(truth.messages)
                    await asyncio.sleep(1.0)
                expected = expected_per_device(truth.data())
        finally:
            ingest.terminate()
            ingest.wait(10)
            print((tmp_path / "ingest.log").read_text()[-2000:])
        got = in_db(db)
    assert set(got) == {"dev0", "dev1", "dev2"}
    for dev, (count, total) in expected.items():
        assert got[dev][0] == count, f"{dev}: {got[dev][0]} samples in InfluxDB, {count} sent"
        assert got[dev][1] == pytest.approx(total, rel=1e-9), f"{dev}: checksum differs"


def expected_per_device(docs: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """What InfluxDB must hold: one x_position per device and read time."""
    per: dict[str, dict[int, float]] = {}
    for d in docs:
        if "x_position" in d["p"] and d["p"]["x_position"] is not None:
            per.setdefault(d["dev"], {})[d["ts"]] = d["p"]["x_position"]
    return {dev: (len(v), sum(v.values())) for dev, v in per.items()}
