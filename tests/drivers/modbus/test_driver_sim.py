"""Modbus driver against the firmware simulator: TCP on loopback, RTU over a socat pty pair."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator

from drivers.base import DriverContext
from drivers.modbus.driver import ModbusDriver
from gateway.errors import DeviceUnreachable, ProtocolError, WriteRejected
from gateway.model import Reading
from tests.helpers import device, tcp

pytestmark = pytest.mark.component

CNC = "acme/cnc-vmc850"


def values(readings: list[Reading]) -> dict[str, object]:
    out: dict[str, object] = {}
    for r in readings:
        out.update(zip(r.points, r.values, strict=True))
    return out


async def driver_for_sim(sim: Simulator, dev_id: str, profile: str = CNC) -> ModbusDriver:
    drv = ModbusDriver(device(dev_id, profile, tcp(sim.port_of(dev_id))), DriverContext())
    await drv.connect()
    return drv


async def test_reads_match_simulator(sim: Simulator) -> None:
    sd = sim.add_profile_device("cnc", CNC, port=0)
    sd.set_state("running")
    await sim.start()
    drv = await driver_for_sim(sim, "cnc")
    points = tuple(sd.profile.expanded_points())
    v = values(await drv.read(points))
    assert v["program_number"] == 4711
    assert v["program_name"] == "O4711-FLANGE"
    assert v["cycle_time"] == 19870  # uint32, low word first
    assert v["mode"] == 1 and v["cycle_active"] is True and v["alarm_active"] is False
    assert v["status_word"] == 7 and v["status_word.lube_ok"] is True
    assert v["status_word.tool_changer_busy"] is False
    assert 12873.5 <= v["operating_hours"] < 12874  # type: ignore[operator]
    assert len(drv.plan(points)) == 4  # one read per table
    await drv.close()


@pytest.mark.parametrize("profile", [
    "moldtech/imm-h250", "airtek/screw-compressor-sc37", "voltmeter/em340-3ph",
    "presstec/tyre-curing-tc48",
])
async def test_every_profile_reads_clean(sim: Simulator, profile: str) -> None:
    sd = sim.add_profile_device("d", profile, port=0)
    await sim.start()
    drv = await driver_for_sim(sim, "d", profile)
    readings = await drv.read(tuple(sd.profile.expanded_points()))
    assert [r.error for r in readings if r.error] == []
    assert set(values(readings)) == {p.name for p in sd.profile.expanded_points()}
    await drv.close()


async def test_exception_code_gives_bad_reading_and_device_stays_up(sim: Simulator) -> None:
    sd = sim.add_profile_device("cnc", CNC, port=0)
    await sim.start()
    drv = await driver_for_sim(sim, "cnc")
    sim.set_fault("cnc", "exception:2")
    readings = await drv.read(tuple(sd.profile.points))
    assert {(r.error or "").split(" at ")[0] for r in readings} == {
        "modbus exception 2 (illegal data address)"}
    assert "modbus exception 2 (illegal data address) at holding 0-4 (fc 3), and at every " \
        "part of it" in {r.error for r in readings}  # the request range, for the log
    assert len(drv.limits.refused) == 0  # a fault, not holes: nothing learned
    sim.set_fault("cnc", "none")
    assert all(r.error is None for r in await drv.read(tuple(sd.profile.points)))
    await drv.close()


@pytest.mark.parametrize("fault", ["garbage", "short"])
async def test_garbage_and_short_replies_never_crash(sim: Simulator, fault: str) -> None:
    sd = sim.add_profile_device("cnc", CNC, port=0)
    await sim.start()
    drv = await driver_for_sim(sim, "cnc")
    sim.set_fault("cnc", fault)
    points = tuple(sd.profile.points)
    for _ in range(3):
        try:
            readings = await drv.read(points)
        except DeviceUnreachable:
            await drv.close()  # what the scheduler does; then reconnect
            await drv.connect()
        else:
            assert all(r.error for r in readings), readings
    sim.set_fault("cnc", "none")
    await drv.close()
    await drv.connect()
    assert all(r.error is None for r in await drv.read(points))
    await drv.close()


async def test_silent_device_is_unreachable_within_timeout(sim: Simulator) -> None:
    sd = sim.add_profile_device("cnc", CNC, port=0)
    await sim.start()
    drv = await driver_for_sim(sim, "cnc")
    sim.set_fault("cnc", "silence")
    t0 = time.monotonic()
    with pytest.raises(DeviceUnreachable):
        await drv.read(tuple(sd.profile.points))
    assert time.monotonic() - t0 < 1.0  # timeout 0.3 s, retries 0
    await drv.close()


async def test_connect_to_closed_port_is_unreachable() -> None:
    from tests.support.servers import free_port

    drv = ModbusDriver(device("x", CNC, tcp(free_port())), DriverContext())
    with pytest.raises(DeviceUnreachable):
        await drv.connect()


async def test_strict_device_needs_no_gap_filling(sim: Simulator) -> None:
    """The compressor rejects reads over unmapped registers: its profile's workaround
    (no_gap_filling, one-based addresses) makes every read succeed."""
    sd = sim.add_profile_device("c", "airtek/screw-compressor-sc37", port=0)
    await sim.start()
    drv = await driver_for_sim(sim, "c", "airtek/screw-compressor-sc37")
    readings = await drv.read(tuple(sd.profile.points))
    assert all(r.error is None for r in readings)
    assert values(readings)["run_state"] in (0, 1, 2, 4)
    # without the workaround the same device answers 'illegal data address' to the
    # coalesced reads: the driver splits them and learns, and every point is read
    gappy = ModbusDriver(device("c", "airtek/screw-compressor-sc37", tcp(sim.port_of("c")),
                                workarounds={"no_gap_filling": False, "max_gap": 16}),
                         DriverContext())
    await gappy.connect()
    assert all(r.error is None for r in await gappy.read(tuple(sd.profile.points)))
    assert gappy.splits > 0
    assert all(r.reason == "modbus exception 2 (illegal data address)"
               for r in gappy.limits.refused)
    await gappy.close()
    await drv.close()


async def test_write_rw_points_and_reject_read_only(sim: Simulator) -> None:
    sd = sim.add_profile_device("p", "presstec/tyre-curing-tc48", port=0)
    await sim.start()
    drv = await driver_for_sim(sim, "p", "presstec/tyre-curing-tc48")
    pts = {p.name: p for p in sd.profile.points}
    await drv.write(pts["platen_temp_setpoint"], 172.5)  # scaled int16 -> raw 1725
    await drv.write(pts["vacuum_on"], True)
    v = values(await drv.read((pts["platen_temp_setpoint"], pts["vacuum_on"])))
    assert v == {"platen_temp_setpoint": 1725, "vacuum_on": True}
    with pytest.raises(WriteRejected, match="read-only"):
        await drv.write(pts["press_step"], 1)
    with pytest.raises(WriteRejected, match="out of range"):
        await drv.write(pts["cure_time_setpoint"], 100000)
    sim.set_fault("p", "exception:4")
    with pytest.raises(ProtocolError, match="server device failure"):
        await drv.write(pts["cure_time_setpoint"], 700)
    await drv.close()


# -- RTU over a socat pty pair ----------------------------------------------------------
@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if not shutil.which("socat"):
        pytest.fail("socat is not installed: run scripts/test, which installs it")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("socat did not create the pty pair")
        time.sleep(0.02)
    yield str(a), str(b)
    proc.terminate()
    proc.wait(5)


def rtu(port: str, unit: int) -> dict[str, object]:
    return {"kind": "modbus-rtu", "port": port, "baudrate": 115200, "unit_id": unit,
            "timeout": 0.5, "retries": 0}


async def test_rtu_two_units_on_one_bus(sim: Simulator, pty_pair: tuple[str, str]) -> None:
    sim_end, gw_end = pty_pair
    meter = sim.add_profile_device("meter", "voltmeter/em340-3ph", rtu=sim_end, unit_id=2)
    comp = sim.add_profile_device("comp", "airtek/screw-compressor-sc37", rtu=sim_end, unit_id=5)
    await sim.start()
    ctx = DriverContext()
    d_meter = ModbusDriver(device("meter", "voltmeter/em340-3ph", rtu(gw_end, 2)), ctx)
    d_comp = ModbusDriver(device("comp", "airtek/screw-compressor-sc37", rtu(gw_end, 5)), ctx)
    await d_meter.connect()
    await d_comp.connect()
    r1, r2 = await asyncio.gather(d_meter.read(tuple(meter.profile.points)),
                                  d_comp.read(tuple(comp.profile.points)))
    assert all(r.error is None for r in r1 + r2)
    assert values(r1)["serial_number"] == "VM2611043"
    assert values(r2)["hours_to_service"] == 412
    # a silent unit times out without taking the line from the other one
    sim.set_fault("comp", "silence")
    with pytest.raises(DeviceUnreachable):
        await d_comp.read(tuple(comp.profile.points))
    assert all(r.error is None for r in await d_meter.read(tuple(meter.profile.points)))
    await d_meter.close()
    await d_comp.close()
    ctx.close()
