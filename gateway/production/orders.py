"""Order commands: ``edgegw order start|stop|list`` and the inbox they go through.

A command is one JSON file in ``<state dir>/orders/``, written under a temporary name
and renamed (so the gateway never reads half a file), named by the time it was made (so
commands are applied in order). The gateway takes them once a second; a file it cannot
read is renamed ``*.bad`` and logged, never silently dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("edgegw.production")

INBOX = "orders"


@dataclass(frozen=True, slots=True)
class Command:
    action: Literal["start", "stop"]
    device: str
    order: str | None = None
    quantity: int | None = None
    product: str | None = None
    source: str = "cli"

    @classmethod
    def parse(cls, doc: object) -> Command:
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        action = doc.get("action")
        device = doc.get("device")
        if action not in ("start", "stop") or not isinstance(device, str) or not device:
            raise ValueError("needs action 'start' or 'stop' and a device id")
        order = doc.get("order")
        if action == "start" and (not isinstance(order, str) or not order.strip()):
            raise ValueError("'start' needs an order code")
        qty = doc.get("quantity")
        if qty is not None and (isinstance(qty, bool) or not isinstance(qty, int) or qty < 1):
            raise ValueError("quantity must be a whole number of at least 1")
        product = doc.get("product")
        if product is not None and not isinstance(product, str):
            raise ValueError("product must be text")
        return cls(action, device, order.strip() if isinstance(order, str) else None, qty,
                   product, str(doc.get("source", "cli")))


def inbox(state_dir: Path) -> Path:
    return state_dir / INBOX


def put_command(state_dir: Path, cmd: Command) -> Path:
    """Drop a command for the gateway; returns the file."""
    box = inbox(state_dir)
    box.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}.json"
    tmp = box / f".{name}.tmp"
    tmp.write_text(json.dumps(asdict(cmd)), encoding="utf-8")
    final = box / name
    os.replace(tmp, final)
    return final


def take_commands(box: Path) -> list[Command]:
    """The commands waiting, oldest first; their files are removed (bad ones renamed)."""
    try:
        names = sorted(p for p in box.iterdir() if p.suffix == ".json"
                       and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    out: list[Command] = []
    for p in names:
        try:
            out.append(Command.parse(json.loads(p.read_text(encoding="utf-8"))))
            p.unlink()
        except (OSError, ValueError) as exc:
            log.error("order command %s refused: %s (kept as %s.bad)", p, exc, p.name)
            with contextlib.suppress(OSError):
                os.replace(p, p.with_suffix(".bad"))
    return out
