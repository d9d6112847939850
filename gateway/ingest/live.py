"""``edgegw live``: a table of machine states and key values per device, read back from
InfluxDB 1.x with InfluxQL every second (what the demo shows)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from gateway.errors import ConfigError
from gateway.profiles import default_profile_dirs, load_profile

KEYS_PER_DEVICE = 4


def _query(url: str, db: str, q: str) -> list[dict[str, Any]]:
    full = f"{url.rstrip('/')}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"})
    with urllib.request.urlopen(full, timeout=5) as r:
        res = json.loads(r.read())["results"][0]
    return list(res.get("series", []))


def key_points(measurement: str) -> list[str]:
    """A few numeric points with units from the device's profile (first ones listed)."""
    try:
        prof = load_profile(measurement, default_profile_dirs())
    except ConfigError:
        return []
    return [p.name for p in prof.points  # measured values, not setpoints
            if p.unit and p.access == "r" and p.type not in ("string", "bool")
            ][:KEYS_PER_DEVICE]


def snapshot(url: str, db: str) -> list[tuple[str, str, int, list[str]]]:
    """(device, state, age of the newest sample in ms, ["name=value unit", ...])."""
    rows = []
    now = int(time.time() * 1000)
    for m in _query(url, db, "SHOW MEASUREMENTS"):
        for (name,) in m.get("values", []):
            if name == "edgegw_quality" or name.startswith("edgegw/") or \
                    name.endswith("/trace"):
                continue  # quality lines, production and product records
            keys = key_points(name)
            # one selector alone reports the time of its point: the newest sample's age
            states = {s["tags"]["device"]: s["values"][0] for s in _query(
                url, db, f'SELECT last("state") FROM "{name}" WHERE time > now() - 5m '
                         "GROUP BY device")}
            values: dict[str, dict[str, Any]] = {}
            if keys:
                fields = ", ".join(f'last("{k}") AS "{k}"' for k in keys)
                for s in _query(url, db, f'SELECT {fields} FROM "{name}" WHERE '
                                         "time > now() - 5m GROUP BY device"):
                    values[s["tags"]["device"]] = dict(zip(s["columns"], s["values"][0],
                                                           strict=True))
            for dev, (ts, state) in states.items():
                rec = values.get(dev, {})
                shown = [f"{k}={_fmt(rec.get(k))}" for k in keys if rec.get(k) is not None]
                rows.append((dev, str(state or "-"), now - int(ts), shown))
    return sorted(rows)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def live(url: str, db: str, out: TextIO, count: int = 0, interval: float = 1.0,
         note: str = "") -> None:
    """Print the table every ``interval`` s (``note``: a line above it, e.g. the
    dashboard's address)."""
    n = 0
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    while True:
        try:
            rows = snapshot(url, db)
            text = [f"{clear}InfluxDB {url} database {db}: {len(rows)} device(s), "
                    f"{time.strftime('%H:%M:%S')}", *([note] if note else []),
                    f"{'device':24} {'state':12} {'age':>7}  key values"]
            text += [f"{d:24} {st:12} {age / 1000:6.1f}s  {'  '.join(vals)}"
                     for d, st, age, vals in rows]
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            text = [f"InfluxDB {url}: {exc}"]
        print("\n".join(text), file=out, flush=True)
        n += 1
        if count and n >= count:
            return
        time.sleep(interval)
