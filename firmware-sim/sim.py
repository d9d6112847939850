"""The simulator runtime: serves devices, updates their values, plays fault scenarios."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml
from firmware_sim.benchprofiles import bench_profile_name
from firmware_sim.faults import Fault, parse_fault
from firmware_sim.machine import BenchDevice, OpcuaBenchDevice, SimDevice
from firmware_sim.opcua_server import OpcuaSimServer
from firmware_sim.scenario import FaultEvent, Scenario, SimDeviceSpec
from firmware_sim.serial_server import SerialSimServer
from firmware_sim.transport import RtuBusServer, TcpDeviceServer

from gateway.profiles import default_profile_dirs, load_profile

log = logging.getLogger("edgegw.sim")

Device = SimDevice | BenchDevice | OpcuaBenchDevice
#: the devices a Modbus transport serves (TCP or an RTU bus)
ModbusDevice = SimDevice | BenchDevice




def free_port() -> int:
    """A free TCP port on loopback, for a simulated device without a fixed port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

class Simulator:
    """Holds devices and their servers. Use ``async with`` or start()/stop()."""

    def __init__(self, update_interval: float = 0.1, profile_dirs: Sequence[Path] = (),
                 pki: Path | None = None, serial_dir: Path | None = None) -> None:
        self.update_interval = update_interval
        #: serial devices' port names (symlinks to their ptys)
        self.serial_dir = serial_dir or Path(tempfile.gettempdir()) / f"edgegw-sim-{os.getpid()}"
        self.serial: dict[str, SerialSimServer] = {}
        #: where secured OPC UA servers keep certificates (and ``trusted/`` client certs)
        self.pki = pki
        self.opcua: dict[str, OpcuaSimServer] = {}
        self.profile_dirs = [*profile_dirs, *default_profile_dirs()]
        self._own_dirs = [Path(d).resolve() for d in profile_dirs]
        self.devices: dict[str, Device] = {}
        self.tcp: dict[str, TcpDeviceServer] = {}
        self.rtu: dict[str, RtuBusServer] = {}  # by tty path (or 'pty:<n>')
        self._rtu_devices: dict[str, list[ModbusDevice]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.time_scale = 1.0
        self.scenario_faults: list[FaultEvent] = []

    # -- building --------------------------------------------------------------------
    def add_profile_device(self, dev_id: str, profile: str, *, port: int | None = None,
                           host: str = "127.0.0.1", rtu: str | None = None,
                           unit_id: int = 1, seed: int = 0, secure: bool = False,
                           users: dict[str, str] | None = None,
                           extra_namespaces: int = 0,
                           refuse_at: str = "session") -> SimDevice:
        dev = SimDevice(dev_id, load_profile(profile, self.profile_dirs), unit_id, seed,
                        self.time_scale)
        dev.profile_name = profile
        if dev.profile.protocol == "serial":
            if dev_id in self.devices:
                raise ValueError(f"duplicate simulated device id {dev_id!r}")
            self.devices[dev_id] = dev
            self.serial[dev_id] = SerialSimServer(dev, self.serial_dir / dev_id, seed)
            return dev
        if dev.profile.protocol == "opcua":
            if dev_id in self.devices:
                raise ValueError(f"duplicate simulated device id {dev_id!r}")
            if secure and self.pki is None:
                raise ValueError("a secured OPC UA server needs the simulator's pki directory")
            self.devices[dev_id] = dev
            self.opcua[dev_id] = OpcuaSimServer(
                dev, host, port or free_port(), secure=secure, pki=self.pki, users=users,
                extra_namespaces=extra_namespaces, refuse_at=refuse_at)
            return dev
        self._add(dev, host, port, rtu)
        return dev

    def add_opcua_bench_device(self, dev_id: str, nodes: int, change: float, *,
                               port: int = 0, host: str = "127.0.0.1") -> OpcuaBenchDevice:
        dev = OpcuaBenchDevice(dev_id, nodes, change)
        self.devices[dev_id] = dev
        self.opcua[dev_id] = OpcuaSimServer(dev, host, port or free_port())  # type: ignore[arg-type]
        return dev

    def add_bench_device(self, dev_id: str, registers: int, *, port: int = 0,
                         host: str = "127.0.0.1", changing: str = "all") -> BenchDevice:
        dev = BenchDevice(dev_id, registers, changing=changing)
        dev.profile_name = bench_profile_name(registers)
        self._add(dev, host, port, None)
        return dev

    def _add(self, dev: ModbusDevice, host: str, port: int | None, rtu: str | None) -> None:
        if dev.id in self.devices:
            raise ValueError(f"duplicate simulated device id {dev.id!r}")
        self.devices[dev.id] = dev
        if rtu is not None:
            self._rtu_devices.setdefault(rtu, []).append(dev)
        else:
            self.tcp[dev.id] = TcpDeviceServer(dev, host, port or 0)

    @classmethod
    def from_scenario(cls, sc: Scenario, profile_dirs: Sequence[Path] = (),
                      pki: Path | None = None, serial_dir: Path | None = None) -> Simulator:
        sim = cls(sc.update_interval, profile_dirs, pki, serial_dir)
        sim.time_scale = sc.time_scale
        sim.scenario_faults = list(sc.faults)
        for d in sc.devices:
            dev = sim.add_spec(d)
            dev.fault = parse_fault(d.fault)
        return sim

    def add_spec(self, d: SimDeviceSpec) -> SimDevice:
        return self.add_profile_device(d.id, d.profile, port=d.port, host=d.host,
                                       rtu=d.rtu, unit_id=d.unit_id, seed=d.seed,
                                       secure=d.secure, users=d.users)

    # -- running ---------------------------------------------------------------------
    async def start(self) -> None:
        for server in self.tcp.values():
            await server.start()
        for ua_server in self.opcua.values():
            await ua_server.start()
        for serial_server in self.serial.values():
            await serial_server.start()
        for path, devs in self._rtu_devices.items():
            bus = RtuBusServer(None if path == "pty" else path, devs)
            await bus.start()
            self.rtu[path] = bus
        self._tasks.append(asyncio.create_task(self._update_loop(), name="sim-update"))
        if self.scenario_faults:
            self._tasks.append(asyncio.create_task(self._scenario(), name="sim-scenario"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        for server in self.tcp.values():
            await server.stop()
        for ua_server in self.opcua.values():
            await ua_server.stop()
        for serial_server in self.serial.values():
            await serial_server.stop()
        for bus in self.rtu.values():
            await bus.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def port_of(self, dev_id: str) -> int:
        if dev_id in self.opcua:
            return self.opcua[dev_id].port
        return self.tcp[dev_id].port

    def set_fault(self, dev_id: str, fault: Fault | str) -> None:
        dev = self.devices[dev_id]
        dev.fault = parse_fault(fault) if isinstance(fault, str) else fault
        log.info("device %s: fault %s", dev_id, dev.fault.kind)
        if dev.fault.kind == "drop" and dev_id in self.tcp:
            self.tcp[dev_id].drop_connections()

    async def _update_loop(self) -> None:
        interval = self.update_interval
        deadline = time.monotonic()
        while True:
            for dev in self.devices.values():
                dev.step()
            for serial_server in self.serial.values():
                await serial_server.publish()
            for ua_server in self.opcua.values():
                try:
                    await ua_server.publish()
                except OSError as exc:  # e.g. restarting while the port is still taken
                    log.warning("device %s: OPC UA server: %s", ua_server.dev.id, exc)
            deadline += interval
            delay = deadline - time.monotonic()
            if delay < 0:  # fell behind: skip ticks rather than drift
                deadline = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    async def _scenario(self) -> None:
        t0 = time.monotonic()
        ends: list[tuple[float, str]] = []
        events = sorted(self.scenario_faults, key=lambda e: e.at)
        pending = [(e.at, e.device, e.fault) for e in events]
        for e in events:
            if e.duration is not None:
                ends.append((e.at + e.duration, e.device))
        timeline = sorted([*pending, *[(t, d, "none") for t, d in ends]])
        for at, dev, fault in timeline:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            self.set_fault(dev, fault)

    # -- helpers for users -----------------------------------------------------------
    def gateway_config(self, gateway_id: str = "edgegw-demo", mqtt_host: str = "127.0.0.1",
                       mqtt_port: int = 1883, **extra: object) -> dict[str, object]:
        """A gateway.yaml (as a dict) that polls every served device."""
        devices: list[dict[str, object]] = []
        for dev_id, dev in self.devices.items():
            conn: dict[str, object]
            if dev_id in self.serial:
                conn = {"kind": "serial", "port": str(self.serial[dev_id].link)}
            elif dev_id in self.opcua:
                srv = self.opcua[dev_id]
                conn = {"kind": "opcua", "endpoint": srv.url}
                if srv.secure:
                    conn["security"] = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                                        "trust": [str(srv.cert_path)]}
            elif dev_id in self.tcp:
                conn = {"kind": "modbus-tcp", "host": self.tcp[dev_id].host,
                        "port": self.tcp[dev_id].port}
            else:
                assert not isinstance(dev, OpcuaBenchDevice)  # served by OPC UA above
                path = next(p for p, ds in self._rtu_devices.items() if dev in ds)
                bus = self.rtu.get(path)
                port = bus.slave_path if bus and bus.slave_path else path
                conn = {"kind": "modbus-rtu", "port": port, "baudrate": 19200,
                        "unit_id": dev.unit_id}
            devices.append({"id": dev_id, "profile": dev.profile_name, "connection": conn})
        cfg: dict[str, object] = {
            "gateway": {"id": gateway_id},
            "uplink": {"mqtt": {"host": mqtt_host, "port": mqtt_port}},
            "devices": devices,
        }
        if self._own_dirs:  # the gateway finds the same profiles (absolute paths)
            cfg["profiles_dir"] = [str(d) for d in self._own_dirs]
        cfg.update(extra)
        return cfg


def write_yaml(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
