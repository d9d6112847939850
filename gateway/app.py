"""The gateway runtime: devices -> pipeline -> store -> uplink, under one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from drivers.base import DriverContext
from drivers.registry import driver_for
from gateway.config import Device, LoadedConfig, check_files, load_config
from gateway.crypto.spool import SpoolCipher
from gateway.crypto.watch import CertWatch
from gateway.devices import STOP_TIMEOUT, Devices
from gateway.errors import ConfigError, EdgegwError, SpoolUnavailable
from gateway.faultlog import FaultLog
from gateway.health import HealthServer
from gateway.httpserve import Family
from gateway.identifiers.service import IdentifierService
from gateway.linkwatch import LinkWatchdog
from gateway.model import Batch
from gateway.pipeline import DevicePipeline
from gateway.production.machine import GROUP as PRODUCTION
from gateway.production.service import ProductionService
from gateway.profiles import OpcuaPoint, Point
from gateway.reload import RESTART_SECTIONS, Plan, plan
from gateway.scheduler import DeviceRunner
from gateway.sdnotify import Notifier
from gateway.services import Reporter, Service, Supervisor, Task, render_status
from gateway.stats import GatewayStats
from gateway.store import Encoder, Limits, Store, open_store
from gateway.tasks import describe_stuck, stop_tasks
from gateway.trace.service import TraceService, trace_profile
from gateway.uplink.influx import InfluxUplink
from gateway.uplink.mqtt import MqttUplink
from gateway.wire.compact import (
    Schema,
    Schemas,
    encode_record,
    pack_topic,
    schema_of,
    trace_schema_of,
)
from gateway.wire.encode import data_topic, encode_batch, production_topic

if TYPE_CHECKING:
    from drivers.modem.at import Identity

log = logging.getLogger("edgegw")

DRAIN_TIMEOUT = 5.0
#: READY=1 is sent after the first successful device cycle, or after this long when no
#: device answers (systemd would otherwise kill a gateway whose machines are all off)
READY_GRACE = 30.0
#: in the state directory: the running gateway's pid, for `edgegw reload`
PIDFILE = "edgegw.pid"
#: a service that failed this recently (s) makes the health status 'degraded'
SERVICE_FAILED_FOR = 900.0


class Gateway:
    def __init__(self, loaded: LoadedConfig) -> None:
        cfg = loaded.config
        self.loaded = loaded
        self.gateway_id = gw = cfg.gateway.id
        self.stats = GatewayStats()
        self.faults = FaultLog(log, cfg.logging.fault_summary_interval)
        sign, sign_pack = _signers(loaded)
        self.schemas = Schemas(_schemas(loaded.devices))
        self.store, spool = _open_store(loaded, _encoder(loaded, self.schemas, sign))
        self.ctx = DriverContext(gw, loaded.state_dir, loaded.path.parent)
        self.identifiers = IdentifierService(cfg.identifiers, spool or ":memory:", gw,
                                             cfg.gateway.site or "")
        self.devices = Devices(self.stats)
        # Sparkplug B has no template for the gateway's own records
        records = cfg.uplink.influx is not None or cfg.uplink.mqtt.encoding != "sparkplug"
        self.production = ProductionService(cfg.production, gw, loaded.state_dir,
                                            self.store.append, enabled=records)
        self.trace = TraceService(gw, loaded.state_dir, self.identifiers.trace_record,
                                  enabled=records)
        enabled = [d for d in loaded.devices if d.config.enabled]
        self.devices.runners = [self._runner(dev, i, len(enabled))
                                for i, dev in enumerate(enabled)]
        self._wire()
        #: the gateway's own identifier code and the module's IMEI/ICCID (status: ids)
        self.gateway_ids: dict[str, str] = (
            {"gateway": cfg.gateway.identifier} if cfg.gateway.identifier else {})
        self.uplink: MqttUplink | InfluxUplink
        if cfg.uplink.influx is not None:
            self.uplink = InfluxUplink(cfg.uplink.influx, self.store, self.stats,
                                       loaded.store_path.with_name("dead-letter.jsonl"))
        else:
            self.uplink = MqttUplink(cfg.uplink.mqtt, gw, self.store, self.stats,
                                     self._status_topic, self.schemas, self._point_types(),
                                     sign_pack)
        self._wire_radio()
        if isinstance(self.uplink, MqttUplink) and any(
                d.profile.production is not None for d in loaded.devices):
            self.uplink.mqtt.on_command = self.production.mqtt_command
        self.watchdog = LinkWatchdog(lambda: self.modem,
                                     lambda: self.stats.uplink_connected)
        self.certs = CertWatch(loaded)
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        #: names of tasks that ignored every cancellation at shutdown
        self.stuck: list[str] = []
        #: a service that failed and stopped the gateway (exit status 1)
        self.error: str | None = None
        self.supervisor = Supervisor()
        #: run isolated (gateway/services.py): a failure is contained and restarted
        self.optional: list[Service] = [
            Task("reload", self._reloader), Task("fault-summary", self._summaries),
            self.identifiers, self.certs, self.watchdog, self.production, self.trace]
        self.notifier = Notifier()
        hc = cfg.health
        self.health = HealthServer(self, hc.host, hc.port) if hc.enabled else None

    def _runner(self, dev: Device, index: int, count: int) -> DeviceRunner:
        cfg = self.loaded.config
        slots = cfg.pipeline.slots_for(count)
        pipe = DevicePipeline(self.gateway_id, dev, cfg.pipeline.heartbeat,
                              cfg.pipeline.report == "always")
        self.identifiers.device(dev.id, dev.profile_name, dev.config.identifier)
        runner = DeviceRunner(
            dev, driver_for(dev, self.ctx), pipe, self.store, self.stats.device(dev.id),
            self.faults, cfg.pipeline.reconnect, phase=(index % slots) / slots)
        runner.production = self.production.machine(dev)
        runner.trace = self.trace.tracer(dev)
        return runner

    def _wire(self) -> None:
        """Hand each code reader's context to the pipelines of the devices it serves
        (again after a reload: a restarted device has a new pipeline, which also gets
        the code last read)."""
        by_id = {r.device.id: r for r in self.devices.runners}
        for r in self.devices.runners:
            targets = [by_id[t].pipeline for t in r.device.config.context_for if t in by_id]
            r.contexts = [(p.name, p.context, targets) for p in r.device.profile.points
                          if p.context] if targets else []
            r.on_context = self.identifiers.context_changed if targets else None
            r.reshare_context()

    # -- what the gateway reports (gateway/services.py) --------------------------------
    def reporters(self) -> list[Reporter]:
        """Every part that reports, in the order of the status topic and /metrics."""
        return [self.devices, self.store.stats, self.uplink, self, self.supervisor,
                *self.optional]

    def status(self) -> dict[str, object]:
        """The gateway's own keys: its identifiers (``ids``)."""
        return {"ids": self.gateway_ids} if self.gateway_ids else {}

    def families(self) -> list[Family]:
        """/metrics: every reporter's families."""
        return [f for r in self.reporters() for f in r.metrics()]

    def metrics(self) -> list[Family]:
        """The gateway's own families: the reload counters."""
        s = self.stats
        return [Family("config_reloads_total", "counter", "config reloads applied",
                       [({}, s.reloads)]),
                Family("config_reload_errors_total", "counter", "reloads refused (invalid "
                       "config; the running one kept)", [({}, s.reload_errors)])]

    def _status_topic(self) -> dict[str, object]:
        """The retained status document's body (gateway/uplink/mqtt.py)."""
        doc = render_status(self.reporters())
        self.uplink.take_rtt_max()
        return doc

    def summary(self) -> dict[str, object]:
        """/healthz: degraded while the store cannot write, a device is not polled or
        an optional service failed in the last SERVICE_FAILED_FOR seconds."""
        st = self.store.stats
        stalled = [] if self._stop.is_set() else self.devices.stalled()
        now = asyncio.get_running_loop().time()
        recent = self.supervisor.failed_within(now, SERVICE_FAILED_FOR)
        return {
            "status": "degraded" if st.degraded or stalled or recent else "ok",
            "gateway": self.gateway_id,
            "devices": len(self.devices),
            "devices_online": self.devices.online(),
            "uplink_connected": self.stats.uplink_connected,
            "queued_batches": st.entries,
            "store_degraded": st.degraded,
            "devices_stalled": stalled,
            "services_failed": self.supervisor.failed(now),
            "cert_warnings": self.certs.warnings,
        }

    def device_state(self) -> dict[str, dict[str, object]]:
        out = self.devices.state()
        for dev, d in out.items():
            prod = self.production.device(dev)
            if prod is not None:
                d["production"] = prod
        return out

    def _wire_radio(self) -> None:
        """Give the uplink the modem's latest link sample, and the gateway the module's
        identity (the first modem device). Without a modem, a configured
        ``gateway.identifier`` is registered at once."""
        from drivers.modem.driver import ModemDriver

        modems = [r.driver for r in self.devices.runners
                  if isinstance(r.driver, ModemDriver)]
        self.modem = modems[0] if modems else None
        self.uplink.radio_sample = (lambda m=modems[0]: m.latest) if modems else None
        if modems:
            modems[0].on_identity = self._modem_identity
            if modems[0].identity is not None:  # a reload kept the connected modem
                self._modem_identity(modems[0].identity)
        elif self.gateway_ids.get("gateway"):
            self.identifiers.gateway(self.gateway_ids["gateway"])

    def _modem_identity(self, ident: Identity) -> None:
        """The module's identity was read (at each connect): the gateway's code (from
        the SIM's identifier carrier, else ``gateway.identifier``) is registered with
        IMEI and ICCID, and the status topic shows them under ``ids``."""
        configured = self.loaded.config.gateway.identifier
        code = ident.identifier or configured
        if ident.identifier and configured and ident.identifier != configured:
            log.warning("the SIM's identifier carrier holds %s, gateway.identifier says "
                        "%s: the carrier's code is used", ident.identifier, configured)
        ids = {k: v for k, v in {"gateway": code, "imei": ident.imei,
                                 "iccid": ident.iccid}.items() if v}
        if ids != self.gateway_ids:
            self.gateway_ids = ids
            if isinstance(self.uplink, MqttUplink):
                self.uplink.refresh_status()
        if code:
            self.identifiers.gateway(code, imei=ident.imei, iccid=ident.iccid)

    def _point_types(self) -> dict[str, list[tuple[str | None, bool]]]:
        """Profile tag -> (type, scaled) of each point, for Sparkplug datatypes: an
        array's type is ``<type>[]``, an enumeration's ``string``."""
        return {d.profile_tag: [(_sparkplug_type(p), p.scaled)
                                for p in d.profile.expanded_points()]
                for d in self.loaded.devices}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT when installed by the CLI)."""
        up = self.loaded.config.uplink
        route = (f"InfluxDB {up.influx.url}" if up.influx is not None
                 else "broker " + ", ".join(f"{h}:{p}" for h, p in up.mqtt.endpoints()))
        log.info("edgegw %s starting: %d device(s), %s", self.gateway_id, len(self.devices),
                 route)
        await self._start_health()
        # Devices and services run as plain tasks (each supervises itself and never
        # raises), not under a TaskGroup: a task that ignores its cancellation (see
        # gateway/tasks.py) must never hold the gateway's stop.
        tasks = {s.name: asyncio.create_task(self.supervisor.isolated(s), name=s.name)
                 for s in self.optional}
        tasks["systemd"] = asyncio.create_task(self._systemd(), name="systemd")
        uplink = asyncio.create_task(self.uplink.run(), name=self.uplink.name)
        try:
            self.devices.start_new()
            await self._until_stopped([*tasks.values(), uplink])
            log.info("stopping: devices first, then draining %d batch(es) to the broker",
                     self.store.stats.entries)
            self.notifier.stopping()
            stuck = await self.devices.stop_all()
            stuck += await stop_tasks(tasks.values(), STOP_TIMEOUT)
            stuck += await self._drain(uplink)
            if stuck:
                self.stuck = [t.get_name() for t in stuck]
                log.error("stopping: %d task(s) did not stop within %.0f s and are left "
                          "behind: %s", len(stuck), STOP_TIMEOUT, describe_stuck(stuck))
        finally:
            await self.devices.close()
            self.stuck += self.devices.stuck
            self.ctx.close()
            if self.health is not None:
                await self.health.close()
            self.identifiers.close()
            await self.store.close()
            log.info("edgegw %s stopped", self.gateway_id)

    async def _start_health(self) -> None:
        if self.health is None:
            return
        try:
            await self.health.start()
        except OSError as exc:  # the port is taken: run without it, say so
            log.warning("health endpoint %s:%d not started: %s", self.health.host,
                        self.health.port, exc)
            self.health = None

    async def _drain(self, uplink: asyncio.Task[None]) -> list[asyncio.Task[object]]:
        """Let the uplink deliver what is queued, for DRAIN_TIMEOUT at most."""
        self.uplink.stop()
        done, _ = await asyncio.wait([uplink], timeout=DRAIN_TIMEOUT)
        if done:
            return []
        left = self.store.stats.entries
        fate = ("they stay in the spool and are sent after the restart"
                if self.store.stats.durable else "memory store: they are lost")
        log.warning("stopping: %d batch(es) not delivered within %.0f s (%s)",
                    left, DRAIN_TIMEOUT, fate)
        return await stop_tasks([uplink], STOP_TIMEOUT)

    async def _until_stopped(self, services: list[asyncio.Task[None]]) -> None:
        """Until :meth:`stop`, or until a service fails (logged; the gateway stops with
        exit status 1, and systemd restarts it). A service that returns is done."""
        stopped = asyncio.ensure_future(self._stop.wait())
        running = set(services)
        try:
            while not stopped.done():
                done, running = await asyncio.wait(  # type: ignore[assignment]
                    {stopped, *running}, return_when=asyncio.FIRST_COMPLETED)
                running.discard(stopped)
                for t in done:
                    if t is stopped or t.cancelled() or t.exception() is None:
                        continue
                    self.error = f"{t.get_name()}: {t.exception()!r}"
                    log.error("%s failed; stopping the gateway", t.get_name(),
                              exc_info=t.exception())
                    self.stop()
        finally:
            stopped.cancel()

    def request_reload(self) -> None:
        """SIGHUP: re-read the config file (in the event loop, one reload at a time)."""
        self._reload.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            self.notifier.reloading()
            try:
                await self.reload()
            finally:
                self.notifier.ready(self._status_line())

    async def reload(self) -> Plan | None:
        """Apply the config file as it is now: devices added, removed or changed;
        every other device keeps running. An invalid file changes nothing."""
        old = self.loaded
        try:
            new = load_config(old.path)
            check_files(new)
        except ConfigError as exc:
            self.stats.reload_errors += 1
            log.error("reload: %s is invalid; still running the previous config:\n  %s",
                      old.path, "\n  ".join(exc.lines()))
            return None
        p = plan(old, new)
        if p.restart_needed:
            log.warning("reload: changes to %s take effect at the next restart; "
                        "running with the previous values", ", ".join(p.restart_needed))
        kept = {s: getattr(old.config, s) for s in RESTART_SECTIONS}
        self.loaded = LoadedConfig(old.path, new.config.model_copy(update=kept), new.devices)
        by_id = {r.device.id: r for r in self.devices.runners}
        for dev_id in [*p.removed, *(d.id for d in p.changed)]:
            await self.devices.halt(by_id.pop(dev_id))
        for dev_id in p.removed:
            self.stats.devices.pop(dev_id, None)
            self.production.machines.pop(dev_id, None)
            self.trace.tracers.pop(dev_id, None)
            self.faults.clear((dev_id, "unreachable"), f"device {dev_id}: removed")
        fresh = {d.id: d for d in [*p.added, *p.changed]}
        for d in fresh.values():
            for sc in _schemas([d]):
                self.schemas.add(sc)
        if isinstance(self.uplink, MqttUplink) and self.uplink.spb is not None:
            self.uplink.spb.point_types.update(self._point_types())
        runners = []
        for i, dev_id in enumerate(p.order):
            r = by_id.get(dev_id)
            if r is None:
                r = self._runner(fresh[dev_id], i, len(p.order))
                if dev_id in self.stats.devices:
                    self.stats.devices[dev_id].state = "starting"
            runners.append(r)
        self.devices.runners = runners
        self._wire()
        self._wire_radio()
        self.devices.start_new()
        level = new.config.logging.level
        if level != logging.getLevelName(logging.getLogger().level):
            logging.getLogger().setLevel(level)
        self.stats.reloads += 1
        log.info("reload: %s", p.summary())
        return p

    def _status_line(self) -> str:
        return (f"{self.devices.online()}/{len(self.devices)} devices online, "
                f"{self.store.stats.entries} batch(es) queued, {self.stats.published} published")

    async def _systemd(self) -> None:
        """READY=1 after the first successful device cycle (or READY_GRACE), STATUS
        every 10 s, and WATCHDOG=1 from this event loop: if the loop is stuck the pings
        stop and systemd restarts the gateway (WatchdogSec= in the unit)."""
        n = self.notifier
        if not n.enabled:
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        ready = False
        interval = n.watchdog_interval
        step = min(0.1, interval) if interval else 0.1
        last_ping = last_status = -1e9
        while True:
            now = loop.time()
            if not ready and (self.devices.polled() or not self.devices
                              or now - start >= READY_GRACE):
                ready = n.ready(self._status_line())
                last_status = now
            if interval and now - last_ping >= interval:
                n.watchdog()
                last_ping = now
            if ready and now - last_status >= 10.0:
                n.status(self._status_line())
                last_status = now
            await asyncio.sleep(step if not ready else min(interval or 1.0, 1.0))

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(self.faults.interval)
            self.faults.summary()


class GatewayFailed(EdgegwError):
    """A service of the gateway failed (logged with its traceback): exit status 1."""


def _exit_now(gw: Gateway, sig: int) -> None:
    """A second SIGTERM/SIGINT: stop at once. Every batch in the durable spool is
    committed (it stays there for the next start); nothing else is waited for."""
    where = ("stay in the spool" if gw.store.stats.durable
             else "are lost (memory store)")
    log.warning("second %s: stopping at once; %d queued batch(es) %s",
                signal.Signals(sig).name, gw.store.stats.entries, where)
    logging.shutdown()
    os._exit(128 + sig)


async def run_until_signal(loaded: LoadedConfig) -> None:
    gw = Gateway(loaded)
    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def on_signal(sig: int) -> None:
        if signalled:
            _exit_now(gw, sig)
        signalled.append(sig)
        gw.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, gw.request_reload)
    pidfile = loaded.state_dir / PIDFILE
    try:
        pidfile.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("cannot write %s (edgegw reload will not find this process): %s",
                    pidfile, exc.strerror)
    try:
        await gw.run()
    finally:
        with contextlib.suppress(OSError):
            if pidfile.read_text().strip() == str(os.getpid()):
                pidfile.unlink()
    if gw.stuck:  # asyncio.run would wait for them forever: everything else is closed
        logging.shutdown()
        os._exit(1)
    if gw.error is not None:
        raise GatewayFailed(gw.error)


#: signs a payload (gateway.crypto.signing)
Sign = Callable[[bytes], bytes]


def _signers(loaded: LoadedConfig) -> tuple[Sign | None, Sign | None]:
    """(sign each batch when it is stored, sign each pack when it is published): one of
    them, by the encoding, when ``signing`` is configured."""
    s = loaded.config.signing
    if s is None:
        return None, None
    from gateway.crypto.signing import load_signer  # cryptography: only when used

    signer = load_signer(loaded.resolve(s.key_file), s.key_id, s.algorithm)
    packs = loaded.config.uplink.mqtt.encoding == "compact"
    log.info("signing %s with %s key %s", "packs" if packs else "batches",
             s.algorithm, s.key_id)
    return (None, signer.sign_pack) if packs else (signer.sign, None)


def _schemas(devices: Iterable[Device]) -> list[Schema]:
    """The compact schemas of the devices' profiles (and of their product records)."""
    out = []
    for d in devices:
        out.append(schema_of(d.profile_tag, d.profile))
        if d.profile.trace is not None:
            out.append(trace_schema_of(trace_profile(d.profile_name, d.profile.version),
                                       d.profile))
    return out


def _encoder(loaded: LoadedConfig, schemas: Schemas, sign: Sign | None) -> Encoder:
    """Batch -> (topic, payload) as the store keeps it: JSON v1 (signed when
    configured) or a compact record (signed per pack, by the uplink)."""
    mc = loaded.config.uplink.mqtt
    prefix, gw = mc.topic_prefix, loaded.config.gateway.id
    if mc.encoding != "json":
        packed, schema = pack_topic(prefix, gw), schemas.get
        return lambda b: (packed, encode_record(b, schema(b.profile)))
    topics: dict[str, str] = {}

    def encode(b: Batch) -> tuple[str, bytes]:
        topic = topics.get(b.device)
        if b.group == PRODUCTION:
            topic = production_topic(prefix, gw, b.device)
        elif topic is None:
            topic = topics[b.device] = data_topic(prefix, gw, b.device)
        payload = encode_batch(b)
        return topic, payload if sign is None else sign(payload)

    return encode


def _open_store(loaded: LoadedConfig, encoder: Encoder) -> tuple[Store, str | None]:
    """The configured store and the spool's path (None: no durable spool). A full or
    read-only disk does not stop the gateway: it polls and publishes live data on a
    memory store all the same, and says so (/healthz degraded, the status topic)."""
    sc = loaded.config.store
    cipher = (SpoolCipher.from_file(loaded.resolve(sc.encryption_key_file))
              if sc.encryption_key_file is not None else None)
    limits = Limits(sc.max_batches, sc.max_bytes, sc.max_age, sc.policy)
    path = str(loaded.store_path)
    try:
        store = open_store(sc.kind, encoder, limits, path, sc.sync_interval, cipher)
    except SpoolUnavailable as exc:
        store = open_store("memory", encoder, limits)
        store.fallback = store.stats.degraded = (
            f"{exc}: running on a memory store (batches are lost on restart); free "
            "space and restart the gateway")
        log.error("store: %s", store.fallback)
        return store, None
    return store, path if sc.kind == "sqlite" else None


def _sparkplug_type(p: Point) -> str | None:
    if isinstance(p, OpcuaPoint):
        if p.enumerated:
            return "string"
        if p.array:
            return f"{p.type or ''}[]"
    return p.type
