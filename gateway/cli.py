"""``edgegw``: run the gateway and commission devices."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.config import Device, LoadedConfig, check_files, load_config
from gateway.crypto import commands as certs_commands
from gateway.errors import ConfigError, DeviceError, EdgegwError
from gateway.identifiers import commands as id_commands
from gateway.logs import setup as setup_logging
from gateway.model import Value
from gateway.profiles import Point, default_profile_dirs, list_profiles

if TYPE_CHECKING:
    from drivers.base import Driver

DEFAULT_CONFIG = os.environ.get("EDGEGW_CONFIG", "/etc/edgegw/gateway.yaml")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edgegw", description="Edge IoT gateway: factory devices -> MQTT."
    )
    ap.add_argument("--version", action="version", version=f"edgegw {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, default=Path(DEFAULT_CONFIG),
                       help=f"gateway config (default {DEFAULT_CONFIG}, or $EDGEGW_CONFIG)")

    r = sub.add_parser("run", help="run the gateway until SIGTERM/Ctrl-C")
    with_config(r)
    r.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    c = sub.add_parser("check-config", help="validate a config and its profiles; exit 1 on errors")
    c.add_argument("file", type=Path, nargs="?", help="config file (or -c)")
    with_config(c)

    rd = sub.add_parser("read", help="read a device's points once (commissioning)")
    with_config(rd)
    rd.add_argument("device")
    rd.add_argument("point", nargs="?", help="one point (default: all)")
    rd.add_argument("--explain", action="store_true",
                    help="also print the request plan: each request's range, function code "
                    "and points, and what the device refused (learned)")
    rd.add_argument("--relearn", action="store_true",
                    help="Modbus: forget the request limits learned from this device (after "
                    "a firmware update) and learn them again")

    w = sub.add_parser("write", help="write one 'rw' point of a device")
    with_config(w)
    w.add_argument("device")
    w.add_argument("point")
    w.add_argument("value", help="number, true/false, or text for string points")

    b = sub.add_parser("browse", help="print an OPC UA server's address space: a configured "
                       "device's, or any server's with --endpoint (commissioning)")
    with_config(b)
    b.add_argument("device", nargs="?", help="a configured OPC UA device (or use --endpoint)")
    b.add_argument("node", nargs="?", help="start NodeId, e.g. 'ns=2;s=Machine' or "
                   "'nsu=<uri>;s=Machine' (default: the profile's root; with --endpoint i=85, "
                   "Objects)")
    b.add_argument("--endpoint", metavar="URL", help="opc.tcp://host:port[/path]: browse this "
                   "server; no config or profile needed")
    b.add_argument("--security", default="None", metavar="POLICY/MODE",
                   help="with --endpoint: e.g. Basic256Sha256/SignAndEncrypt (default None)")
    b.add_argument("--trust", action="append", type=Path, default=[], metavar="PATH",
                   help="with --endpoint: a server certificate (file or directory) to trust "
                   "(default <state dir>/pki/trusted; repeatable)")
    b.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="with --endpoint: where the gateway's certificate is (pki/own; created "
                   "when missing): default the config's state directory if the config exists, "
                   "else the current directory")
    b.add_argument("--username", help="with --endpoint: user name identity")
    b.add_argument("--password-file", type=Path, help="with --endpoint: the user's password")
    b.add_argument("--depth", type=int, default=4, help="levels to descend (default 4)")
    b.add_argument("--write-profile", type=Path, metavar="FILE",
                   help="write a starting profile for the variables found (browse paths from "
                   "the start node, types, arrays, units, enumerations, rw)")
    b.add_argument("--vendor", default="Vendor", help="the written profile's vendor")
    b.add_argument("--model", default="Model", help="the written profile's model")

    id_commands.add_parser(sub, with_config)
    m = sub.add_parser("monitor", help="print live decoded telemetry from the broker")
    with_config(m)
    m.add_argument("--host", help="broker host (default: from the config, else 127.0.0.1)")
    m.add_argument("--port", type=int, help="broker port (default: from the config, else 1883)")
    m.add_argument("--topic", default=None, help="topic filter (default: <prefix>/#)")
    m.add_argument("--count", type=int, default=0, help="stop after N messages")

    ing = sub.add_parser("ingest", help="backend: MQTT -> InfluxDB, exactly once")
    ing.add_argument("-c", "--config", type=Path, required=True, help="ingest.yaml")
    ing.add_argument("--check", action="store_true", help="validate the config, connect to "
                     "the broker (subscribing as the ingest would) and the database, report "
                     "each; exit 0 when all are ok, 2 when one is not")
    ing.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    lv = sub.add_parser("live", help="live table of machine states read back from InfluxDB 1.x")
    lv.add_argument("--url", default="http://127.0.0.1:8086")
    lv.add_argument("--db", default="edgegw")
    lv.add_argument("--count", type=int, default=0, help="stop after N refreshes")

    rl = sub.add_parser("reload", help="check the config, then have the running gateway "
                        "apply it (SIGHUP; under systemd: systemctl reload edgegw)")
    with_config(rl)

    sub.add_parser("profiles", help="list the shipped device profiles")
    certs_commands.add_parser(sub, with_config)
    return ap


def _monitor(args: argparse.Namespace) -> int:
    from gateway.monitor import monitor

    host, port, prefix = "127.0.0.1", 1883, "edgegw"
    if args.config.is_file():
        mq = load_config(args.config).config.uplink.mqtt
        host, port, prefix = mq.host, mq.port, mq.topic_prefix
    topic = args.topic or f"{prefix}/#"
    import aiomqtt

    try:
        asyncio.run(monitor(args.host or host, args.port or port, topic, sys.stdout, args.count))
    except aiomqtt.MqttError as exc:
        print(f"edgegw monitor: broker {args.host or host}:{args.port or port}: {exc}",
              file=sys.stderr)
        return 2
    return 0


def _reload(loaded: LoadedConfig) -> int:
    """The config is valid (it loaded): signal the gateway that runs it."""
    import signal

    from gateway.app import PIDFILE

    for d in (loaded.state_dir, Path("/var/lib/edgegw")):
        try:
            pid = int((d / PIDFILE).read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # a stale pid file
        if b"edgegw" not in cmdline and b"gateway.cli" not in cmdline:
            continue  # the pid was reused by another program
        os.kill(pid, signal.SIGHUP)
        print(f"{loaded.path}: ok; edgegw (pid {pid}) is applying it: see its log")
        return 0
    print(f"edgegw reload: no running gateway found (no live pid in {loaded.state_dir}/"
          f"{PIDFILE} or /var/lib/edgegw/{PIDFILE})", file=sys.stderr)
    return 2


def _load(path: Path) -> LoadedConfig:
    return load_config(path)


def _device(loaded: LoadedConfig, dev_id: str) -> Device:
    for d in loaded.devices:
        if d.id == dev_id:
            return d
    known = ", ".join(d.id for d in loaded.devices) or "none"
    raise ConfigError([(str(loaded.path), f"no device '{dev_id}' (devices: {known})")])


def _fmt(v: Value) -> str:
    """A value as read: floats in full precision (the shortest text that reads back as
    the same float: 12345678.9, not 1.23457e+07)."""
    if isinstance(v, tuple):  # an array: as JSON ([1.5, 2.25], ["a", "b"], [true])
        import json

        return json.dumps(list(v), ensure_ascii=False)
    return repr(v) if isinstance(v, float) else str(v)


def _points(dev: Device, name: str | None) -> list[Point]:
    points = dev.profile.expanded_points()
    if name is None:
        return points
    found = [p for p in points if p.name == name]
    if not found:
        raise ConfigError([(dev.profile_name, f"no point '{name}' in the profile")])
    return found


@contextlib.asynccontextmanager
async def _connected(loaded: LoadedConfig, dev: Device,
                     relearn: bool = False) -> AsyncIterator[Driver]:
    from drivers.base import DriverContext
    from drivers.modbus.driver import ModbusDriver
    from drivers.registry import driver_for

    ctx = DriverContext(loaded.config.gateway.id, loaded.state_dir, loaded.path.parent)
    drv = driver_for(dev, ctx)
    if relearn and isinstance(drv, ModbusDriver):
        drv.forget()
    try:
        await drv.connect()
        yield drv
    finally:
        await drv.close()
        ctx.close()


async def _read(loaded: LoadedConfig, dev_id: str, point: str | None, explain: bool = False,
                relearn: bool = False) -> int:
    """Read a device once, poll group by poll group (the requests the gateway makes),
    and print every value; with ``explain`` also the request plan."""
    from drivers.modbus.driver import ModbusDriver
    from gateway.pipeline import DevicePipeline

    dev = _device(loaded, dev_id)
    points = _points(dev, point)
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(dev.profile.group_of(p), []).append(p)
    plan: list[str] = []
    async with _connected(loaded, dev, relearn) as drv:
        readings = []
        for pts in groups.values():
            readings += await drv.read(tuple(pts))
        if explain:
            for group, pts in groups.items():
                lines = drv.explain(tuple(pts))
                plan.append(f"poll group {group} (every {dev.poll_periods[group]:g} s): "
                            f"{len(lines)} request(s)")
                plan += [f"  {line}" for line in lines]
            if isinstance(drv, ModbusDriver):
                plan += drv.explain_limits()
    pipe = DevicePipeline(loaded.config.gateway.id, dev, 0.0, always=True)
    batch = pipe.process("read", readings)
    units = {p.name: p.unit or "" for p in points}
    width = max(len(p.name) for p in points)
    failed = 0
    if batch is not None:
        for name in (p.name for p in points):
            if name not in batch.values:
                continue
            v, q = batch.values[name], batch.quality.get(name)
            if v is None:
                failed += 1
                print(f"{name:{width}}  BAD  {q[1] if q else 'no value'}")
            elif q is not None:
                print(f"{name:{width}}  {_fmt(v)} {units[name]}  ({q[0].name.lower()}: {q[1]})")
            else:
                print(f"{name:{width}}  {_fmt(v)} {units[name]}".rstrip())
        needs = dev.profile.state.points() if dev.profile.state else set()
        read = {n for n, v in batch.values.items() if v is not None}
        if batch.state and needs <= read:  # a state from some of its points is a guess
            print(f"{'(state)':{width}}  {batch.state}")
    if plan:
        print("\n" + "\n".join(plan))
    return 1 if failed else 0


def _parse_value(text: str) -> Value:
    low = text.lower()
    if low in ("true", "on"):
        return True
    if low in ("false", "off"):
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


async def _write(loaded: LoadedConfig, dev_id: str, point: str, value: str) -> int:
    import getpass

    dev = _device(loaded, dev_id)
    (target,) = _points(dev, point)
    if not loaded.config.writes.enabled:
        raise ConfigError([(str(loaded.path), "device writes are disabled; set "
                            "writes: {enabled: true} to allow writes to 'rw' points")])
    who = os.environ.get("SUDO_USER") or getpass.getuser()
    wlog = logging.getLogger("edgegw.write")
    try:
        async with _connected(loaded, dev) as drv:
            await drv.write(target, _parse_value(value))
    except EdgegwError as exc:
        wlog.warning("write by %s refused: %s.%s = %s: %s", who, dev_id, point, value, exc)
        raise
    wlog.info("write by %s: %s.%s = %s", who, dev_id, point, value)
    print(f"{dev_id}.{point} <- {value}: ok")
    return 0


async def _browse(args: argparse.Namespace, loaded: LoadedConfig | None) -> int:
    """Print the address space of a configured OPC UA device, or of any server
    (``--endpoint``, no config needed); optionally write a starting profile."""
    from drivers.base import DriverContext
    from drivers.opcua.browse import profile
    from drivers.opcua.driver import OpcuaDriver

    if args.endpoint:
        dev = _browse_device(args)
        state = args.state_dir or (loaded.state_dir if loaded else Path.cwd())
        ctx = DriverContext(loaded.config.gateway.id if loaded else "browse", state.resolve(),
                            Path.cwd())
        node = args.node or args.device
        print(f"(the gateway's certificate, for servers that must trust it: "
              f"{state.resolve() / 'pki' / 'own' / 'cert.der'})", file=sys.stderr)
    else:
        if loaded is None or not args.device:
            raise ConfigError([("edgegw browse", "name a configured OPC UA device, or give "
                                "--endpoint opc.tcp://host:port")])
        dev = _device(loaded, args.device)
        if dev.profile.protocol != "opcua":
            raise ConfigError([(str(loaded.path), f"device '{args.device}' is not an OPC UA "
                                "device")])
        ctx = DriverContext(loaded.config.gateway.id, loaded.state_dir, loaded.path.parent)
        node = args.node
    drv = OpcuaDriver(dev, ctx)
    try:
        await drv.connect()
        text, nodes, start = await drv.browse(node, args.depth)
        ns = await drv.namespaces()
    finally:
        await drv.close()
        ctx.close()
    print("\n".join(text))
    if args.write_profile:
        import yaml

        doc, skipped = profile(nodes, ns, start, args.vendor, args.model)
        if not doc["points"]:
            raise ConfigError([(str(args.write_profile), "no variables below the start node: "
                                "nothing to write (try a deeper --depth or another node)")])
        args.write_profile.write_text(
            "# a starting profile: check names, types and units, choose poll groups\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        print(f"wrote {args.write_profile}: {len(doc['points'])} point(s)", file=sys.stderr)
        for why in skipped:
            print(f"  left out {why}", file=sys.stderr)
    return 0


def _browse_device(args: argparse.Namespace) -> Device:
    """A device for browsing a server named on the command line: its profile reads only
    the server's state (ServerStatus/State, on every server)."""
    from drivers.opcua.config import Opcua
    from gateway.config import DeviceConfig
    from gateway.profiles import Profile

    policy, _, mode = args.security.partition("/")
    where = "edgegw browse --endpoint"
    try:
        conn = Opcua.model_validate({
            "kind": "opcua", "endpoint": args.endpoint,
            "security": {"policy": policy, "mode": mode or ("None" if policy == "None"
                                                           else "SignAndEncrypt"),
                         "trust": [str(t.resolve()) for t in args.trust]},
            "username": args.username,
            "password_file": str(args.password_file.resolve()) if args.password_file else None,
        })
    except ValueError as exc:
        from gateway.yamlfile import validation_problems

        raise ConfigError(validation_problems(where, exc)) from None
    prof = Profile.model_validate({
        "vendor": "edgegw", "model": "browse", "protocol": "opcua",
        "points": [{"name": "server_state", "node": "i=2259", "enum": True}]})
    cfg = DeviceConfig(id="browse", profile="edgegw/browse", connection=conn)
    return Device(cfg, "edgegw/browse", prof, prof.workarounds, dict(prof.poll_groups))


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - to split into one module per command: issue 19, remaining
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", None) or "INFO"
    setup_logging(level)
    try:
        if args.cmd == "profiles":
            for name in list_profiles(default_profile_dirs()):
                print(name)
            return 0
        if args.cmd == "monitor":
            return _monitor(args)
        if args.cmd == "live":
            from gateway.ingest.live import live

            live(args.url, args.db, sys.stdout, args.count)
            return 0
        if args.cmd == "ingest":
            from gateway.ingest.config import load_ingest_config
            from gateway.ingest.service import run_ingest

            ingest_cfg = load_ingest_config(args.config)
            if args.check:
                from gateway.ingest.check import check

                print(f"{args.config}: config ok")
                findings = asyncio.run(check(ingest_cfg))
                for f in findings:
                    print(f"{f.what}: {'ok' if f.ok else 'FAILED'}: {f.detail}")
                return 0 if all(f.ok for f in findings) else 2
            asyncio.run(run_ingest(ingest_cfg))
            return 0
        if args.cmd == "id":
            return id_commands.run(args)
        if args.cmd == "certs":
            return certs_commands.run(args)
        if args.cmd == "check-config":
            loaded = _load(args.file or args.config)
            for w in check_files(loaded):
                print(f"warning: {w}", file=sys.stderr)
            n = sum(len(d.profile.expanded_points()) for d in loaded.devices)
            print(f"{loaded.path}: ok ({len(loaded.devices)} device(s), {n} point(s))")
            return 0
        if args.cmd == "browse" and args.endpoint:
            cfg = _load(args.config) if args.config.is_file() else None
            return asyncio.run(_browse(args, cfg))
        loaded = _load(args.config)
        if args.cmd == "run":
            from gateway.app import run_until_signal

            lc = loaded.config.logging
            setup_logging(args.log_level or lc.level, lc.format)
            for w in check_files(loaded):
                logging.getLogger("edgegw").warning("%s", w)
            asyncio.run(run_until_signal(loaded))
            return 0
        if args.cmd == "reload":
            check_files(loaded)
            return _reload(loaded)
        if args.cmd == "read":
            return asyncio.run(_read(loaded, args.device, args.point, args.explain,
                                     args.relearn))
        if args.cmd == "write":
            return asyncio.run(_write(loaded, args.device, args.point, args.value))
        if args.cmd == "browse":
            return asyncio.run(_browse(args, loaded))
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    except DeviceError as exc:
        print(f"edgegw: {exc}", file=sys.stderr)
        return 2
    except EdgegwError as exc:  # a key file, the spool
        print(f"edgegw: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
