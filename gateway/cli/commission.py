"""Commissioning: ``read`` a device's points once (with the request plan), ``write``
one 'rw' point."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from gateway.cli.common import connected, device, points
from gateway.config import LoadedConfig, load_config
from gateway.errors import ConfigError, EdgegwError
from gateway.model import Value
from gateway.profiles import Point

if TYPE_CHECKING:
    from gateway.cli.common import Subparsers, WithConfig


def add_parser(sub: Subparsers, with_config: WithConfig) -> None:
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
    rd.set_defaults(run=lambda a: asyncio.run(_read(load_config(a.config), a.device, a.point,
                                                    a.explain, a.relearn)))

    w = sub.add_parser("write", help="write one 'rw' point of a device")
    with_config(w)
    w.add_argument("device")
    w.add_argument("point")
    w.add_argument("value", help="number, true/false, or text for string points")
    w.set_defaults(run=lambda a: asyncio.run(_write(load_config(a.config), a.device, a.point,
                                                     a.value)))


def _fmt(v: Value) -> str:
    """A value as read: floats in full precision (the shortest text that reads back as
    the same float: 12345678.9, not 1.23457e+07)."""
    if isinstance(v, tuple):  # an array: as JSON ([1.5, 2.25], ["a", "b"], [true])
        import json

        return json.dumps(list(v), ensure_ascii=False)
    return repr(v) if isinstance(v, float) else str(v)



async def _read(loaded: LoadedConfig, dev_id: str, point: str | None, explain: bool = False,
                relearn: bool = False) -> int:
    """Read a device once, poll group by poll group (the requests the gateway makes),
    and print every value; with ``explain`` also the request plan."""
    from drivers.modbus.driver import ModbusDriver
    from gateway.pipeline import DevicePipeline

    dev = device(loaded, dev_id)
    chosen = points(dev, point)
    groups: dict[str, list[Point]] = {}
    for p in chosen:
        groups.setdefault(dev.profile.group_of(p), []).append(p)
    plan: list[str] = []
    async with connected(loaded, dev, relearn) as drv:
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
    units = {p.name: p.unit or "" for p in chosen}
    width = max(len(p.name) for p in chosen)
    failed = 0
    if batch is not None:
        for name in (p.name for p in chosen):
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

    dev = device(loaded, dev_id)
    (target,) = points(dev, point)
    if not loaded.config.writes.enabled:
        raise ConfigError([(str(loaded.path), "device writes are disabled; set "
                            "writes: {enabled: true} to allow writes to 'rw' points")])
    who = os.environ.get("SUDO_USER") or getpass.getuser()
    wlog = logging.getLogger("edgegw.write")
    try:
        async with connected(loaded, dev) as drv:
            await drv.write(target, _parse_value(value))
    except EdgegwError as exc:
        wlog.warning("write by %s refused: %s.%s = %s: %s", who, dev_id, point, value, exc)
        raise
    wlog.info("write by %s: %s.%s = %s", who, dev_id, point, value)
    print(f"{dev_id}.{point} <- {value}: ok")
    return 0
