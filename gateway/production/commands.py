"""``edgegw order``: start or stop an order on a machine, list what the machines do.

The command goes through the gateway's order inbox in its state directory
(:mod:`gateway.production.orders`): applied within a second by the running gateway, or
at its next start."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime

from gateway.config import LoadedConfig, load_config
from gateway.production.orders import Command, inbox, put_command
from gateway.production.service import STATE_FILE


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               with_config: Callable[[argparse.ArgumentParser], None]) -> None:
    op = sub.add_parser("order", help="orders on machines: start, stop, list")
    osub = op.add_subparsers(dest="ordercmd", required=True)
    st = osub.add_parser("start", help="start an order on a machine (the one running there "
                         "is closed)")
    with_config(st)
    st.add_argument("device", help="the machine's device id")
    st.add_argument("order", help="the order code")
    st.add_argument("--quantity", type=int, help="planned quantity (good parts)")
    st.add_argument("--product", help="the product code")
    sp = osub.add_parser("stop", help="close the order running on a machine")
    with_config(sp)
    sp.add_argument("device")
    ls = osub.add_parser("list", help="each machine's state, shift count and order, as the "
                         "gateway last saved them; commands not yet applied")
    with_config(ls)
    op.set_defaults(run=run)


def _machines(loaded: LoadedConfig) -> set[str]:
    return {d.id for d in loaded.devices if d.profile.production is not None}


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if args.ordercmd == "list":
        return _list(loaded)
    machines = _machines(loaded)
    if args.device not in machines:
        print(f"edgegw order: {args.device!r} is not a machine with a production section "
              f"in {loaded.path} (machines: {', '.join(sorted(machines)) or 'none'})",
              file=sys.stderr)
        return 1
    if args.ordercmd == "start":
        if args.quantity is not None and args.quantity < 1:
            print("edgegw order: --quantity must be at least 1", file=sys.stderr)
            return 1
        cmd = Command("start", args.device, args.order.strip(), args.quantity, args.product)
    else:
        cmd = Command("stop", args.device)
    path = put_command(loaded.state_dir, cmd)
    print(f"order {cmd.action} for {cmd.device} queued ({path}); the gateway applies it "
          "within a second, or at its next start")
    return 0


def _list(loaded: LoadedConfig) -> int:
    path = loaded.state_dir / STATE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        doc = {}
    machines = doc.get("machines", {}) if isinstance(doc, dict) else {}
    if isinstance(doc, dict) and "saved" in doc:
        print(f"saved {datetime.fromtimestamp(doc['saved']).isoformat(timespec='seconds')}")
    print(f"{'machine':<16} {'state':<12} {'since':<20} {'shift parts':>11}  order")
    for dev in sorted(_machines(loaded)):
        m = machines.get(dev) or {}
        since = datetime.fromtimestamp(m["since"]).isoformat(timespec="seconds") \
            if "since" in m else "-"
        shift = m.get("shift") or {}
        order = m.get("order")
        o = "-"
        if order:
            t = order.get("tally", {})
            o = f"{order['code']} {order.get('status')} {t.get('good', 0)}/" \
                f"{order.get('planned') or '?'}"
        print(f"{dev:<16} {m.get('state', '-'):<12} {since:<20} "
              f"{shift.get('parts', '-'):>11}  {o}")
    waiting = sorted(inbox(loaded.state_dir).glob("*.json")) \
        if inbox(loaded.state_dir).exists() else []
    for p in waiting:
        print(f"waiting: {p.read_text(encoding='utf-8')}")
    return 0
