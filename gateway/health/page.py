"""The status page (``/``): rendered on the server for the first paint (and browsers
without JavaScript, which reload it every 5 s), then refreshed every 2 s from
``/status.json`` by a small script that writes text only (never HTML), so a value read
from a device cannot inject markup."""

from __future__ import annotations

import html
import time


def summary(h: dict[str, object]) -> str:
    return (f"status <b>{html.escape(str(h['status']))}</b>; {h['devices_online']}/"
            f"{h['devices']} devices online; uplink "
            f"{'connected' if h['uplink_connected'] else 'disconnected'}; "
            f"{h['queued_batches']} batch(es) queued")


def production_text(prod: object) -> str:
    """One line of a machine's production facts (the same text as the script's)."""
    if not isinstance(prod, dict):
        return ""
    since = time.strftime("%H:%M", time.localtime(int(prod.get("since", 0)) / 1000))
    out = f"{prod.get('state')} since {since}"
    if prod.get("reason") and prod.get("reason") != prod.get("state"):
        out += f" ({prod['reason']})"
    out += f"; today {prod.get('today_parts', 0)} parts"
    if "today_availability" in prod:
        out += f", availability {100 * float(prod['today_availability']):.0f} %"
    order = prod.get("order")
    if isinstance(order, dict):
        out += f"; order {order.get('code')} {order.get('good')}/{order.get('planned') or '?'}"
    return out


def _row(dev: str, d: dict[str, object]) -> str:
    values = d["values"]
    assert isinstance(values, dict)
    vals = ", ".join(f"{k}={v}" for k, v in list(values.items())[:6])
    last_ok = d["last_ok"]
    age = f"{time.time() - float(last_ok):.1f} s" if isinstance(last_ok, (int, float)) and last_ok \
        else "never"
    state = html.escape(str(d["state"]))
    return (f"<tr class='{state}'><td>{html.escape(dev)}</td><td>{state}</td>"
            f"<td>{html.escape(str(d['machine'] or ''))}</td>"
            f"<td>{html.escape(production_text(d.get('production')))}</td><td>{age}</td>"
            f"<td>{html.escape(vals)}</td>"
            f"<td>{html.escape(str(d['last_error'] or ''))}</td></tr>")


def render(h: dict[str, object], devices: dict[str, dict[str, object]]) -> str:
    """The page from the health summary (``/healthz``) and the device state."""
    rows = "".join(_row(dev, d) for dev, d in devices.items())
    cert_warnings = h.get("cert_warnings") or []
    assert isinstance(cert_warnings, list)
    warnings = "".join(f"<p class='warning'>{html.escape(str(w))}</p>" for w in cert_warnings)
    gw = html.escape(str(h["gateway"]))
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<title>edgegw {gw}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:left}}
tr.offline{{color:#b00}} tr.online{{color:#070}} .warning{{color:#b60}}
#updated{{color:#777}}</style></head><body>
<h1>edgegw {gw}</h1>
<p id="summary">{summary(h)}</p>
<div id="warnings">{warnings}</div>
<table id="devices"><thead><tr><th>device</th><th>link</th><th>machine</th>
<th>production</th><th>last read</th><th>values</th><th>last error</th></tr></thead>
<tbody>{rows}</tbody></table>
<p id="updated" data-refreshes="0"></p>
<script>{SCRIPT}</script>
</body></html>
"""


#: the status page's refresh: text nodes only (textContent), never innerHTML
SCRIPT = """
function cell(tr, text) { const td = document.createElement('td'); td.textContent = text;
  tr.appendChild(td); }
function production(p) {
  if (!p) return '';
  const pad = (n) => String(n).padStart(2, '0');
  const t = new Date(p.since);
  let out = p.state + ' since ' + pad(t.getHours()) + ':' + pad(t.getMinutes());
  if (p.reason && p.reason !== p.state) out += ' (' + p.reason + ')';
  out += '; today ' + (p.today_parts || 0) + ' parts';
  if (p.today_availability !== undefined)
    out += ', availability ' + (100 * p.today_availability).toFixed(0) + ' %';
  if (p.order)
    out += '; order ' + p.order.code + ' ' + p.order.good + '/' + (p.order.planned || '?');
  return out;
}
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
    cell(tr, dev); cell(tr, d.state); cell(tr, d.machine || ''); cell(tr, production(d.production));
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
