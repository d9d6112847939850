"""Product records at the edge: one :class:`Tracer` per device whose profile has a
``trace:`` section, fed by the device's poll cycles (gateway/scheduler.py), and the
service that keeps their open records in ``trace.json`` over a restart.

A closed record becomes a batch (profile ``<vendor/model>/trace@<version>``, fields
:func:`~gateway.trace.spec.record_fields`, time stamp = the product's start) through
the durable spool on ``<prefix>/<gw>/<device>/production``, and the code's data at the
identifier node (registered, or updated when it is registered already: a resumed record
is sent again, complete).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol

from gateway.config import Device
from gateway.httpserve import Family
from gateway.identifiers.client import Value
from gateway.model import PROCESS, Batch
from gateway.production.machine import GROUP
from gateway.state import OFFLINE
from gateway.statefile import StateFile
from gateway.trace.builder import TraceBuilder, TraceRecord
from gateway.trace.node import node_values
from gateway.trace.spec import TraceSpec
from gateway.wire.compact import TRACE_SUFFIX

log = logging.getLogger("edgegw.trace")

STATE_FILE = "trace.json"
SAVE_INTERVAL = 10.0
#: (kind, code, device id, profile name, the record as the code's values): to the
#: identifier node (IdentifierService.trace_record)
OnRecord = Callable[[str, str, str, str, tuple[Value, ...]], None]


class PipelineView(Protocol):
    """What a tracer reads of the device's pipeline after each cycle."""

    state: str | None
    current: dict[str, Any]
    ids: dict[str, str]
    inputs: dict[str, str]

    def state_known(self) -> bool: ...


def trace_profile(profile_name: str, version: str) -> str:
    """The profile id of a machine type's product records (its own compact schema and
    InfluxDB measurement ``<vendor/model>/trace``)."""
    return f"{profile_name}{TRACE_SUFFIX}@{version}"


class Tracer:
    """One machine's product records."""

    def __init__(self, gateway: str, device: Device, spec: TraceSpec,
                 on_record: OnRecord | None = None) -> None:
        self.gateway = gateway
        self.device = device
        self.spec = spec
        self.builder = TraceBuilder(spec)
        self.machine = device.config.identifier
        self.profile = trace_profile(device.profile_name, device.profile.version)
        self.on_record = on_record
        self.records = 0

    def active(self, pipe: PipelineView) -> bool | None:
        """Whether a product is in process now; None when nobody knows."""
        if pipe.state == OFFLINE:
            return None
        if self.spec.active_point is not None:
            v = pipe.current.get(self.spec.active_point)
            return None if v is None else bool(v)
        if pipe.state is None or not pipe.state_known():
            return None
        return pipe.state in self.spec.states

    def observe(self, ts: float, pipe: PipelineView, read: Collection[str]) -> list[Batch]:
        b = self.builder
        recs = b.observe(ts, self.active(pipe), b.code_of(pipe.current, pipe.ids),
                         pipe.current, read, pipe.inputs)
        return [self._sent(r, pipe.ids) for r in recs]

    def _sent(self, rec: TraceRecord, ids: dict[str, str]) -> Batch:
        fields = rec.fields(self.spec, self.machine)
        start_ms = int(rec.start * 1000)
        self.records += 1
        log.info("device %s: %s %s %s (%s%s)", self.device.id, rec.kind, rec.code,
                 fields["verdict"], fields.get("why") or "within limits",
                 ", interrupted" if rec.interrupted else "")
        if self.on_record is not None:
            self.on_record(rec.kind, rec.code, self.device.id, self.device.profile_name,
                           node_values(self.spec, fields, start_ms, self.device.id,
                                       self.gateway))
        ids = {k: v for k, v in ids.items() if k == "device"}
        return Batch(self.gateway, self.device.id, self.profile, start_ms, fields, ids=ids,
                     group=GROUP, priority=PROCESS)


class TraceService:
    name = "trace"

    def __init__(self, gateway: str, state_dir: Path, on_record: OnRecord | None = None,
                 enabled: bool = True) -> None:
        self.gateway = gateway
        self.enabled = enabled  # False with Sparkplug B (no template for the records)
        self._said = False
        self.file = StateFile(state_dir / STATE_FILE, "trace state")
        self._saved: dict[str, Any] = self.file.machines()
        self.on_record = on_record
        self.tracers: dict[str, Tracer] = {}

    def tracer(self, device: Device) -> Tracer | None:
        """The device's tracer (the same one after a reload), or None."""
        spec = device.profile.trace
        if spec is not None and not self.enabled:
            if not self._said:
                self._said = True
                log.warning("product records are not sent with uplink.mqtt.encoding "
                            "sparkplug (Sparkplug B has no template for them): use json or "
                            "compact for the records of trace: sections")
            spec = None
        if spec is None:
            self.tracers.pop(device.id, None)
            return None
        t = self.tracers.get(device.id)
        if t is not None and t.spec == spec:
            return t
        t = Tracer(self.gateway, device, spec, self.on_record)
        saved = self._saved.pop(device.id, None)
        if isinstance(saved, dict):
            try:
                t.builder.restore(saved)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("device %s: saved trace state unusable (%s): its open product "
                          "record is lost", device.id, exc)
                t = Tracer(self.gateway, device, spec, self.on_record)
        self.tracers[device.id] = t
        return t

    def _document(self) -> str | None:
        now = time.time()
        return self.file.text(self._saved,
                              {k: t.builder.to_json(now) for k, t in self.tracers.items()})

    def save(self) -> None:
        text = self._document()
        if text is not None:
            self.file.write(text)

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(SAVE_INTERVAL)
                text = self._document()
                if text is not None:
                    await asyncio.to_thread(self.file.write, text)
        finally:
            self.save()

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {}

    def metrics(self) -> list[Family]:
        return [Family("trace_records_total", "counter", "product/batch records sent "
                       "(a resumed record counts each time it is sent)",
                       [({"device": d}, float(t.records)) for d, t in self.tracers.items()]
                       or [({}, 0.0)])]
