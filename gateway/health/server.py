"""The local health endpoint: ``/healthz``, ``/metrics`` (Prometheus text format) and
a small status page (``/``) that refreshes itself.

Loopback only by default (``health.host``); the HTTP side (bounded requests and
connections) is gateway.httpserve, shared with the ingest.
The server reads the gateway's counters; it never blocks the device tasks.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.httpserve import HttpEndpoint, Metrics
from gateway.modem.parse import LinkSample
from gateway.uplink.influx import InfluxUplink

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("edgegw.health")
#: a service that failed this recently (s) makes the status 'degraded'
SERVICE_FAILED_FOR = 900.0


def _json_safe(v: object) -> object:
    """NaN and infinities as text: JSON has no such numbers (a browser would refuse the
    whole document)."""
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v


class HealthServer(HttpEndpoint):
    def __init__(self, gw: Gateway, host: str, port: int) -> None:
        self.gw = gw
        super().__init__(host, port, {
            "/healthz": self.healthz, "/metrics": self.metrics, "/": self.page,
            "/status.json": self.status_json,
        }, "health endpoint")

    # -- pages ---------------------------------------------------------------------------
    def _health(self) -> dict[str, object]:
        gw = self.gw
        devs = gw.stats.devices
        degraded = gw.store.stats.degraded
        stalled = gw.stalled_devices()
        now = asyncio.get_running_loop().time()
        failed = {name: {"failures": n, "last_error": why,
                         "seconds_ago": round(now - when)}
                  for name, (n, why, when) in sorted(gw.service_failures.items())}
        recent = any(now - when < SERVICE_FAILED_FOR
                     for _, _, when in gw.service_failures.values())
        return {
            "status": "degraded" if degraded or stalled or recent else "ok",
            "gateway": gw.gateway_id,
            "devices": len(gw.runners),
            "devices_online": sum(d.state == "online" for d in devs.values()),
            "uplink_connected": gw.stats.uplink_connected,
            "queued_batches": gw.store.stats.entries,
            "store_degraded": degraded,
            "devices_stalled": stalled,
            "services_failed": failed,
            "cert_warnings": gw.certs.warnings,
        }

    def healthz(self) -> tuple[int, str, str]:
        h = self._health()
        return (200 if h["status"] == "ok" else 503), "application/json", json.dumps(h) + "\n"

    def status_json(self) -> tuple[int, str, str]:
        return 200, "application/json", json.dumps(
            {**self._health(), "device_state": self._devices()}, default=str) + "\n"

    def _devices(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for r in self.gw.runners:
            st = r.stats
            values = {n: _json_safe(p.last) for n, p in r.pipeline.points.items()
                      if p.last is not None}
            out[r.device.id] = {"state": st.state, "machine": r.pipeline.state,
                                "last_ok": st.last_ok, "last_error": st.last_error,
                                "values": values}
        return out

    def metrics(self) -> tuple[int, str, str]:
        gw = self.gw
        metric = Metrics()
        devs = [(r.device.id, r.stats) for r in gw.runners]
        metric("device_up", "gauge", "1 when the device answers",
               [({"device": d}, 1.0 if s.state == "online" else 0.0) for d, s in devs])
        metric("device_polls_total", "counter", "poll cycles (and pushed deliveries)",
               [({"device": d}, s.polls) for d, s in devs])
        metric("device_read_errors_total", "counter", "requests that failed",
               [({"device": d}, s.read_errors) for d, s in devs])
        metric("device_points_total", "counter", "values read",
               [({"device": d}, s.points) for d, s in devs])
        metric("device_missed_ticks_total", "counter", "poll ticks skipped (overruns)",
               [({"device": d}, s.missed_ticks) for d, s in devs])
        metric("device_reconnects_total", "counter", "connections lost",
               [({"device": d}, s.reconnects) for d, s in devs])
        metric("device_read_seconds_total", "counter", "time spent reading",
               [({"device": d}, round(s.read_seconds, 6)) for d, s in devs])
        metric("device_last_success_timestamp_seconds", "gauge", "last successful read",
               [({"device": d}, round(s.last_ok, 3)) for d, s in devs])
        self._driver_metrics(metric)
        st = gw.store.stats
        metric("store_batches", "gauge", "batches waiting for the uplink", [({}, st.entries)])
        metric("store_bytes", "gauge", "bytes waiting for the uplink", [({}, st.bytes)])
        metric("store_dropped_batches_total", "counter", "batches dropped, by reason",
               [({"reason": k}, v) for k, v in sorted(st.dropped_by.items())] or
               [({"reason": "none"}, 0)])
        if isinstance(gw.uplink, InfluxUplink):  # the direct route's refused batches
            metric("dead_letters_total", "counter", "batches InfluxDB refused, by reason",
                   [({"reason": k}, v) for k, v in sorted(gw.uplink.dead.by_reason.items())]
                   or
                   [({"reason": "none"}, 0)])
        metric("health_refused_connections_total", "counter",
               "idle connections to this endpoint closed to make room (too many at once)",
               [({}, self.refused)])
        metric("service_failures_total", "counter",
               "optional services (identifiers, reload, ...) that failed and were restarted",
               [({"service": k}, v[0]) for k, v in sorted(gw.service_failures.items())] or
               [({"service": "none"}, 0)])
        metric("store_degraded", "gauge", "1 while the store cannot write (e.g. disk full)",
               [({}, 1.0 if st.degraded else 0.0)])
        s = gw.stats
        metric("uplink_connected", "gauge", "1 while connected to the broker",
               [({}, 1.0 if s.uplink_connected else 0.0)])
        metric("uplink_published_total", "counter", "batches acknowledged", [({}, s.published)])
        metric("uplink_publish_errors_total", "counter", "failed publishes",
               [({}, s.publish_errors)])
        metric("uplink_connects_total", "counter", "broker connections", [({}, s.mqtt_connects)])
        metric("uplink_bytes_total", "counter", "payload and topic bytes acknowledged",
               [({}, s.bytes_sent)])
        metric("uplink_publish_seconds_total", "counter", "time from publish to PUBACK",
               [({}, round(s.publish_seconds, 6))])
        metric("uplink_messages_total", "counter", "data messages acknowledged (compact: "
               "one pack holds many batches)", [({}, s.messages)])
        metric("uplink_urgent_total", "counter", "alarm/state batches sent ahead of the rest",
               [({}, s.urgent)])
        link = gw.uplink.link
        metric("uplink_puback_seconds", "gauge", "time to PUBACK (or the database's reply), "
               "moving average", [({}, round(link.rtt, 4))])
        metric("uplink_pack_delay_factor", "gauge", "pack delay multiplier (1 on a good "
               "link, up to 8 on a slow one)", [({}, link.factor)])
        self._modem_metrics(metric)
        radio = gw.uplink.radio
        if gw.uplink.radio_sample is not None:
            metric("uplink_radio_poor", "gauge", "1 while the modem reports a poor signal "
                   "(packs grow, compression is harder, bulk waits)",
                   [({}, 1.0 if radio.poor else 0.0)])
            metric("uplink_bulk_held_batches", "gauge", "bulk batches held back in the store "
                   "for a good signal", [({}, radio.deferred)])
        budget = gw.uplink.budget
        if budget is not None:
            metric("uplink_budget_bytes_per_second", "gauge", "the configured budget",
                   [({}, budget.rate)])
            metric("uplink_budget_wait_seconds_total", "counter", "time ordinary data waited "
                   "for the budget", [({}, round(budget.waited, 3))])
        metric("config_reloads_total", "counter", "config reloads applied", [({}, s.reloads)])
        metric("config_reload_errors_total", "counter", "reloads refused (invalid config; the "
               "running one kept)", [({}, s.reload_errors)])
        q = gw.identifiers.queue.counts()
        metric("identifier_registrations", "gauge", "codes in the registration queue, by state",
               [({"state": k}, float(v)) for k, v in sorted(q.items())] or
               [({"state": "done"}, 0.0)])
        certs = [i for i in gw.certs.infos if i.not_after is not None]
        if certs:
            metric("cert_expiry_timestamp_seconds", "gauge", "when a configured certificate "
                   "expires", [({"config": i.where, "file": str(i.path)},
                                i.not_after.timestamp()) for i in certs
                               if i.not_after is not None])
        return metric.text()

    def _driver_metrics(self, metric: Callable[[str, str, str, list[tuple[dict[str, str],
                                                                            float]]], None]
                        ) -> None:
        """Each driver's own figures (drivers/base.py DriverMetric), one family per name."""
        families: dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]] = {}
        for r in self.gw.runners:
            for m in r.driver.metrics():
                fam = families.setdefault(m.name, (m.kind, m.help, []))
                fam[2].append(({"device": r.device.id}, m.value))
        for name, (kind, help_, samples) in families.items():
            metric(name, kind, help_, samples)

    def _modem_metrics(self, metric: Callable[[str, str, str, list[tuple[dict[str, str],
                                                                           float]]], None]
                       ) -> None:
        """The modem devices' latest link sample as gauges (absent values are left out)."""
        samples: list[tuple[str, LinkSample]] = []
        for r in self.gw.runners:
            latest = getattr(r.driver, "latest", None)
            if isinstance(latest, LinkSample):
                samples.append((r.device.id, latest))
        if not samples:
            return
        for field, name, unit in (("rssi_dbm", "rssi", "dBm"), ("rsrp_dbm", "rsrp", "dBm"),
                                  ("rsrq_db", "rsrq", "dB"), ("sinr_db", "sinr", "dB"),
                                  ("nr_rsrp_dbm", "nr_rsrp", "dBm"),
                                  ("nr_rsrq_db", "nr_rsrq", "dB"),
                                  ("nr_sinr_db", "nr_sinr", "dB")):
            values = [({"device": d}, float(getattr(s, field))) for d, s in samples
                      if getattr(s, field) is not None]
            if values:
                unit_name = "dbm" if unit == "dBm" else "db"
                metric(f"modem_{name}_{unit_name}", "gauge", f"{name.upper()} ({unit})", values)
        metric("modem_registered", "gauge", "1 while the module is registered",
               [({"device": d}, 1.0 if s.registered else 0.0) for d, s in samples])
        metric("modem_info", "gauge", "the serving cell (labels), always 1",
               [({"device": d, "tech": s.tech or "", "band": s.band or "", "cell": s.cell or "",
                  "operator": s.mcc_mnc or ""}, 1.0) for d, s in samples])
        metric("modem_resets_total", "counter", "module resets after a dead link "
               "(modem reset.after)", [({}, float(self.gw.watchdog.resets))])

    def page(self) -> tuple[int, str, str]:
        """The status page: rendered here for the first paint (and browsers without
        JavaScript, which reload it every 5 s), then refreshed every 2 s from
        /status.json by a small script that writes text only (never HTML), so a value
        read from a device cannot inject markup."""
        h = self._health()
        rows = []
        for dev, d in self._devices().items():
            vals = ", ".join(f"{k}={v}" for k, v in list(d["values"].items())[:6])  # type: ignore[attr-defined]
            age = f"{time.time() - float(d['last_ok']):.1f} s" if d["last_ok"] else "never"  # type: ignore[arg-type]
            rows.append(
                f"<tr class='{html.escape(str(d['state']))}'><td>{html.escape(dev)}</td>"
                f"<td>{html.escape(str(d['state']))}</td>"
                f"<td>{html.escape(str(d['machine'] or ''))}</td><td>{age}</td>"
                f"<td>{html.escape(vals)}</td>"
                f"<td>{html.escape(str(d['last_error'] or ''))}</td></tr>")
        warnings = "".join(f"<p class='warning'>{html.escape(w)}</p>"
                           for w in self.gw.certs.warnings)
        gw = html.escape(str(h["gateway"]))
        return 200, "text/html", f"""<!doctype html>
<html><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<title>edgegw {gw}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:left}}
tr.offline{{color:#b00}} tr.online{{color:#070}} .warning{{color:#b60}}
#updated{{color:#777}}</style></head><body>
<h1>edgegw {gw}</h1>
<p id="summary">{self._summary(h)}</p>
<div id="warnings">{warnings}</div>
<table id="devices"><thead><tr><th>device</th><th>link</th><th>machine</th>
<th>last read</th><th>values</th><th>last error</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p id="updated" data-refreshes="0"></p>
<script>{_SCRIPT}</script>
</body></html>
"""

    @staticmethod
    def _summary(h: dict[str, object]) -> str:
        return (f"status <b>{html.escape(str(h['status']))}</b>; {h['devices_online']}/"
                f"{h['devices']} devices online; uplink "
                f"{'connected' if h['uplink_connected'] else 'disconnected'}; "
                f"{h['queued_batches']} batch(es) queued")


#: the status page's refresh: text nodes only (textContent), never innerHTML
_SCRIPT = """
function cell(tr, text) { const td = document.createElement('td'); td.textContent = text;
  tr.appendChild(td); }
function render(s) {
  const sum = document.getElementById('summary');
  sum.textContent = '';
  const b = document.createElement('b'); b.textContent = s.status;
  sum.append('status ', b, '; ' + s.devices_online + '/' + s.devices + ' devices online; uplink '
    + (s.uplink_connected ? 'connected' : 'disconnected') + '; ' + s.queued_batches
    + ' batch(es) queued');
  const warn = document.getElementById('warnings'); warn.textContent = '';
  for (const w of s.cert_warnings || []) { const p = document.createElement('p');
    p.className = 'warning'; p.textContent = w; warn.appendChild(p); }
  const body = document.querySelector('#devices tbody'); body.textContent = '';
  const now = Date.now() / 1000;
  for (const [dev, d] of Object.entries(s.device_state)) {
    const tr = document.createElement('tr'); tr.className = d.state;
    const vals = Object.entries(d.values).slice(0, 6).map(([k, v]) => k + '=' + v).join(', ');
    cell(tr, dev); cell(tr, d.state); cell(tr, d.machine || '');
    cell(tr, d.last_ok ? (now - d.last_ok).toFixed(1) + ' s' : 'never');
    cell(tr, vals); cell(tr, d.last_error || ''); body.appendChild(tr);
  }
}
async function refresh() {
  const up = document.getElementById('updated');
  try {
    const r = await fetch('/status.json', {cache: 'no-store'});
    render(await r.json());
    up.dataset.refreshes = String(Number(up.dataset.refreshes) + 1);
    up.textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    up.textContent = 'the gateway does not answer (' + e + '); retrying';
  }
}
refresh(); setInterval(refresh, 2000);
"""
