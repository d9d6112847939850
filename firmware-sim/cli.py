"""``edgegw-sim``: serve simulated factory devices over Modbus TCP and RTU."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

from firmware_sim.benchprofiles import bench_profile, bench_profile_name, opcua_bench_profile
from firmware_sim.faults import parse_fault
from firmware_sim.machine import OpcuaBenchDevice
from firmware_sim.scenario import load_scenario
from firmware_sim.sim import Simulator, write_yaml

from gateway.durations import parse_duration
from gateway.errors import ConfigError
from gateway.profiles import default_profile_dirs, list_profiles


def _where(sim: Simulator, dev_id: str) -> str:
    """Where a served device answers (for the listing at start)."""
    if dev_id in sim.serial:
        return f"serial {sim.serial[dev_id].link} -> {sim.serial[dev_id].slave_path}"
    if dev_id in sim.opcua:
        return f"opcua {sim.opcua[dev_id].url}"
    if dev_id in sim.tcp:
        return f"tcp {sim.tcp[dev_id].host}:{sim.tcp[dev_id].port}"
    dev = sim.devices[dev_id]
    assert not isinstance(dev, OpcuaBenchDevice)  # an OPC UA device is served above
    bus = next((b.slave_path or p) for p, b in sim.rtu.items()
               if b.devices.get(dev.unit_id) is dev)
    return f"rtu {bus} unit {dev.unit_id}"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edgegw-sim",
        description="Firmware simulator: realistic, flawed factory devices over Modbus TCP/RTU "
        "and OPC UA.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="serve devices from profiles or a scenario file")
    s.add_argument("--scenario", type=Path, help="scenario YAML (devices, timed faults)")
    s.add_argument("--profile", action="append", default=[],
                   help="profile to serve (vendor/model); repeatable")
    s.add_argument("--count", type=int, default=1, help="devices per --profile (default 1)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=15020,
                   help="first TCP port; devices take consecutive ports (0 = any free)")
    s.add_argument("--rtu", help="serve on this tty path instead of TCP ('pty' makes a pty)")
    s.add_argument("--fault", action="append", default=[], metavar="DEVICE=FAULT",
                   help="initial fault, e.g. cnc-mc500-1=slow:500ms (repeatable)")
    s.add_argument("--time-scale", type=float, default=1.0,
                   help="speed up machine-state changes (default 1.0)")
    s.add_argument("--profiles-dir", type=Path, action="append", default=[])
    s.add_argument("--opcua-mode", choices=["poll", "subscribe"], default="subscribe",
                   help="how the written gateway config reads OPC UA machines")
    s.add_argument("--opcua-secure", action="store_true",
                   help="OPC UA machines also offer secured endpoints (certificates in --pki)")
    s.add_argument("--context-for", action="append", default=[], metavar="READER=DEVICE",
                   help="in the written config, the code reader READER gives DEVICE its "
                   "product context (repeatable)")
    s.add_argument("--serial-dir", type=Path, default=None,
                   help="serial devices' port names (symlinks to their ptys); default a "
                   "temporary directory")
    s.add_argument("--pki", type=Path, default=Path("edgegw-sim-pki"),
                   help="OPC UA server certificates; client certificates to accept go in "
                   "PKI/trusted/ (default ./edgegw-sim-pki)")
    _config_args(s)

    b = sub.add_parser("bench", help="D devices x R registers updated every 100 ms")
    b.add_argument("--devices", "-D", type=int, default=20)
    b.add_argument("--registers", "-R", type=int, default=100)
    b.add_argument("--interval", default="100ms", help="register update interval")
    b.add_argument("--poll", default="1s", help="poll period written to the gateway config")
    b.add_argument("--changing", choices=["all", "half-slow"], default="all",
                   help="all: every register changes on every update (the throughput "
                   "bench); half-slow: half the registers drift slowly (each moves by 1 "
                   "with probability 0.05 per update), the other half never change (the "
                   "wire-size bench)")
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, default=16000, help="first TCP port (0 = any free)")
    _config_args(b)

    u = sub.add_parser("opcua-bench", help="D OPC UA servers x N nodes, a fraction changing "
                       "every update")
    u.add_argument("--devices", "-D", type=int, default=10)
    u.add_argument("--nodes", "-N", type=int, default=500)
    u.add_argument("--interval", default="100ms", help="update interval")
    u.add_argument("--change", type=float, default=0.1,
                   help="fraction of the counters that change per update (default 0.1)")
    u.add_argument("--mode", choices=["poll", "subscribe"], default="subscribe")
    u.add_argument("--poll", default="100ms", help="poll period / publishing interval")
    u.add_argument("--sampling", default=None,
                   help="subscription sampling interval (default: the publishing interval)")
    u.add_argument("--host", default="127.0.0.1")
    _config_args(u)

    f = sub.add_parser("fleet", help="light simulated gateways publishing edgegw batches to "
                       "a (clustered) broker, to load a backend")
    f.add_argument("--hosts", required=True,
                   help="the broker nodes, host[:port],... or [v6]:port (port 1883 when none; each "
                   "gateway fails over)")
    f.add_argument("--gateways", "-G", type=int, default=100)
    f.add_argument("--devices", "-D", type=int, default=10, help="devices per gateway")
    f.add_argument("--period", default="1s", help="a batch per device this often")
    f.add_argument("--duration", default="60s", help="then stop (after the last PUBACK)")
    f.add_argument("--name", default="fleet", help="gateway ids: <name>-00000 ...")
    f.add_argument("--encoding", choices=["json", "compact"], default="compact",
                   help="JSON batches, or compact packs (one per gateway per period)")
    f.add_argument("--key", type=Path, help="sign with this private key (edgegw certs "
                   "signing-key makes one); the ingest trusts its public key")
    f.add_argument("--key-id", default="fleet-1", help="the key id in the signatures")
    f.add_argument("--report", type=Path, help="write per gateway/device the batches "
                   "delivered and the sum of the counter n here (JSON)")

    n = sub.add_parser("idnode", help="a fake identifier-resolution secondary node (HTTP)")
    n.add_argument("--port", type=int, default=0, help="TCP port (0 = any free)")
    n.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                   help="accounts (default edgegw:123456)")

    md = sub.add_parser("modem", help="a 5G module's AT port on a pty (signal scenario: "
                        "good, interference at 20 s, loss at 40 s, recovery at 50 s)")
    md.add_argument("--link", type=Path, default=Path("ttyModem"),
                    help="symlink to the pty (default ./ttyModem): use it as the port of a "
                    "modem-at device")
    md.add_argument("--steady", action="store_true", help="a good signal, no scenario")
    md.add_argument("--fault", choices=["", "garbage", "silence", "stuck"], default="",
                    help="stuck: not registered until the radio is turned off and on")
    md.add_argument("--carrier", metavar="CODE", help="an identifier code held in the SIM "
                    "(active identifier carrier: EF 6FF0 and the applet "
                    "A000000863454447570001)")

    sub.add_parser("profiles", help="list the profiles the simulator can serve")
    return ap


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write-config", type=Path, metavar="FILE",
                   help="write a gateway.yaml that polls the served devices")
    p.add_argument("--gateway-id", default="edgegw-sim")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)


def _build_serve(args: argparse.Namespace) -> Simulator:
    if args.scenario:
        sim = Simulator.from_scenario(load_scenario(args.scenario), args.profiles_dir,
                                      args.pki, args.serial_dir)
    else:
        if not args.profile:
            raise SystemExit("edgegw-sim serve: give --scenario or at least one --profile")
        sim = Simulator(0.1, args.profiles_dir, args.pki, args.serial_dir)
        sim.time_scale = args.time_scale
        port = args.port
        unit = 1
        for profile in args.profile:
            base = profile.rsplit("/", 1)[-1]
            for n in range(1, args.count + 1):
                dev_id = f"{base}-{n}"
                if args.rtu:
                    sim.add_profile_device(dev_id, profile, rtu=args.rtu, unit_id=unit, seed=unit)
                    unit += 1
                else:
                    sim.add_profile_device(dev_id, profile, host=args.host, port=port,
                                           seed=port, secure=args.opcua_secure)
                    port = port + 1 if port else 0
    for spec in args.fault:
        dev_id, _, fault = spec.partition("=")
        if dev_id not in sim.devices:
            raise SystemExit(f"edgegw-sim: --fault names unknown device {dev_id!r}")
        sim.devices[dev_id].fault = parse_fault(fault)
    return sim


def _build_opcua_bench(args: argparse.Namespace) -> Simulator:
    sim = Simulator(parse_duration(args.interval))
    for i in range(args.devices):
        sim.add_opcua_bench_device(f"ua-{i:03d}", args.nodes, args.change, host=args.host)
    return sim


def _build_bench(args: argparse.Namespace) -> Simulator:
    sim = Simulator(parse_duration(args.interval))
    for i in range(args.devices):
        sim.add_bench_device(f"bench-{i:03d}", args.registers, host=args.host,
                             port=args.port + i if args.port else 0,
                             changing=getattr(args, "changing", "all"))
    return sim


async def until_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _run(args: argparse.Namespace) -> None:
    sim = _build_bench(args) if args.cmd == "bench" else \
        _build_opcua_bench(args) if args.cmd == "opcua-bench" else _build_serve(args)
    await sim.start()
    for dev_id, dev in sim.devices.items():
        print(f"{dev_id:24} {dev.profile_name:28} {_where(sim, dev_id)}", flush=True)
    if args.write_config:
        out: Path = args.write_config
        extra: dict[str, object] = {}
        if args.cmd == "bench":
            period = parse_duration(args.poll)
            write_yaml(out.parent / "profiles" / f"{bench_profile_name(args.registers)}.yaml",
                       bench_profile(args.registers, period))
            extra = {"pipeline": {"report": "always"}}
        if args.cmd == "opcua-bench":
            period = parse_duration(args.poll)
            write_yaml(out.parent / "profiles" / "bench" / f"ua{args.nodes}.yaml",
                       opcua_bench_profile(args.nodes, period, args.sampling and
                                           parse_duration(args.sampling)))
            extra = {"pipeline": {"report": "always"}}
        cfg = sim.gateway_config(args.gateway_id, args.mqtt_host, args.mqtt_port, **extra)
        for spec in getattr(args, "context_for", []):
            reader, _, target = spec.partition("=")
            for d in cfg["devices"]:  # type: ignore[attr-defined]
                if d["id"] == reader:
                    d.setdefault("context_for", []).append(target)
        for d in cfg["devices"]:  # type: ignore[attr-defined]
            if d["connection"]["kind"] == "opcua":
                d["connection"]["mode"] = getattr(args, "opcua_mode", None) or \
                    getattr(args, "mode", "poll")
        write_yaml(out, cfg)
        print(f"gateway config written to {out}", flush=True)
    print("simulator ready", flush=True)
    try:
        await until_signal()
    finally:
        await sim.stop()


def _idnode(args: argparse.Namespace) -> int:
    from firmware_sim.idnode import FakeIdNode

    users = dict(u.split(":", 1) for u in args.user) if args.user else None
    node = FakeIdNode(users, port=args.port).start()
    print(f"identifier node {node.url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    node.stop()
    print(f"identifier node stopped: {len(node.records)} code(s) registered", flush=True)
    return 0


async def _fleet(args: argparse.Namespace) -> int:
    import json
    import time

    from firmware_sim.fleet import Fleet

    from gateway.common import endpoint

    try:  # the gateway's rules: host, host:port or [v6]:port
        hosts = [endpoint(h, 1883) for h in args.hosts.split(",")]
    except ValueError as exc:
        print(f"edgegw-sim fleet: --{exc}", file=sys.stderr)
        return 2
    signer = None
    if args.key is not None:
        from gateway.crypto.signing import Signer, load_private

        signer = Signer(load_private(args.key), args.key_id)
    fleet = Fleet(hosts, args.gateways, args.devices, parse_duration(args.period),
                  name=args.name, compact=args.encoding == "compact", signer=signer)
    run = asyncio.create_task(fleet.run())
    t0 = time.monotonic()
    await asyncio.sleep(parse_duration(args.duration))
    fleet.stop.set()
    await run
    produced = fleet.produced()
    batches = sum(c.batches for c in produced.values())
    elapsed = time.monotonic() - t0
    print(f"fleet: {batches} batches delivered by {args.gateways} gateways in {elapsed:.1f} s "
          f"({batches / elapsed:.0f}/s), "
          f"{sum(g.failovers for g in fleet.gateways)} failovers", flush=True)
    if args.report:
        args.report.write_text(json.dumps({f"{gw}/{dev}": [c.batches, c.total]
                                           for (gw, dev), c in produced.items()}))
    return 0


async def _modem(args: argparse.Namespace) -> None:
    from firmware_sim.modem import SCENARIO, SimModem

    m = SimModem(args.link.absolute(), None if args.steady else SCENARIO, args.carrier)
    m.fault = args.fault
    await m.start()
    print(f"modem AT port {m.link} -> {m.slave_path}"
          + (f", identifier carrier {args.carrier}" if args.carrier else ""), flush=True)
    try:
        await until_signal()
    finally:
        await m.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.cmd == "idnode":
        return _idnode(args)
    if args.cmd == "fleet":
        return asyncio.run(_fleet(args))
    if args.cmd == "modem":
        asyncio.run(_modem(args))
        return 0
    if args.cmd == "profiles":
        for name in list_profiles(default_profile_dirs()):
            print(name)
        return 0
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(args))
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"edgegw-sim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
