"""edgegw payload (JSON v1) -> InfluxDB line protocol. The schema is in docs/influxdb.md.

One measurement per device profile (``acme/cnc-vmc850``): a profile fixes its points'
names and types, so a field never changes type inside a measurement, while the same
point name in two profiles (``temp`` as int here, float there) cannot conflict. Tags:
``gateway``, ``device``, ``profile_version``, and ``id_<kind>`` per identifier code.
Fields: one per reported point (int ``i``, float, bool, string; an array one per
element, ``name[0]``, ``name[1]``, ...), ``state`` (string) and
``err`` (offline reason). Bad points are not written as values; each becomes a line in
measurement ``edgegw_quality`` (tags gateway, device, point; field ``reason``).
Timestamps: the gateway's read time, milliseconds.
"""

from __future__ import annotations

import math
from typing import Any

QUALITY_MEASUREMENT = "edgegw_quality"


class PayloadError(ValueError):
    """A payload that cannot be turned into points (goes to the dead-letter file)."""


def _esc_key(s: str) -> str:  # measurement, tag keys/values, field keys
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _esc_meas(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _field(v: Any) -> str | None:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if v is None:
        return None
    if isinstance(v, list):
        raise PayloadError("an array inside an array")
    raise PayloadError(f"unsupported value type {type(v).__name__}")


def batch_lines(doc: dict[str, Any]) -> list[str]:
    """Lines for one decoded v1 data payload; raises PayloadError when malformed."""
    try:
        gw, dev, prof, ts = doc["gw"], doc["dev"], doc["prof"], doc["ts"]
        points = doc["p"]
    except KeyError as exc:
        raise PayloadError(f"missing field {exc.args[0]!r}") from None
    if not (isinstance(gw, str) and isinstance(dev, str) and isinstance(prof, str)):
        raise PayloadError("gw, dev and prof must be strings")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
        raise PayloadError("ts must be a positive integer (ms)")
    if not isinstance(points, dict):
        raise PayloadError("p must be an object")
    name, _, version = prof.partition("@")
    tags = f",gateway={_esc_key(gw)},device={_esc_key(dev)}"
    if version:
        tags += f",profile_version={_esc_key(version)}"
    ids = doc.get("ids") or {}
    if not isinstance(ids, dict):
        raise PayloadError("ids must be an object")
    for kind in sorted(ids):
        tags += f",id_{_esc_key(str(kind))}={_esc_key(str(ids[kind]))}"
    st = doc.get("st") or {}
    if not isinstance(st, dict):
        raise PayloadError("st must be an object")
    fields = []
    own: dict[int, list[str]] = {}  # points with their own source timestamp
    for k, v in points.items():
        if isinstance(v, list):  # an array: one field per element, name[i]
            these = [f"{_esc_key(k)}[{i}]={f}" for i, x in enumerate(v)
                     if (f := _field(x)) is not None]
        else:
            f = _field(v)
            these = [f"{_esc_key(k)}={f}"] if f is not None else []
        if not these:
            continue
        t = st.get(k)
        if t is None:
            fields += these
        elif isinstance(t, int) and not isinstance(t, bool) and t > 0:
            own.setdefault(t, []).extend(these)
        else:
            raise PayloadError(f"st.{k} must be a positive integer (ms)")
    if isinstance(doc.get("state"), str):
        fields.append(f"state={_field(doc['state'])}")
    if isinstance(doc.get("err"), str):
        fields.append(f"err={_field(doc['err'])}")
    lines = []
    if fields:
        lines.append(f"{_esc_meas(name)}{tags} {','.join(fields)} {ts}")
    for t, tfields in own.items():
        lines.append(f"{_esc_meas(name)}{tags} {','.join(tfields)} {t}")
    q = doc.get("q") or {}
    if not isinstance(q, dict):
        raise PayloadError("q must be an object")
    base = f"{QUALITY_MEASUREMENT},gateway={_esc_key(gw)},device={_esc_key(dev)}"
    for point, qr in q.items():
        reason = qr[1] if isinstance(qr, list) and len(qr) == 2 else str(qr)
        lines.append(f"{base},point={_esc_key(point)} reason={_field(str(reason))} {ts}")
    return lines
