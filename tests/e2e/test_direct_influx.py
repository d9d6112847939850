"""The gateway's direct route: simulator -> `edgegw run` (uplink.influx) -> influxd, with
InfluxDB stopped mid-run: every poll the gateway made is in InfluxDB afterwards."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import time
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess
from tests.support.servers import Influxd, influxd

pytestmark = pytest.mark.e2e


def times(db: Influxd) -> list[int]:
    try:
        series = db.query('SELECT x_position FROM "acme/cnc-vmc850" WHERE device = \'dev0\'',
                          "edgegw")
    except (OSError, RuntimeError):
        return []
    return [int(v[0]) for v in series[0]["values"]] if series else []  # type: ignore[index]


async def test_direct_route_survives_an_influxdb_outage(
    sim: Simulator, gateway: GatewayProcess, tmp_path: Path
) -> None:
    sim.add_profile_device("dev0", "acme/cnc-vmc850", port=0)
    await sim.start()
    (tmp_path / "influx").mkdir()
    with influxd(tmp_path / "influx") as db:
        cfg = sim.gateway_config("gw-direct")
        cfg["uplink"] = {"influx": {"kind": "influxdb-v1", "url": db.url, "database": "edgegw"}}
        cfg["pipeline"] = {"report": "always"}
        for d in cfg["devices"]:  # type: ignore[attr-defined]
            d["poll"] = {"fast": "200ms", "slow": "1s"}
        write_yaml(gateway.config, cfg)
        gateway.start()
        deadline = time.monotonic() + 20
        while len(times(db)) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        db.stop()
        await asyncio.sleep(3.0)
        db.start()
        await asyncio.sleep(3.0)
        assert gateway.signal(signal.SIGTERM) == 0
        ts = times(db)
    # a gap is a poll that was not made: allowed only where the gateway said so (a loaded
    # machine can make a poll overrun its 200 ms period; that tick is skipped, logged and
    # counted), never a poll that was read and then lost in the outage
    missing = sum(round((b - a) / 200) - 1 for a, b in itertools.pairwise(ts) if b - a > 300)
    skipped = sum(int(n) for n in re.findall(r"poll group 'fast' overran its period 0\.2s; "
                                             r"skipped (\d+) tick", gateway.log.read_text()))
    assert len(ts) > 35 and missing <= skipped, f"{len(ts)} polls, {missing} missing, " \
        f"{skipped} skipped by the gateway"
