"""``browse``: an OPC UA server's address space, a configured device's or any server's
(``--endpoint``, no config needed), optionally written as a starting profile."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import device
from gateway.config import Device, LoadedConfig, load_config
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.cli.common import Subparsers, WithConfig


def add_parser(sub: Subparsers, with_config: WithConfig) -> None:
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
    b.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.endpoint:  # the config is optional: its state directory and gateway id
        return asyncio.run(_browse(args, load_config(args.config)
                                   if args.config.is_file() else None))
    return asyncio.run(_browse(args, load_config(args.config)))


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
        dev = device(loaded, args.device)
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
