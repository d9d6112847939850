"""What the dashboard shows, read from InfluxDB with InfluxQL (the production records of
docs/production.md: ``edgegw/state``, ``edgegw/kpi``, ``edgegw/order``).

InfluxDB 1.x answers ``/query`` itself; 2.x and 3.x answer the same v1-compatible
``/query`` with a token (the bucket as the database). Each page is one HTTP request with
a few statements; the shaping into tiles, timelines and charts is plain functions over
the rows (unit-tested without a database).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import SinkError
from gateway.influx.sinkconfig import InfluxV1, InfluxV2

Row = dict[str, Any]
#: how far back a machine's last state event is looked for (a machine may stay in one
#: state for weeks)
STATE_LOOKBACK = "30d"


class QueryError(SinkError):
    """The database did not answer a query (the page says so; nothing else fails)."""


class Influx:
    """InfluxQL over HTTP (read-only: only SELECT statements are sent)."""

    def __init__(self, sink: InfluxV1 | InfluxV2) -> None:
        self.url = sink.url.rstrip("/") + "/query"
        self.timeout = sink.timeout
        if isinstance(sink, InfluxV1):
            self.db = sink.database
            self.headers = sink.auth_headers()
        else:
            self.db = sink.bucket
            token = sink.token()
            self.headers = {"Authorization": f"Token {token}"} if token else {}

    def query(self, *statements: str) -> list[list[Row]]:
        """Each statement's rows (``device`` from the series' tags is in every row)."""
        q = ";".join(statements)
        url = self.url + "?" + urllib.parse.urlencode({"db": self.db, "q": q, "epoch": "ms"})
        req = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                doc = json.loads(r.read())
        except (OSError, ValueError) as exc:
            raise QueryError(f"InfluxDB at {self.url} did not answer: {exc}") from None
        out: list[list[Row]] = []
        for res in doc.get("results", []):
            if "error" in res:
                raise QueryError(f"InfluxDB: {res['error']}")
            rows: list[Row] = []
            for s in res.get("series", []):
                tags = s.get("tags") or {}
                for v in s.get("values", []):
                    rows.append({**tags, **dict(zip(s["columns"], v, strict=True)),
                                 "_measurement": s.get("name")})
            out.append(rows)
        while len(out) < len(statements):
            out.append([])
        return out


def literal(s: str) -> str:
    """An InfluxQL string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- the plant overview -----------------------------------------------------------------------
@dataclass(slots=True)
class Tile:
    device: str
    state: str = "unknown"
    cat: str = "unknown"
    reason: str | None = None
    since: int = 0  # ms
    shift: str | None = None
    parts: int | None = None
    target: int | None = None
    kpis: dict[str, float] = field(default_factory=dict)
    order: Row | None = None


OVERVIEW = (
    f'SELECT last("state") AS "state", "reason", "cat" FROM "edgegw/state" '
    f'WHERE time > now() - {STATE_LOOKBACK} GROUP BY "device"',
    'SELECT last("parts") AS "parts", "availability", "performance", "quality", "oee", '
    '"shift", "shift_end" FROM "edgegw/kpi" WHERE time > now() - 2d GROUP BY "device"',
    'SELECT last("status") AS "status", "order", "good", "planned", "rate_h", "eta", '
    f'"product" FROM "edgegw/order" WHERE time > now() - {STATE_LOOKBACK} GROUP BY "device"',
)


def tiles(states: list[Row], kpis: list[Row], orders: list[Row], now_ms: int,
          targets: dict[str, int]) -> list[Tile]:
    out: dict[str, Tile] = {}
    for r in states:
        out[r["device"]] = Tile(r["device"], str(r.get("state") or "unknown"),
                                str(r.get("cat") or "unknown"), r.get("reason"),
                                int(r["time"]))
    for r in kpis:
        t = out.setdefault(r["device"], Tile(r["device"]))
        if r.get("shift_end") and int(r["shift_end"]) > now_ms:  # the shift still runs
            t.shift = r.get("shift")
            t.parts = r.get("parts")
            t.kpis = {k: float(r[k]) for k in ("availability", "performance", "quality", "oee")
                      if r.get(k) is not None}
    for r in orders:
        t = out.setdefault(r["device"], Tile(r["device"]))
        if r.get("status") in ("running", "done"):
            t.order = r
    for t in out.values():
        if t.order is not None and t.order.get("planned"):
            t.target = int(t.order["planned"])
        else:
            t.target = targets.get(t.device)
    return sorted(out.values(), key=lambda t: t.device)


# -- one machine ----------------------------------------------------------------------------
@dataclass(slots=True)
class Segment:
    start: int  # ms
    end: int
    state: str
    cat: str
    reason: str | None


def machine_queries(device: str, start_ms: int) -> tuple[str, ...]:
    d = literal(device)
    return (
        f'SELECT last("state") AS "state", "cat", "reason" FROM "edgegw/state" '
        f'WHERE "device" = {d} AND time < {start_ms}ms AND time > {start_ms}ms - '
        f'{STATE_LOOKBACK}',
        f'SELECT "state", "cat", "reason" FROM "edgegw/state" WHERE "device" = {d} '
        f"AND time >= {start_ms}ms",
        f'SELECT "parts", "cycle_mean", "shift_start", "availability", "oee" FROM '
        f'"edgegw/kpi" WHERE "device" = {d} AND time >= {start_ms}ms',
    )


def segments(before: list[Row], rows: list[Row], start_ms: int, now_ms: int) -> list[Segment]:
    """The state timeline of the window: the state at its start, then every change."""
    marks: list[tuple[int, str, str, str | None]] = []
    if before:
        r = before[0]
        marks.append((start_ms, str(r.get("state")), str(r.get("cat") or "unknown"),
                      r.get("reason")))
    else:
        marks.append((start_ms, "unknown", "unknown", None))
    for r in rows:
        marks.append((int(r["time"]), str(r.get("state")), str(r.get("cat") or "unknown"),
                      r.get("reason")))
    out: list[Segment] = []
    for i, (t, state, cat, reason) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else now_ms
        if end > t:
            out.append(Segment(t, end, state, cat, reason))
    return out


def stop_reasons(segs: list[Segment]) -> list[tuple[str, str, float]]:
    """(reason, category, seconds) of the stops (down and planned), longest first."""
    acc: dict[tuple[str, str], float] = defaultdict(float)
    for s in segs:
        if s.cat in ("down", "planned"):
            acc[(s.reason or s.state, s.cat)] += (s.end - s.start) / 1000
    return sorted(((r, c, v) for (r, c), v in acc.items()), key=lambda x: -x[2])


def time_per_category(segs: list[Segment]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in segs:
        out[s.cat] += (s.end - s.start) / 1000
    return dict(out)


def counts_per_hour(kpis: list[Row], start_ms: int, hours: int) -> list[int]:
    """Parts per hour of the window, from the KPI records' shift counts (a count drops
    back at a new shift: that record's count is the new shift's)."""
    out = [0] * hours
    prev: tuple[Any, int] | None = None
    for r in kpis:
        if r.get("parts") is None:
            continue
        shift, parts = r.get("shift_start"), int(r["parts"])
        delta = parts - prev[1] if prev is not None and prev[0] == shift else parts
        prev = (shift, parts)
        h = (int(r["time"]) - start_ms) // 3_600_000
        if 0 <= h < hours and delta > 0:
            out[h] += delta
    return out


def cycle_trend(kpis: list[Row]) -> list[tuple[int, float]]:
    return [(int(r["time"]), float(r["cycle_mean"])) for r in kpis
            if r.get("cycle_mean") is not None]


# -- orders --------------------------------------------------------------------------------------
ORDERS = (
    'SELECT last("status") AS "status", "order", "good", "parts", "scrap", "planned", '
    '"rate_h", "eta", "started", "product" FROM "edgegw/order" '
    f'WHERE time > now() - {STATE_LOOKBACK} GROUP BY "device"',
    'SELECT "status", "order", "good", "parts", "scrap", "planned", "rate_h", "started", '
    '"product" FROM "edgegw/order" WHERE ("status" = \'done\' OR "status" = \'closed\') '
    'AND time > now() - 7d GROUP BY "device"',
)


def order_rows(current: list[Row], finished: list[Row]) -> list[Row]:
    """Every order of the last week, newest state of each: running ones first."""
    by: dict[tuple[str, str], Row] = {}
    for r in [*finished, *current]:
        key = (r["device"], str(r.get("order")))
        if key not in by or int(r["time"]) >= int(by[key]["time"]):
            by[key] = r
    return sorted(by.values(), key=lambda r: (r.get("status") != "running", -int(r["time"])))


# -- product records (gateway/trace) ------------------------------------------------------------
#: the newest product records of every machine type
RECENT_TRACES = ('SELECT "code", "verdict", "interrupted" FROM /\\/trace$/ '
                 "ORDER BY time DESC LIMIT 30")


def trace_query(code: str) -> str:
    return f'SELECT * FROM /\\/trace$/ WHERE "code" = {literal(code)}'


def summarised(rec: Row) -> list[str]:
    """The points a record summarises (from its ``<point>_min`` fields)."""
    return sorted({k[: -len("_min")] for k in rec if k.endswith("_min")})


def curve_query(rec: Row, points: list[str]) -> str:
    """The raw samples of ``points`` over the record's window, from the machine's own
    measurement (``<vendor/model>``; the record's is ``<vendor/model>/trace``)."""
    meas = str(rec["_measurement"]).removesuffix("/trace")
    fields = ", ".join('"' + p.replace('"', '\\"') + '"' for p in points)
    return (f'SELECT {fields} FROM "{meas}" WHERE "device" = {literal(str(rec["device"]))} '
            f'AND time >= {int(rec["time"])}ms AND time <= {int(rec["end"])}ms')
