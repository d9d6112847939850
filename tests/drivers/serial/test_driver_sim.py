"""The serial driver against simulated serial devices on ptys, and against a socat pty
pair: listen and request modes, damaged frames, silence, and a port that disappears and
comes back under the same name."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from drivers.base import DriverContext
from drivers.serial.driver import SerialDriver
from gateway.config import load_config
from gateway.errors import DeviceUnreachable, WriteRejected
from tests.drivers.opcua.helpers import groups_of

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]

SCALE, SCANNER, TC, METER = ("weightec/scale-ws300", "scanfast/bcr-200", "thermoline/tc-96",
                             "metrix/pm-bin")


def serial_driver(sim: Simulator, dev_id: str, tmp: Path, **conn: object) -> SerialDriver:
    cfg = sim.gateway_config("gw")
    devs = [d for d in cfg["devices"] if d["id"] == dev_id]  # type: ignore[attr-defined]
    devs[0]["connection"].update(conn)
    cfg["devices"] = devs
    write_yaml(tmp / "gateway.yaml", cfg)
    return SerialDriver(load_config(tmp / "gateway.yaml").devices[0],
                        DriverContext("gw", tmp, tmp))


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    s = Simulator(0.05, serial_dir=tmp_path / "tty")
    for dev_id, profile in (("scale", SCALE), ("tc", TC), ("meter", METER)):
        s.add_profile_device(dev_id, profile, seed=1)
    async with s:
        yield s


async def _next(drv: SerialDriver, n: int = 1) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    async for _, readings in drv.stream(groups_of(drv.device)):
        out += [dict(zip(r.points, r.values, strict=True)) for r in readings]
        if len(out) >= n:
            return out
    return out


async def test_listen_device_streams_frames(sim: Simulator, tmp_path: Path) -> None:
    drv = serial_driver(sim, "scale", tmp_path)
    assert drv.streaming
    await drv.connect()
    try:
        t0 = time.monotonic()
        frames = await asyncio.wait_for(_next(drv, 5), 5)
        assert time.monotonic() - t0 < 3  # 5 lines/s
        assert all(f["unit"] == "kg" and isinstance(f["weight"], float) for f in frames)
        with pytest.raises(WriteRejected, match="read-only"):
            await drv.write(drv.points[0], 1)
    finally:
        await drv.close()


async def test_binary_frames_with_crc(sim: Simulator, tmp_path: Path) -> None:
    drv = serial_driver(sim, "meter", tmp_path)
    await drv.connect()
    try:
        (f,) = await asyncio.wait_for(_next(drv), 5)
        assert f["voltage"] == pytest.approx(230, abs=3) and isinstance(f["energy"], int)
        sim.set_fault("meter", "badsum")
        await asyncio.sleep(1.2)
        sim.set_fault("meter", "none")
        (f,) = await asyncio.wait_for(_next(drv), 5)  # resynchronised on the next frame
        assert drv.counts["bad_checksum"] + drv.counts["bad_frame"] >= 1
    finally:
        await drv.close()


async def test_request_mode_answers_timeouts_and_bad_checksums(sim: Simulator,
                                                               tmp_path: Path) -> None:
    drv = serial_driver(sim, "tc", tmp_path)
    assert not drv.streaming
    await drv.connect()
    try:
        (r,) = await drv.read(())
        vals = dict(zip(r.points, r.values, strict=True))
        assert vals["address"] == 1 and vals["sp"] == 125.0 and r.error is None
        sim.set_fault("tc", "badsum")
        (r,) = await drv.read(())
        assert r.error is not None and "no valid answer" in r.error
        assert drv.counts["bad_checksum"] >= 1
        sim.set_fault("tc", "silence")
        t0 = time.monotonic()
        with pytest.raises(DeviceUnreachable, match=r"no answer within 0.5 s"):
            await drv.read(())
        assert time.monotonic() - t0 < 1.0
        sim.set_fault("tc", "none")
        (r,) = await drv.read(())
        assert r.error is None
    finally:
        await drv.close()


async def test_port_disappears_and_comes_back_under_its_name(sim: Simulator,
                                                             tmp_path: Path) -> None:
    drv = serial_driver(sim, "scale", tmp_path)
    await drv.connect()
    first_pts = sim.serial["scale"].slave_path
    try:
        await asyncio.wait_for(_next(drv), 5)
        sim.set_fault("scale", "drop")  # the USB adapter is pulled
        with pytest.raises(DeviceUnreachable, match=r"port lost|port closed|no data"):
            await asyncio.wait_for(_next(drv, 1000), 10)
        await drv.close()
        with pytest.raises(DeviceUnreachable, match="cannot open"):
            await drv.connect()
        sim.set_fault("scale", "none")  # plugged in again: a new pty, the same name
        await asyncio.sleep(0.3)
        assert sim.serial["scale"].slave_path != first_pts or sim.serial["scale"].plugs == 2
        await drv.connect()
        assert (await asyncio.wait_for(_next(drv), 5))[0]["unit"] == "kg"
    finally:
        await drv.close()


async def test_a_list_of_port_names_is_tried_in_order(sim: Simulator, tmp_path: Path) -> None:
    link = str(sim.serial["scale"].link)
    drv = serial_driver(sim, "scale", tmp_path, port=[str(tmp_path / "gone"), link])
    await drv.connect()
    try:
        assert (await asyncio.wait_for(_next(drv), 5))[0]["unit"] == "kg"
    finally:
        await drv.close()


async def test_silence_sends_a_listen_device_offline(tmp_path: Path) -> None:
    async with Simulator(0.05, serial_dir=tmp_path / "tty") as sim:
        sim.add_profile_device("meter", METER)  # silence limit 2 s
        await sim.serial["meter"].start()
        drv = serial_driver(sim, "meter", tmp_path)
        await drv.connect()
        try:
            await asyncio.wait_for(_next(drv), 5)
            sim.set_fault("meter", "silence")
            t0 = time.monotonic()
            with pytest.raises(DeviceUnreachable, match="no data for 2 s"):
                await asyncio.wait_for(_next(drv, 1000), 10)
            assert 1.5 < time.monotonic() - t0 < 4
        finally:
            await drv.close()


# -- socat pty pair: the driver on one end, the test writing raw bytes on the other --------
@pytest.fixture
def socat_pair(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if shutil.which("socat") is None:
        pytest.skip("socat not installed (scripts/setup installs it)")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("socat did not create the pty pair")
        time.sleep(0.02)
    yield a, b
    proc.terminate()
    proc.wait(5)


async def test_over_a_socat_pty_pair(tmp_path: Path, socat_pair: tuple[Path, Path]) -> None:
    a, b = socat_pair
    write_yaml(tmp_path / "gateway.yaml", {"gateway": {"id": "gw"}, "devices": [
        {"id": "scale", "profile": SCALE,
         "connection": {"kind": "serial", "port": str(a), "baudrate": 9600}}]})
    drv = SerialDriver(load_config(tmp_path / "gateway.yaml").devices[0],
                       DriverContext("gw", tmp_path, tmp_path))
    await drv.connect()
    fd = os.open(b, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"\x00\x13garbage\r\nST,GS,+0012")  # noise, then half a line
        await asyncio.sleep(0.05)
        os.write(fd, b".345kg\r\nUS,NT,-0000.120kg\r\nX" + b"Y" * 100 + b"\r\n"
                 b"ST,GS,+0001.000kg\r\n")
        frames = await asyncio.wait_for(_next(drv, 3), 5)
        assert [f["weight"] for f in frames] == [12.345, -0.12, 1.0]
        assert frames[1]["net"] is True and frames[1]["stable"] is False
        assert drv.counts["rejected"] == 1 and drv.counts["overlong"] == 1
    finally:
        os.close(fd)
        await drv.close()


async def test_rs485_mode_on_a_port_without_it_is_a_clear_error(sim: Simulator,
                                                                 tmp_path: Path) -> None:
    drv = serial_driver(sim, "scale", tmp_path, rs485=True)  # a pty has no RS-485 mode
    with pytest.raises(DeviceUnreachable, match="RS-485 mode is not supported by this port"):
        await drv.connect()
    assert not drv.connected
