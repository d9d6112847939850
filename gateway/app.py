"""The gateway runtime: devices -> pipeline -> store -> uplink, under one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from drivers.base import DriverContext, driver_for
from gateway.config import LoadedConfig
from gateway.crypto.certs import CertWatch
from gateway.crypto.signing import load_signer
from gateway.crypto.spool import SpoolCipher
from gateway.encode import data_topic, encode_batch
from gateway.faultlog import FaultLog
from gateway.health import HealthServer
from gateway.identifiers.service import IdentifierService
from gateway.model import Batch
from gateway.pipeline import DevicePipeline
from gateway.scheduler import DeviceRunner
from gateway.sdnotify import Notifier
from gateway.stats import GatewayStats
from gateway.store import Limits, Store, open_store
from gateway.uplink.influx import InfluxUplink
from gateway.uplink.mqtt import MqttUplink

log = logging.getLogger("edgegw")

DRAIN_TIMEOUT = 5.0
#: READY=1 is sent after the first successful device cycle, or after this long when no
#: device answers (systemd would otherwise kill a gateway whose machines are all off)
READY_GRACE = 30.0


class Gateway:
    def __init__(self, loaded: LoadedConfig) -> None:
        cfg = loaded.config
        self.loaded = loaded
        self.gateway_id = cfg.gateway.id
        self.stats = GatewayStats()
        self.faults = FaultLog(log, cfg.logging.fault_summary_interval)
        prefix = cfg.uplink.mqtt.topic_prefix
        gw = cfg.gateway.id
        topics: dict[str, str] = {}

        sign = None
        if cfg.signing is not None:
            s = cfg.signing
            sign = load_signer(loaded.resolve(s.key_file), s.key_id, s.algorithm).sign
            log.info("signing batches with %s key %s", s.algorithm, s.key_id)

        def encode(b: Batch) -> tuple[str, bytes]:
            topic = topics.get(b.device)
            if topic is None:
                topic = topics[b.device] = data_topic(prefix, gw, b.device)
            payload = encode_batch(b)
            return topic, payload if sign is None else sign(payload)

        sc = cfg.store
        cipher = (SpoolCipher.from_file(loaded.resolve(sc.encryption_key_file))
                  if sc.encryption_key_file is not None else None)
        self.store: Store = open_store(
            sc.kind, encode, Limits(sc.max_batches, sc.max_bytes, sc.max_age, sc.policy),
            str(loaded.store_path), sc.sync_interval, cipher)
        self.ctx = DriverContext(cfg.gateway.id, loaded.state_dir, loaded.path.parent)
        self.runners: list[DeviceRunner] = []
        enabled = [d for d in loaded.devices if d.config.enabled]
        slots = cfg.pipeline.poll_slots
        for i, dev in enumerate(enabled):
            pipe = DevicePipeline(gw, dev, cfg.pipeline.heartbeat, cfg.pipeline.report == "always")
            self.runners.append(DeviceRunner(
                dev, driver_for(dev, self.ctx), pipe, self.store, self.stats.device(dev.id),
                self.faults, cfg.uplink.mqtt.reconnect,
                phase=(i % slots) / slots,
            ))
        ids = cfg.identifiers
        self.identifiers = IdentifierService(
            ids, str(loaded.store_path) if sc.kind == "sqlite" else ":memory:", gw,
            cfg.gateway.site or "")
        by_id = {r.device.id: r for r in self.runners}
        for r in self.runners:
            self.identifiers.device(r.device.id, r.device.profile_name,
                                    r.device.config.identifier)
            targets = [by_id[t].pipeline for t in r.device.config.context_for if t in by_id]
            if targets:
                r.contexts = [(p.name, p.context, targets) for p in r.device.profile.points
                              if p.context]
                r.on_context = self.identifiers.context_changed
        self.uplink: MqttUplink | InfluxUplink
        if cfg.uplink.influx is not None:
            self.uplink = InfluxUplink(cfg.uplink.influx, self.store, self.stats,
                                       loaded.store_path.with_name("dead-letter.jsonl"),
                                       cfg.uplink.mqtt.reconnect)
        else:
            self.uplink = MqttUplink(cfg.uplink.mqtt, gw, self.store, self.stats, self._status)
        self.certs = CertWatch(loaded)
        self._stop = asyncio.Event()
        self.notifier = Notifier()
        hc = cfg.health
        self.health = HealthServer(self, hc.host, hc.port) if hc.enabled else None

    def _status(self) -> dict[str, object]:
        return {
            "devices": {k: {"state": v.state, "missed_ticks": v.missed_ticks,
                            "read_errors": v.read_errors, "reconnects": v.reconnects}
                        for k, v in self.stats.devices.items()},
            "store": self.store.stats.as_status(),
            "published": self.stats.published,
            **({"certs": self.certs.warnings} if self.certs.warnings else {}),
        }

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT when installed by the CLI)."""
        up = self.loaded.config.uplink
        route = (f"InfluxDB {up.influx.url}" if up.influx is not None
                 else f"broker {up.mqtt.host}:{up.mqtt.port}")
        log.info("edgegw %s starting: %d device(s), %s", self.gateway_id, len(self.runners),
                 route)
        if self.health is not None:
            try:
                await self.health.start()
            except OSError as exc:  # the port is taken: run without it, say so
                log.warning("health endpoint %s:%d not started: %s", self.health.host,
                            self.health.port, exc)
                self.health = None
        try:
            async with asyncio.TaskGroup() as tg:
                uplink = tg.create_task(self.uplink.run(), name="uplink")
                devices = [tg.create_task(r.run(), name=f"device:{r.device.id}")
                           for r in self.runners]
                summary = tg.create_task(self._summaries(), name="fault-summary")
                registrar = tg.create_task(self.identifiers.run(), name="identifiers")
                supervisor = tg.create_task(self._systemd(), name="systemd")
                certs = tg.create_task(self.certs.run(), name="cert-watch")
                await self._stop.wait()
                log.info("stopping: devices first, then draining %d batch(es) to the broker",
                         self.store.stats.entries)
                for t in devices:
                    t.cancel()
                summary.cancel()
                registrar.cancel()
                supervisor.cancel()
                certs.cancel()
                self.notifier.stopping()
                self.uplink.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(uplink), DRAIN_TIMEOUT)
                except TimeoutError:
                    log.warning("stopping: %d batch(es) not delivered within %.0f s "
                                "(memory store: they are lost)",
                                self.store.stats.entries, DRAIN_TIMEOUT)
                    uplink.cancel()
        finally:
            for r in self.runners:
                await r.driver.close()
            self.ctx.close()
            if self.health is not None:
                await self.health.close()
            self.identifiers.close()
            await self.store.close()
            log.info("edgegw %s stopped", self.gateway_id)

    def _status_line(self) -> str:
        devs = self.stats.devices.values()
        online = sum(d.state == "online" for d in devs)
        return (f"{online}/{len(self.runners)} devices online, "
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
            if not ready and (any(d.polls for d in self.stats.devices.values())
                              or not self.runners or now - start >= READY_GRACE):
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


async def run_until_signal(loaded: LoadedConfig) -> None:
    gw = Gateway(loaded)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, gw.stop)
    await gw.run()
