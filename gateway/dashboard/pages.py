"""The dashboard's pages: HTML with server-rendered SVG charts, no script, no external
resource (a factory LAN has no internet), a dark theme that reads on a shop-floor TV and
a grid that folds to one column on a phone. Every text from the field (device ids,
reasons, order and product codes) goes through :func:`html.escape`."""

from __future__ import annotations

import html
import urllib.parse
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.dashboard.data import Row, Segment, Tile

COLOURS = {"run": "#2e9d48", "down": "#d23c3c", "planned": "#3b79d8", "unknown": "#6b6b6b"}
IDLE = "#e0a31a"  # a 'down' state without a fault reason: idle, waiting
CSS = """
*{box-sizing:border-box} body{margin:0;font-family:system-ui,sans-serif;background:#15181c;
color:#e8e8e8} header{display:flex;gap:1.5em;align-items:baseline;padding:.6em 1em;
background:#20252b;flex-wrap:wrap} header h1{font-size:1.3em;margin:0} a{color:#9cc7ff}
main{padding:1em} .grid{display:grid;gap:1em;grid-template-columns:repeat(auto-fill,
minmax(17em,1fr))} .tile{border-radius:.6em;padding:.8em 1em;background:#232a31;
border-left:.7em solid #6b6b6b;color:inherit;text-decoration:none;display:block}
.tile h2{margin:0 0 .3em;font-size:1.25em} .state{font-size:1.1em;font-weight:600}
.kpi{display:flex;gap:1em;margin:.4em 0;flex-wrap:wrap} .kpi b{font-size:1.4em;display:block}
.bar{background:#3a424b;border-radius:.3em;height:1.1em;overflow:hidden}
.bar span{display:block;height:100%;background:#2e9d48} .muted{color:#9aa3ad}
table{border-collapse:collapse;width:100%} td,th{padding:.35em .6em;text-align:left;
border-bottom:1px solid #333b44} section{margin-bottom:1.6em} svg text{fill:#c9d1d9;
font-size:12px} .legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0
1em;vertical-align:middle} .error{background:#5a1d1d;padding:.8em;border-radius:.4em}
@media (max-width:600px){main{padding:.5em} .tile h2{font-size:1.1em}}
"""


def esc(v: object) -> str:
    return html.escape("" if v is None else str(v))


def colour(cat: str, reason: str | None, state: str) -> str:
    if cat == "down" and (reason is None or reason == state) and state != "fault":
        return IDLE
    return COLOURS.get(cat, COLOURS["unknown"])


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def clock(ms: int | float | None, tz: ZoneInfo, with_date: bool = False) -> str:
    if not ms:
        return "-"
    t = datetime.fromtimestamp(float(ms) / 1000, tz)
    return t.strftime("%d.%m. %H:%M" if with_date else "%H:%M")


def duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def bar(done: float | None, planned: int) -> str:
    """A progress bar: ``done`` of ``planned`` (full at or beyond it)."""
    share = min(1.0, float(done or 0) / planned)
    return f'<div class="bar"><span style="width:{100 * share:.0f}%"></span></div>'


def page(title: str, body: str, refresh: float, nav: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{int(refresh)}">
<title>{esc(title)}</title><style>{CSS}</style></head><body>
<header><h1>{esc(title)}</h1><nav><a href="/">Plant</a> &middot; <a href="/orders">Orders</a>
&middot; <a href="/trace">Products</a>{nav}</nav><span class="muted" id="updated"></span></header>
<main>{body}</main></body></html>
"""


def error_page(title: str, message: str, refresh: float) -> str:
    return page(title, f'<p class="error">{esc(message)}</p>', refresh)


# -- overview ----------------------------------------------------------------------------------
def overview(title: str, ts: list[Tile], tz: ZoneInfo, now_ms: int, refresh: float) -> str:
    if not ts:
        body = ("<p>No production records yet: machines appear here once a gateway with "
                "production profiles sends its first state (docs/production.md).</p>")
        return page(title, body, refresh)
    tiles_html = "".join(_tile(t, tz, now_ms) for t in ts)
    updated = clock(now_ms, tz)
    return page(title, f'<p class="muted">updated {updated}</p><div class="grid" '
                f'id="tiles">{tiles_html}</div>', refresh)


def _tile(t: Tile, tz: ZoneInfo, now_ms: int) -> str:
    c = colour(t.cat, t.reason, t.state)
    since = duration((now_ms - t.since) / 1000) if t.since else "-"
    reason = f' <span class="reason">({esc(t.reason)})</span>' \
        if t.reason and t.reason != t.state else ""
    k = t.kpis
    count = "-" if t.parts is None else str(t.parts)
    target = ""
    if t.target:
        done = t.order.get("good") if t.order is not None else t.parts
        target = f'<div class="muted">{esc(done)} of {t.target}</div>{bar(done, t.target)}'
    order = ""
    if t.order is not None:
        order = (f'<div>order <b class="order">{esc(t.order.get("order"))}</b> '
                 f'<span class="muted">{esc(t.order.get("status"))}</span></div>')
    href = "/machine?" + urllib.parse.urlencode({"id": t.device})
    return (f'<a class="tile" href="{esc(href)}" style="border-left-color:{c}" '
            f'data-device="{esc(t.device)}">'
            f'<h2>{esc(t.device)}</h2>'
            f'<div class="state" style="color:{c}">{esc(t.state)}{reason}</div>'
            f'<div class="muted">for {since}, since {clock(t.since, tz)}</div>'
            f'<div class="kpi"><span>shift {esc(t.shift or "-")}<b class="parts">{count}</b>'
            f'parts</span><span>availability<b class="availability">'
            f'{pct(k.get("availability"))}</b></span><span>OEE<b class="oee">'
            f'{pct(k.get("oee"))}</b></span></div>{target}{order}</a>')


# -- one machine --------------------------------------------------------------------------------
def gantt(segs: list[Segment], start_ms: int, end_ms: int, tz: ZoneInfo,
          width: int = 1000, height: int = 46) -> str:
    span = max(1, end_ms - start_ms)
    rects = []
    for s in segs:
        x = (s.start - start_ms) / span * width
        w = max(0.5, (s.end - s.start) / span * width)
        tip = f"{s.state}{' (' + s.reason + ')' if s.reason and s.reason != s.state else ''}" \
            f" {clock(s.start, tz)}-{clock(s.end, tz)}, {duration((s.end - s.start) / 1000)}"
        rects.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height - 16}" '
                     f'fill="{colour(s.cat, s.reason, s.state)}" data-state="{esc(s.state)}">'
                     f'<title>{esc(tip)}</title></rect>')
    ticks = []
    hours = span / 3_600_000
    step = 1 if hours <= 12 else 2 if hours <= 24 else 6
    first = (start_ms // 3_600_000 + 1) * 3_600_000
    for t in range(first, end_ms, step * 3_600_000):
        x = (t - start_ms) / span * width
        if not 20 <= x <= width - 20:  # a label at the edge would be cut in half
            continue
        ticks.append(f'<text x="{x:.0f}" y="{height - 2}" text-anchor="middle">'
                     f'{clock(t, tz)}</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="state timeline" id="gantt">{"".join(rects)}{"".join(ticks)}</svg>')


def bars(values: list[int], labels: list[str], width: int = 1000, height: int = 160) -> str:
    top = max(values, default=0) or 1
    n = max(1, len(values))
    bw = width / n
    out = []
    for i, (v, lab) in enumerate(zip(values, labels, strict=True)):
        h = v / top * (height - 34)
        x = i * bw
        out.append(f'<rect x="{x + 2:.1f}" y="{height - 18 - h:.1f}" width="{bw - 4:.1f}" '
                   f'height="{h:.1f}" fill="#3b79d8"><title>{esc(lab)}: {v}</title></rect>')
        if v:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 22 - h:.1f}" '
                       f'text-anchor="middle">{v}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 4}" text-anchor="middle">'
                   f'{esc(lab)}</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="parts per hour" id="counts">{"".join(out)}</svg>')


def line(points: list[tuple[int, float]], start_ms: int, end_ms: int, tz: ZoneInfo,
         width: int = 1000, height: int = 160, label: str = "cycle time",
         unit: str = "s", ident: str = "cycle") -> str:
    if not points:
        return f'<p class="muted">no {esc(label)} measured yet</p>'
    lo = min(v for _, v in points)
    hi = max(v for _, v in points)
    if hi - lo < 1e-9:
        lo, hi = lo * 0.9, hi * 1.1 + 1e-9
    span = max(1, end_ms - start_ms)
    pts = " ".join(f"{(t - start_ms) / span * width:.1f},"
                   f"{height - 18 - (v - lo) / (hi - lo) * (height - 34):.1f}"
                   for t, v in points)
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="{esc(label)}" id="{esc(ident)}"><polyline points="{pts}" '
            f'fill="none" stroke="#e0a31a" stroke-width="2"/>'
            f'<text x="4" y="14">{hi:.1f} {esc(unit)}</text>'
            f'<text x="4" y="{height - 20}">{lo:.1f} {esc(unit)}</text>'
            f'<text x="{width - 4}" y="{height - 4}" text-anchor="end">'
            f'{clock(end_ms, tz)}</text></svg>')


def machine(title: str, device: str, segs: list[Segment], reasons: list[tuple[str, str, float]],
            per_cat: dict[str, float], counts: list[int], cycles: list[tuple[int, float]],
            last_kpi: Row | None, start_ms: int, now_ms: int, tz: ZoneInfo,
            refresh: float) -> str:
    hours = len(counts)
    labels = [clock(start_ms + h * 3_600_000, tz) for h in range(hours)]
    legend = "".join(f'<span style="background:{c}"></span>{esc(n)}' for n, c in (
        ("running", COLOURS["run"]), ("stopped (fault)", COLOURS["down"]),
        ("idle / waiting", IDLE), ("planned stop", COLOURS["planned"]),
        ("unknown (offline)", COLOURS["unknown"])))
    rows = "".join(f'<tr><td class="reason">{esc(r)}</td><td>{esc(c)}</td>'
                   f'<td data-seconds="{v:.0f}">{duration(v)}</td></tr>'
                   for r, c, v in reasons[:10]) or '<tr><td colspan="3">no stops</td></tr>'
    k = last_kpi or {}
    cats = " &middot; ".join(f"{esc(n)} {duration(per_cat.get(c, 0.0))}" for n, c in (
        ("running", "run"), ("down", "down"), ("planned", "planned"), ("unknown", "unknown")))
    body = f"""
<section><h2>{esc(device)}</h2>
<div class="kpi"><span>shift parts<b id="shift-parts">{esc(k.get("parts", "-"))}</b></span>
<span>availability<b>{pct(k.get("availability"))}</b></span>
<span>OEE<b>{pct(k.get("oee"))}</b></span></div></section>
<section><h3>Today</h3>{gantt(segs, start_ms, now_ms, tz)}
<div class="legend muted">{legend}</div><p class="muted" id="per-cat">{cats}</p></section>
<section><h3>Parts per hour</h3>{bars(counts, labels)}</section>
<section><h3>Cycle time (mean per KPI interval)</h3>{line(cycles, start_ms, now_ms, tz)}</section>
<section><h3>Top stop reasons today</h3><table id="reasons"><thead><tr><th>reason</th>
<th>kind</th><th>time</th></tr></thead><tbody>{rows}</tbody></table></section>"""
    return page(f"{title}: {device}", body, refresh)


# -- orders ---------------------------------------------------------------------------------------
def orders(title: str, rows: list[Row], tz: ZoneInfo, refresh: float) -> str:
    if not rows:
        return page(title, "<p>No orders in the last week.</p>", refresh)
    out = []
    for r in rows:
        planned = r.get("planned")
        good = int(r.get("good") or 0)
        progress = bar(good, planned) if planned else ""
        eta = clock(r.get("eta"), tz, with_date=True) if r.get("status") == "running" else "-"
        rate = f'{float(r["rate_h"]):.1f}/h' if r.get("rate_h") is not None else "-"
        out.append(f'<tr data-order="{esc(r.get("order"))}"><td class="order">'
                   f'{esc(r.get("order"))}</td><td>{esc(r.get("device"))}</td>'
                   f'<td>{esc(r.get("product") or "")}</td><td>{esc(r.get("status"))}</td>'
                   f'<td class="count">{good} / {esc(planned or "?")}{progress}</td>'
                   f'<td class="scrap">{esc(r.get("scrap") or 0)}</td><td class="rate">{rate}'
                   f'</td><td class="eta">{eta}</td></tr>')
    body = ('<table id="orders"><thead><tr><th>order</th><th>machine</th><th>product</th>'
            '<th>status</th><th>good / planned</th><th>scrap</th><th>rate</th>'
            '<th>estimated finish</th></tr></thead><tbody>' + "".join(out) + "</tbody></table>")
    return page(f"{title}: orders", body, refresh)


# -- product records ------------------------------------------------------------------------------
_FORM = ('<form method="get" action="/trace"><label>product or batch code '
         '<input name="code" size="36" value="{code}"></label> <button>Trace</button></form>')


def traces(title: str, recent: list[Row], tz: ZoneInfo, refresh: float) -> str:
    rows = "".join(
        f'<tr><td>{clock(r["time"], tz, True)}</td><td>{esc(r.get("device"))}</td>'
        f'<td><a href="/trace?code={urllib.parse.quote(str(r["code"]))}">{esc(r["code"])}</a>'
        f'</td><td class="{esc(r.get("verdict"))}">{esc(r.get("verdict"))}'
        f'{" (interrupted)" if r.get("interrupted") else ""}</td></tr>'
        for r in recent) or '<tr><td colspan="4">no product records yet</td></tr>'
    body = (f'<section><h2>Products</h2>{_FORM.format(code="")}<table id="recent"><thead><tr>'
            f'<th>start</th><th>machine</th><th>code</th><th>verdict</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')
    return page(f"{title}: products", body, refresh)


def trace(title: str, rec: Row, curves: dict[str, list[tuple[int, float]]],
          tz: ZoneInfo) -> str:
    """One product's record and the process curve of each summarised value over its
    window (no refresh: a record does not change, or rarely)."""
    start, end = int(rec["time"]), int(rec["end"])
    facts = [("machine", f'{rec.get("device", "")} ({rec.get("machine") or "no code"})'),
             ("start", clock(start, tz, True)), ("end", clock(end, tz, True)),
             ("duration", duration((end - start) / 1000)), ("recipe", rec.get("recipe")),
             ("verdict", rec.get("verdict")), ("why", rec.get("why") or "within limits"),
             ("inputs", ", ".join(str(rec.get("inputs") or "").split(",")) or "none"),
             ("interrupted", f'{"yes" if rec.get("interrupted") else "no"} (gap '
                             f'{rec.get("gap_s") or 0} s, resumed {rec.get("resumed") or 0}x)')]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    stats = "".join(
        f'<tr><td>{esc(p)}</td>' + "".join(f"<td>{esc(rec.get(p + s, ''))}</td>" for s in (
            "_n", "_min", "_max", "_mean", "_final", "_above_s")) + "</tr>"
        for p in curves)
    charts = "".join(f"<h3>{esc(p)}</h3>" + line(pts, start, end, tz, label=p, unit="",
                                                  ident=f"curve-{p}")
                     for p, pts in curves.items())
    body = (f'<section><h2>{esc(rec["code"])}</h2>{_FORM.format(code=esc(rec["code"]))}'
            f'<table id="record">{rows}</table></section><section><h3>Process summary</h3>'
            f'<table id="summary"><thead><tr><th>value</th><th>n</th><th>min</th><th>max</th>'
            f'<th>mean</th><th>final</th><th>s above</th></tr></thead><tbody>{stats}</tbody>'
            f'</table>{charts}</section>')
    return page(f"{title}: {rec['code']}", body, 3600)
