"""The driver contract (drivers/base.py), checked the same way for every driver against
simulated devices: connect, read every point of a profile, cached plans, writes of `rw`
points with read-back, refused writes, close twice, an unreachable device."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from firmware_sim.modem import SimModem
from firmware_sim.sim import Simulator, write_yaml

from drivers.base import Driver, DriverContext
from drivers.registry import driver_for
from gateway.config import Device, load_config
from gateway.errors import DeviceUnreachable, WriteRejected
from gateway.model import Reading
from tests.support.servers import free_port

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]

CASES = [
    ("modbus-tcp", "acme/cnc-vmc850"),
    ("modbus-tcp", "voltmeter/em340-3ph"),
    ("opcua", "acme/cnc-ua500"),
    ("opcua", "moldtech/imm-ua-e77"),
    ("serial", "weightec/scale-ws300"),
    ("serial", "thermoline/tc-96"),
    ("modem-at", "edgegw/modem"),
]


def _device(sim: Simulator, tmp: Path) -> Device:
    cfg = sim.gateway_config("gw-conf")
    for d in cfg["devices"]:  # type: ignore[attr-defined]
        if d["connection"]["kind"] != "serial":
            d["connection"]["timeout"] = "1s"
    write_yaml(tmp / "gateway.yaml", cfg)
    return load_config(tmp / "gateway.yaml").devices[0]


@pytest.fixture(params=CASES, ids=[f"{k}:{p}" for k, p in CASES])
async def served(request: pytest.FixtureRequest,
                 tmp_path: Path) -> AsyncIterator[tuple[Simulator, Device, Driver]]:
    kind, profile = request.param
    if kind == "modem-at":  # the simulated module is not one of the Simulator's devices
        modem = SimModem(tmp_path / "ttyModem")
        await modem.start()
        write_yaml(tmp_path / "gateway.yaml", {"gateway": {"id": "gw-conf"}, "devices": [
            {"id": "dev", "profile": profile, "connection": {
                "kind": kind, "port": str(modem.link), "timeout": "1s"}}]})
        dev = load_config(tmp_path / "gateway.yaml").devices[0]
        ctx = DriverContext("gw-conf", tmp_path, tmp_path)
        drv = driver_for(dev, ctx)
        try:
            yield Simulator(), dev, drv
        finally:
            await drv.close()
            ctx.close()
            await modem.stop()
        return
    async with Simulator(0.05, serial_dir=tmp_path / "tty") as sim:
        sim.add_profile_device("dev", profile, port=0)
        if "dev" in sim.opcua:
            await sim.opcua["dev"].start()
        elif "dev" in sim.serial:
            await sim.serial["dev"].start()
        else:
            await sim.tcp["dev"].start()
        dev = _device(sim, tmp_path)
        ctx = DriverContext("gw-conf", tmp_path, tmp_path)
        drv = driver_for(dev, ctx)
        try:
            yield sim, dev, drv
        finally:
            await drv.close()
            ctx.close()


def _values(readings: list[Reading]) -> dict[str, object]:
    out: dict[str, object] = {}
    for r in readings:
        assert len(r.values) == len(r.points)
        assert r.error is None, r.error
        assert not r.status, r.status
        out.update(zip(r.points, r.values, strict=True))
    return out


async def test_reads_every_point_in_order(served: tuple[Simulator, Device, Driver]) -> None:
    _, dev, drv = served
    await drv.connect()
    assert drv.connected
    points = tuple(dev.profile.expanded_points())
    first = _values(await drv.read(points))
    assert set(first) == {p.name for p in points}
    assert sum(v is None for v in first.values()) == 0
    again = _values(await drv.read(points))  # the cached plan serves the same answer shape
    assert set(again) == set(first)


async def test_writes_rw_points_and_refuses_the_others(
    served: tuple[Simulator, Device, Driver],
) -> None:
    _, dev, drv = served
    await drv.connect()
    points = dev.profile.expanded_points()
    rw = [p for p in points if p.access == "rw" and p.type != "string"]
    if dev.profile.protocol in ("serial", "modem"):  # read-only: every write is refused
        with pytest.raises(WriteRejected):
            await drv.write(points[0], 1)
        return
    assert rw, "every shipped profile has a writable point"
    current = _values(await drv.read(tuple(rw)))
    for p in rw:
        v = current[p.name]
        new = (not v) if isinstance(v, bool) else (v + 1 if isinstance(v, int) else
                                                   round(float(v) + 1.0, 1))  # type: ignore[arg-type]
        await drv.write(p, new)
        back = _values(await drv.read((p,)))[p.name]
        assert back == pytest.approx(new), p.name
    ro = next(p for p in points if p.access == "r")
    with pytest.raises(WriteRejected, match="read-only"):
        await drv.write(ro, 1)


async def test_close_twice_and_reconnect(served: tuple[Simulator, Device, Driver]) -> None:
    _, dev, drv = served
    await drv.connect()
    await drv.close()
    await drv.close()
    assert not drv.connected
    await drv.connect()
    assert _values(await drv.read(tuple(dev.profile.expanded_points()[:3])))


async def test_explains_its_requests_and_reports_its_metrics(
    served: tuple[Simulator, Device, Driver],
) -> None:
    _, dev, drv = served
    await drv.connect()
    points = tuple(dev.profile.expanded_points())
    await drv.read(points)
    lines = drv.explain(points)
    assert lines and all(isinstance(line, str) and line for line in lines)
    said = " ".join(lines).split()
    assert all(p.name in said for p in points)  # every point is in some request
    metrics = drv.metrics()
    assert len({m.name for m in metrics}) == len(metrics)
    assert all(m.kind in ("gauge", "counter") and m.help for m in metrics)


@pytest.mark.parametrize(("kind", "profile"), CASES[::2])
async def test_unreachable_device(tmp_path: Path, kind: str, profile: str) -> None:
    port = free_port()
    conn: dict[str, object] = {
        "modbus-tcp": {"kind": kind, "host": "127.0.0.1", "port": port, "timeout": "500ms"},
        "opcua": {"kind": kind, "endpoint": f"opc.tcp://127.0.0.1:{port}", "timeout": "500ms"},
        "serial": {"kind": kind, "port": str(tmp_path / "ttyUSB9")},
        "modem-at": {"kind": kind, "port": str(tmp_path / "ttyUSB9")},
    }[kind]
    write_yaml(tmp_path / "gateway.yaml", {"gateway": {"id": "g"}, "devices": [
        {"id": "d", "profile": profile, "connection": conn}]})
    dev = load_config(tmp_path / "gateway.yaml").devices[0]
    drv = driver_for(dev, DriverContext("g", tmp_path, tmp_path))
    with pytest.raises(DeviceUnreachable):
        await drv.connect()
    assert not drv.connected
    await drv.close()
