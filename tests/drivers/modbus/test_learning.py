"""Devices that refuse coalesced reads: split, retry in the same poll, learn, persist.

Against the firmware simulator made as flawed as real meters (unmapped ranges, a
register limit per request, slow long reads, whole-value reads, silent unit ids) and
against pymodbus's own simulator server, which nobody on this project wrote.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.base import DriverContext
from drivers.modbus.driver import ModbusDriver
from gateway.errors import DeviceUnreachable
from gateway.model import Reading
from gateway.profiles import ModbusQuirks, Profile, SimRange, SlowReads
from tests.helpers import device, tcp
from tests.support.servers import free_port

pytestmark = pytest.mark.component

METER = "voltmeter/em340-3ph"
#: holes between the meter's blocks, all within the default max_gap (16)
HOLES = ModbusQuirks(unmapped=[SimRange(table="input", start=6, count=6),
                               SimRange(table="input", start=48, count=3),
                               SimRange(table="input", start=60, count=4)])
DEFAULTS = {"max_gap": 16, "max_registers_per_read": 125}


def good(readings: list[Reading]) -> dict[str, object]:
    assert [(r.points, r.error) for r in readings if r.error] == []
    return {n: v for r in readings for n, v in zip(r.points, r.values, strict=True)}


async def meter(sim: Simulator, quirks: ModbusQuirks) -> tuple[int, tuple[object, ...]]:
    sd = sim.add_profile_device("m", METER, port=0)
    assert sd.map is not None
    sd.map.quirks = sd.quirks = quirks
    await sim.start()
    return sim.port_of("m"), tuple(sd.profile.expanded_points())


def driver(port: int, state: Path | None, **conn: object) -> ModbusDriver:
    ctx = DriverContext("gw", state, state) if state else DriverContext()
    return ModbusDriver(device("m", METER, tcp(port, **conn), workarounds=DEFAULTS), ctx)


async def test_holes_are_learned_in_the_first_poll_and_kept_across_a_restart(
        sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port, points = await meter(sim, HOLES)
    dev = sim.devices["m"]
    drv = driver(port, tmp_path)
    await drv.connect()
    with caplog.at_level(logging.WARNING, "edgegw.modbus"):
        first = good(await drv.read(points))  # type: ignore[arg-type]
    assert set(first) == {p.name for p in points}  # type: ignore[attr-defined]
    refusals = [r.getMessage() for r in caplog.records]
    assert any("refuses input 0-17 (fc 4), 18 registers: modbus exception 2 (illegal data "
               "address); asking for input 0-5 (fc 4) and input 12-17 (fc 4)" in m
               and "workarounds: {max_gap: 5}" in m for m in refusals), refusals
    assert drv.splits == len(refusals) == 3
    planned = len(drv.plan(points))  # type: ignore[arg-type]
    n = dev.requests
    good(await drv.read(points))  # type: ignore[arg-type]
    assert dev.requests - n == planned  # no refused request asked again
    await drv.close()

    saved = json.loads((tmp_path / "modbus" / "m.json").read_text())
    assert saved["endpoint"] == f"127.0.0.1:{port} unit 1"
    assert [(r["table"], r["start"], r["count"]) for r in saved["refused"]] == [
        ("input", 0, 18), ("input", 51, 15)]
    caplog.clear()
    again = driver(port, tmp_path)  # a restart
    await again.connect()
    n = dev.requests
    with caplog.at_level(logging.WARNING, "edgegw.modbus"):
        good(await again.read(points))  # type: ignore[arg-type]
    assert dev.requests - n == planned and again.splits == 0 and not caplog.records
    await again.close()


async def test_a_register_limit_per_request_is_learned(
        sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    sd = sim.add_profile_device("b", "presstec/tyre-curing-tc48", port=0)
    assert sd.map is not None
    sd.map.quirks = sd.quirks = ModbusQuirks(max_registers=16)  # its longest value: 16
    await sim.start()
    drv = ModbusDriver(device("b", "presstec/tyre-curing-tc48", tcp(sim.port_of("b")),
                              workarounds=DEFAULTS), DriverContext())
    await drv.connect()
    points = tuple(sd.profile.expanded_points())
    with caplog.at_level(logging.WARNING, "edgegw.modbus"):
        good(await drv.read(points))
    assert all(b.count <= 16 for b in drv.plan(points) if b.table in ("holding", "input"))
    assert "exception 3 (illegal data value)" in caplog.text
    assert "max_gap" not in caplog.text and "max_registers_per_read: " in caplog.text
    await drv.close()


async def test_long_reads_that_time_out_are_split(sim: Simulator) -> None:
    port, points = await meter(sim, ModbusQuirks(slow_reads=SlowReads(over=8, delay=1.0)))
    drv = driver(port, None, timeout=0.3, retries=0)
    await drv.connect()
    t0 = time.monotonic()
    good(await drv.read(points))  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 3.0
    assert all(b.count <= 8 for b in drv.plan(points))  # type: ignore[arg-type]
    t0 = time.monotonic()
    good(await drv.read(points))  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 0.3
    await drv.close()


async def test_a_device_that_stops_answering_is_unreachable_after_two_timeouts(
        sim: Simulator) -> None:
    port, points = await meter(sim, ModbusQuirks())
    drv = driver(port, None, timeout=0.3, retries=0)
    await drv.connect()
    good(await drv.read(points))  # type: ignore[arg-type]
    sim.set_fault("m", "silence")
    t0 = time.monotonic()
    with pytest.raises(DeviceUnreachable, match="no response"):
        await drv.read(points)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 1.0  # the block, then one probe: not a cascade
    assert drv.splits == 0
    await drv.close()


async def test_a_unit_id_that_never_answers_is_unreachable(sim: Simulator) -> None:
    port, points = await meter(sim, ModbusQuirks(silent_units=[7]))
    drv = driver(port, None, unit_id=7, timeout=0.2, retries=0)
    await drv.connect()
    with pytest.raises(DeviceUnreachable, match="no response"):
        await drv.read(points)  # type: ignore[arg-type]
    await drv.close()
    ok = driver(port, None, unit_id=1, timeout=0.2, retries=0)
    await ok.connect()
    good(await ok.read(points))  # type: ignore[arg-type]
    await ok.close()


async def test_a_device_that_refuses_everything_teaches_nothing(sim: Simulator) -> None:
    port, points = await meter(sim, ModbusQuirks())
    dev = sim.devices["m"]
    drv = driver(port, None)
    await drv.connect()
    blocks = len(drv.plan(points))  # type: ignore[arg-type]
    sim.set_fault("m", "exception:2")
    readings = await drv.read(points)  # type: ignore[arg-type]
    assert drv.splits == 0 and len(drv.limits.refused) == 0
    multi = [r for r in readings if len(r.points) > 1]
    assert multi and all(r.error and r.error.startswith(
        "modbus exception 2 (illegal data address) at input ") and
        r.error.endswith(", and at every part of it") for r in multi
        if r.points[0].startswith(("voltage", "current", "power")))
    n = dev.requests
    await drv.read(points)  # type: ignore[arg-type]
    assert dev.requests - n == blocks  # asked whole, not split again, for a while
    sim.set_fault("m", "none")
    good(await drv.read(points))  # type: ignore[arg-type]
    assert len(drv.plan(points)) == blocks  # type: ignore[arg-type]
    await drv.close()


async def test_a_point_the_device_refuses_alone_is_bad_with_the_request_range(
        sim: Simulator) -> None:
    """The device holds a float32 at input 10-11; a profile that reads only its second
    word gets exception 2 for that point once a hole (input 5) makes the driver split
    the block (reads must cover whole values); the rest is read."""
    device_map = Profile.model_validate({
        "vendor": "t", "model": "dev", "points": [
            {"name": "a", "table": "input", "address": 0, "type": "uint16",
             "sim": {"kind": "constant", "value": 5}},
            {"name": "f", "table": "input", "address": 10, "type": "float32"},
            {"name": "b", "table": "input", "address": 14, "type": "uint16",
             "sim": {"kind": "constant", "value": 9}}],
        "simulation": {"modbus": {"whole_values": True,
                                  "unmapped": [{"table": "input", "start": 5}]}}})
    wrong = Profile.model_validate({
        "vendor": "t", "model": "gw", "points": [
            {"name": "a", "table": "input", "address": 0, "type": "uint16"},
            {"name": "low_word", "table": "input", "address": 11, "type": "uint16"},
            {"name": "b", "table": "input", "address": 14, "type": "uint16"}]})
    from firmware_sim.machine import SimDevice as Machine
    from firmware_sim.transport import TcpDeviceServer

    dev = Machine("d", device_map)
    server = TcpDeviceServer(dev, "127.0.0.1", 0)
    await server.start()
    try:
        drv = ModbusDriver(device("d", wrong, tcp(server.port), workarounds=DEFAULTS),
                           DriverContext())
        await drv.connect()
        readings = await drv.read(tuple(wrong.points))
        by_point = {n: (v, r.error) for r in readings for n, v in zip(r.points, r.values,
                                                                        strict=True)}
        assert by_point["a"] == (5, None) and by_point["b"] == (9, None)
        assert by_point["low_word"] == (
            None, "modbus exception 2 (illegal data address) at input 11 (fc 4)")
        await drv.close()
    finally:
        await server.stop()


async def test_a_damaged_or_foreign_learned_file_is_set_aside(
        sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port, points = await meter(sim, HOLES)
    learned = tmp_path / "modbus" / "m.json"
    learned.parent.mkdir()
    learned.write_text('{"v": 1, "endpoint": "x", "refused": [{"table": "input"}]')
    with caplog.at_level(logging.WARNING, "edgegw.modbus"):
        drv = driver(port, tmp_path)
    assert "cannot be read" in caplog.text and (learned.parent / "m.bad").exists()
    await drv.connect()
    good(await drv.read(points))  # type: ignore[arg-type]
    await drv.close()
    doc = json.loads(learned.read_text())
    doc["endpoint"] = "10.0.0.9:502 unit 1"  # learned from another meter
    learned.write_text(json.dumps(doc))
    fresh = driver(port, tmp_path)
    assert len(fresh.limits.refused) == 0


# -- an independent implementation: pymodbus's own simulator server ---------------------

def _third_party_meter() -> SimDevice:
    """A 3-phase meter map as a vendor publishes it, served by pymodbus (its server
    answers exception 2 for any address no SimData defines): input registers 0-29 and
    46-79 with 16 unmapped between them, holding registers with 5-register holes."""
    ir = [SimData(0, values=list(range(1000, 1030)), datatype=DataType.REGISTERS),
          SimData(46, values=list(range(2000, 2034)), datatype=DataType.REGISTERS)]
    hr = [SimData(a, values=[a + 1, a + 2, a + 3, a + 4, a + 5],
                  datatype=DataType.REGISTERS) for a in range(0, 100, 10)]
    co = [SimData(0, values=[True, False, True, True], datatype=DataType.BITS)]
    di = [SimData(0, values=[False, True], datatype=DataType.BITS)]
    return SimDevice(1, simdata=(co, di, hr, ir))


@pytest.fixture
async def third_party() -> AsyncIterator[int]:
    port = free_port()
    server = ModbusTcpServer(_third_party_meter(), address=("127.0.0.1", port))
    task = asyncio.create_task(server.serve_forever())
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.02)
    yield port
    await server.shutdown()
    task.cancel()


async def test_a_third_party_meter_with_holes_reads_every_point(
        third_party: int, tmp_path: Path) -> None:
    points = (
        [{"name": f"u{i}", "table": "input", "address": i, "type": "uint16"}
         for i in range(1, 30, 2)]
        + [{"name": f"w{i}", "table": "input", "address": i, "type": "uint32"}
           for i in range(46, 80, 2)]
        + [{"name": f"h{a}_{k}", "table": "holding", "address": a + k, "type": "uint16"}
           for a in range(0, 100, 10) for k in (0, 2, 4)]
        + [{"name": f"c{i}", "table": "coil", "address": i, "type": "bool"} for i in range(4)]
        + [{"name": "d1", "table": "discrete", "address": 1, "type": "bool"}])
    prof = Profile.model_validate({"vendor": "t", "model": "meter", "points": points})
    dev = device("tp", prof, tcp(third_party))  # the profile's defaults: max_gap 16
    drv = ModbusDriver(dev, DriverContext("gw", tmp_path, tmp_path))
    await drv.connect()
    values = good(await drv.read(tuple(prof.points)))
    assert len(values) == len(points) == 67
    assert values["u1"] == 1001 and values["u29"] == 1029
    assert values["w46"] == (2000 << 16) | 2001
    assert values["h90_4"] == 95 and values["c2"] is True and values["d1"] is True
    await drv.close()
    again = ModbusDriver(dev, DriverContext("gw", tmp_path, tmp_path))
    await again.connect()
    good(await again.read(tuple(prof.points)))
    assert again.splits == 0
    assert [b.describe() for b in again.plan(tuple(prof.points)) if b.table == "input"] == [
        "input 1-29 (fc 4)", "input 46-79 (fc 4)"]  # 16 unmapped between them
    await again.close()
