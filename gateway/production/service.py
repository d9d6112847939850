"""The production service: one :class:`~gateway.production.machine.Machine` per device
whose profile has a ``production:`` section, the once-a-second tick, order commands, and
the state file that carries everything over a restart.

Order commands come from ``edgegw order`` (:mod:`gateway.production.orders`), which
drops a small JSON file into ``<state dir>/orders/``: the running gateway applies it
within a second, a stopped one at its next start, so a command is never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.config import Device
from gateway.httpserve import Family
from gateway.model import Batch
from gateway.production.machine import Machine
from gateway.production.orders import Command, inbox, take_commands
from gateway.production.shifts import Calendar
from gateway.production.spec import ProductionConfig
from gateway.statefile import StateFile

log = logging.getLogger("edgegw.production")

STATE_FILE = "production.json"
_MODULI = {"uint16": 1 << 16, "uint32": 1 << 32, "uint64": 1 << 64, "int16": 1 << 15,
           "int32": 1 << 31, "int64": 1 << 63}


def moduli(device: Device) -> dict[str, int | None]:
    """Where each counter point wraps (from its data type; None: unknown)."""
    out: dict[str, int | None] = {}
    for p in device.profile.expanded_points():
        t = getattr(p, "type", None)
        out[p.name] = _MODULI.get(t) if isinstance(t, str) else None
    return out


class ProductionService:
    name = "production"

    def __init__(self, cfg: ProductionConfig, gateway: str, state_dir: Path,
                 append: Callable[[Batch], Awaitable[object]], enabled: bool = True) -> None:
        self.cfg = cfg
        #: False with the Sparkplug B encoding (no template for the records): said once
        self.enabled = enabled
        self._said = False
        self.gateway = gateway
        self.path = state_dir / STATE_FILE
        self.file = StateFile(self.path, "production state")
        self.inbox = inbox(state_dir)
        self.calendar = Calendar(cfg)
        self.append = append
        self.machines: dict[str, Machine] = {}
        self._saved: dict[str, Any] = self.file.machines()
        self._pending: list[Batch] = []  # events made outside the loop's append
        self.events = 0
        self.commands = 0
        self.command_errors = 0
        #: commands that came over MQTT, applied at the next tick
        self._mqtt: list[Command] = []

    def machine(self, device: Device) -> Machine | None:
        """The device's machine (the same one after a reload), or None: no production."""
        spec = device.profile.production
        if spec is not None and not self.enabled:
            if not self._said:
                self._said = True
                log.warning("production records are not sent with uplink.mqtt.encoding "
                            "sparkplug (Sparkplug B has no template for them): use json or "
                            "compact for state intervals, KPIs and orders")
            spec = None
        if spec is None:
            self.machines.pop(device.id, None)
            return None
        m = self.machines.get(device.id)
        if m is not None and m.spec == spec:
            return m
        now = time.time()
        m = Machine(self.gateway, device.id, spec, self.calendar, self.cfg.kpi_interval,
                    moduli(device))
        saved = self._saved.pop(device.id, None)
        if isinstance(saved, dict):
            try:
                self._pending += m.restore(saved, now)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("device %s: saved production state unusable (%s); starting "
                          "afresh", device.id, exc)
                m = Machine(self.gateway, device.id, spec, self.calendar,
                            self.cfg.kpi_interval, moduli(device))
                m.start(now)
        else:
            m.start(now)
        self.machines[device.id] = m
        return m

    async def emit(self, batches: list[Batch]) -> None:
        for b in batches:
            self.events += 1
            await self.append(b)

    async def run(self) -> None:
        last_save = time.monotonic()
        try:
            while True:
                if self._pending:
                    pending, self._pending = self._pending, []
                    await self.emit(pending)
                now = time.time()
                for m in list(self.machines.values()):
                    await self.emit(m.tick(now))
                await self._commands(now)
                if time.monotonic() - last_save >= self.cfg.save_interval:
                    await self.save_async()
                    last_save = time.monotonic()
                await asyncio.sleep(1.0 - time.time() % 1.0)
        finally:
            self.save()

    def mqtt_command(self, payload: bytes) -> None:
        """An order command from ``<prefix>/<gateway>/cmd/order`` (JSON, the same fields
        as the inbox's files); a bad one is counted and logged."""
        try:
            doc = json.loads(payload)
            if isinstance(doc, dict):
                doc["source"] = "mqtt"
            self._mqtt.append(Command.parse(doc))
        except ValueError as exc:
            self.commands += 1
            self.command_errors += 1
            log.error("order command over MQTT refused: %s: %.200r", exc, payload)

    async def _commands(self, now: float) -> None:
        mqtt, self._mqtt = self._mqtt, []
        for cmd in [*take_commands(self.inbox), *mqtt]:
            self.commands += 1
            m = self.machines.get(cmd.device)
            if m is None:
                self.command_errors += 1
                log.error("order command for %r refused: no device with a production "
                          "section has that id", cmd.device)
                continue
            await self.emit(self.apply(m, cmd, now))

    @staticmethod
    def apply(m: Machine, cmd: Command, now: float) -> list[Batch]:
        if cmd.action == "start":
            assert cmd.order is not None
            if m.order is not None and m.order.code == cmd.order and m.order.status != "closed":
                log.info("device %s: order %s runs already (%s): nothing to do", m.device,
                         cmd.order, cmd.source)  # a command sent twice (or retained)
                return []
            log.info("device %s: order %s started (%s)", m.device, cmd.order, cmd.source)
            return m.start_order(now, cmd.order, cmd.quantity, cmd.product, cmd.source)
        log.info("device %s: order stopped (%s)", m.device, cmd.source)
        return m.stop_order(now)

    def _document(self) -> str | None:
        """Every machine's state as JSON text (made on the event loop: the machines
        change there)."""
        return self.file.text(self._saved, {k: m.to_json() for k, m in self.machines.items()})

    def _write(self, text: str) -> None:
        self.file.write(text)

    def save(self) -> None:
        text = self._document()
        if text is not None:
            self._write(text)

    async def save_async(self) -> None:
        """The same, with the disk write in a worker thread."""
        text = self._document()
        if text is not None:
            await asyncio.to_thread(self._write, text)

    # -- reporting ------------------------------------------------------------------------
    def stop(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {}

    def device(self, device_id: str) -> dict[str, Any] | None:
        m = self.machines.get(device_id)
        return m.summary() if m is not None else None

    def metrics(self) -> list[Family]:
        return [Family("production_events_total", "counter", "production events (state "
                       "intervals, KPI and order records) appended to the spool",
                       [({}, self.events)]),
                Family("order_commands_total", "counter", "order commands applied or refused",
                       [({}, self.commands)]),
                Family("order_command_errors_total", "counter", "order commands refused",
                       [({}, self.command_errors)])]
