"""Stopping is bounded and certain whatever a driver does.

In process: a driver that swallows a cancellation (what Python 3.11's ``wait_for`` can
do inside pymodbus, CPython gh-86296) and one that ignores every cancellation. As a
process, the way systemd stops it: a gateway polling Modbus fast is stopped many times,
and a second SIGTERM stops at once with the spool intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from drivers.base import Driver, DriverContext
from drivers.registry import driver_for
from gateway import app
from gateway.config import Device, load_config
from gateway.model import Reading
from gateway.profiles import Point
from gateway.tasks import stop_tasks
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.component, pytest.mark.serial]


async def test_stop_tasks_cancels_again_until_a_task_ends() -> None:
    swallowed = 0

    async def loses_one_cancellation() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as wait_for may when the answer arrives with the cancel

    released = False

    async def ignores_every_cancellation() -> None:
        while not released:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    lossy = asyncio.create_task(loses_one_cancellation(), name="lossy")
    deaf = asyncio.create_task(ignores_every_cancellation(), name="deaf")
    await asyncio.sleep(0.05)  # both running
    t0 = time.monotonic()
    stuck = await stop_tasks([lossy, deaf], 0.5)
    assert time.monotonic() - t0 < 1.0
    assert lossy.cancelled() and swallowed == 1
    assert [t.get_name() for t in stuck] == ["deaf"]
    deaf.cancel()
    await asyncio.sleep(0.05)
    assert not deaf.done()  # still ignoring it
    released = True
    await deaf


class _Swallowing:
    """Wraps a real driver; its read swallows cancellations as gh-86296 does, every time
    (``deaf``) or once."""

    def __init__(self, inner: Driver, deaf: bool) -> None:
        self.inner = inner
        self.deaf = deaf
        self.swallowed = 0
        self.reading = False
        self.streaming = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        self.reading = True
        try:
            readings = await self.inner.read(points)
            await asyncio.sleep(0.1)  # a slow device: the stop lands inside the read
            return readings
        except asyncio.CancelledError:
            if self.swallowed and not self.deaf:
                raise
            self.swallowed += 1
            return []
        finally:
            self.reading = False


async def _gateway(tmp_path: Path, sim: Simulator, broker: Mosquitto,
                   monkeypatch: pytest.MonkeyPatch, deaf: bool) -> tuple[app.Gateway, list[
                       _Swallowing]]:
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    await sim.start()
    cfg = sim.gateway_config("gw-stop", mqtt_port=broker.port, store={"kind": "memory"},
                             health={"enabled": False})
    cfg["devices"][0]["poll"] = {"fast": "20ms", "slow": "20ms"}  # type: ignore[index]
    write_yaml(tmp_path / "gateway.yaml", cfg)
    wrapped: list[_Swallowing] = []

    def swallowing(dev: Device, ctx: DriverContext) -> Driver:
        w = _Swallowing(driver_for(dev, ctx), deaf)
        wrapped.append(w)
        return w  # type: ignore[return-value]

    monkeypatch.setattr(app, "driver_for", swallowing)
    monkeypatch.setattr(app, "STOP_TIMEOUT", 1.0)
    return app.Gateway(load_config(tmp_path / "gateway.yaml")), wrapped


async def test_a_lost_cancellation_does_not_hold_the_stop(
        tmp_path: Path, sim: Simulator, broker: Mosquitto,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gw, _ = await _gateway(tmp_path, sim, broker, monkeypatch, deaf=False)
    task = asyncio.create_task(gw.run())
    for _ in range(20):
        await asyncio.sleep(0.5)
        if gw.stats.devices["cnc"].polls > 20:
            break
    t0 = time.monotonic()
    gw.stop()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - t0 < 3.0
    assert gw.stuck == [] and gw.error is None


async def test_a_driver_that_ignores_cancellation_is_left_behind_in_bounded_time(
        tmp_path: Path, sim: Simulator, broker: Mosquitto,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    gw, wrapped = await _gateway(tmp_path, sim, broker, monkeypatch, deaf=True)
    task = asyncio.create_task(gw.run())
    for _ in range(400):
        await asyncio.sleep(0.02)
        if gw.stats.devices["cnc"].polls > 5 and wrapped and wrapped[0].reading:
            break
    assert wrapped[0].reading  # the stop comes while the driver is inside a read
    t0 = time.monotonic()
    gw.stop()
    await asyncio.wait_for(task, 15)
    assert time.monotonic() - t0 < 8.0
    # the poll loop ended by itself at its next turn (the stopping flag): nothing stuck
    assert wrapped[0].swallowed >= 1 and gw.stuck == []


# -- as a process -----------------------------------------------------------------------

def _process(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, cwd="/")


@pytest.mark.timeout(240)
async def test_a_fast_polling_gateway_stops_every_time(
        tmp_path: Path, sim: Simulator, broker: Mosquitto) -> None:
    for i in range(6):
        sim.add_profile_device(f"m{i}", "acme/cnc-vmc850", port=0, seed=i)
    await sim.start()
    cfg = sim.gateway_config("gw-stops", mqtt_port=broker.port, health={"enabled": False})
    for d in cfg["devices"]:  # type: ignore[attr-defined]
        d["poll"] = {"fast": "50ms", "slow": "50ms"}
        d["connection"].update({"timeout": "300ms", "retries": 0})
    write_yaml(tmp_path / "gateway.yaml", cfg)
    log = tmp_path / "gateway.log"
    times = []
    for _ in range(12):
        before = sum(d.requests for d in sim.devices.values())  # type: ignore[union-attr]
        proc = _process(tmp_path / "gateway.yaml", log)
        for _ in range(100):  # polling at full speed before the stop
            await asyncio.sleep(0.05)
            if sum(d.requests for d in sim.devices.values()) - before > 60:  # type: ignore[union-attr]
                break
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"no exit 15 s after SIGTERM:\n{log.read_text()[-3000:]}")
        times.append(time.monotonic() - t0)
        assert code == 0, log.read_text()[-3000:]
    assert max(times) < 8.0, times


async def test_a_second_sigterm_stops_at_once_and_the_spool_keeps_the_batches(
        tmp_path: Path, sim: Simulator) -> None:
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    await sim.start()
    # a broker that takes the connection and never answers the CONNECT: the batches wait,
    # and the stop waits for the drain (with nothing listening it would not wait at all)
    conns: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conns.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = sim.gateway_config("gw-now", mqtt_port=port, health={"enabled": False})
    write_yaml(tmp_path / "gateway.yaml", cfg)
    log = tmp_path / "gateway.log"
    proc = _process(tmp_path / "gateway.yaml", log)
    spool = tmp_path / "spool.db"

    def stored() -> int:
        try:
            db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
            try:
                return int(db.execute("SELECT count(*) FROM spool").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    for _ in range(100):
        await asyncio.sleep(0.1)
        if stored() >= 3:
            break
    proc.send_signal(signal.SIGTERM)  # drains for up to 5 s: the broker never answers
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 10)
    assert time.monotonic() - t0 < 1.5
    assert code == 128 + signal.SIGTERM
    text = log.read_text()
    assert "second SIGTERM: stopping at once" in text and "stay in the spool" in text
    assert stored() >= 3
    server.close()
    for w in conns:
        w.close()
