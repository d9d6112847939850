"""edgegw payload (JSON v1) -> InfluxDB line protocol. The schema is in docs/influxdb.md.

One measurement per device profile (``acme/cnc-vmc850``): a profile fixes its points'
names and types, so a field never changes type inside a measurement, while the same
point name in two profiles (``temp`` as int here, float there) cannot conflict. Tags
are bounded sets only: ``gateway``, ``device``, ``profile_version``, and ``id_<kind>``
for the identifier kinds in ``id_tags`` (default ``device``: one code per device). Every
other identifier code (a product's, a batch's: unbounded, one per part) is a string
field ``id_<kind>``, so that InfluxDB's series and ``max-values-per-tag`` limits are
never reached, and a tag value that line protocol cannot carry (a trailing backslash, a
newline) is written as a field too. Names (measurement, tag and field keys) with a
newline or other control character, which line protocol cannot carry at all, make the
whole message a PayloadError: all of its lines or none.
Fields: one per reported point (int ``i``, float, bool, string; an array one per
element, ``name[0]``, ``name[1]``, ...), ``state`` (string) and
``err`` (offline reason). Bad points are not written as values; each becomes a line in
measurement ``edgegw_quality`` (tags gateway, device, point; field ``reason``).
Timestamps: the gateway's read time, milliseconds.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import DataError

QUALITY_MEASUREMENT = "edgegw_quality"
#: identifier kinds written as tags by default: bounded (one code per device)
ID_TAGS: frozenset[str] = frozenset({"device"})


class PayloadError(DataError):
    """A payload that cannot be turned into points (goes to the dead-letter file)."""


def _control(s: str) -> bool:
    return any(c < " " or c == "\x7f" for c in s)


def _carried(s: str) -> bool:
    """True when line protocol (InfluxDB 1.x, which does not unescape a doubled
    backslash in names and tag values) can carry ``s`` as a name or tag value exactly:
    not empty, no control character, no backslash at the end or before ``,``, ``=``,
    a space."""
    if not s or _control(s) or s.endswith("\\"):
        return False
    return not ("\\," in s or "\\=" in s or "\\ " in s)


def _writable(s: str, what: str) -> str:
    """``s`` when line protocol can carry it as a name; else PayloadError."""
    if not _carried(s):
        raise PayloadError(f"{what} {s[:80]!r} cannot be written to InfluxDB: empty, a "
                           "control character (newline), or a backslash at the end or "
                           "before ',', '=', ' '")
    return s


def _name(s: str, what: str) -> str:
    """A tag key, tag value or field key, escaped; PayloadError when it cannot be
    written."""
    return _writable(s, what).replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _esc_meas(s: str) -> str:
    return _writable(s, "measurement").replace(",", "\\,").replace(" ", "\\ ")


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


def batch_lines(doc: dict[str, Any], id_tags: frozenset[str] = ID_TAGS) -> list[str]:  # noqa: C901 - the hot path: one payload's checks in order, each with its own message
    """Lines for one decoded v1 data payload, all of them or (PayloadError, when
    malformed or not writable) none."""
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
    meas = _esc_meas(name)
    source = f"gateway={_name(gw, 'gateway')},device={_name(dev, 'device')}"
    tags = "," + source
    if version:
        tags += f",profile_version={_name(version, 'profile version')}"
    ids = doc.get("ids") or {}
    if not isinstance(ids, dict):
        raise PayloadError("ids must be an object")
    fields = []
    for kind in sorted(ids):
        code = ids[kind]
        if not isinstance(code, str):
            raise PayloadError(f"ids.{str(kind)[:40]} must be a string")
        key = _name(f"id_{kind}", "identifier kind")
        if kind in id_tags and _carried(code):
            tags += f",{key}={_name(code, key)}"
        else:  # unbounded (one per product), or not a valid tag value: a field
            fields.append(f"{key}={_field(code)}")
    st = doc.get("st") or {}
    if not isinstance(st, dict):
        raise PayloadError("st must be an object")
    own: dict[int, list[str]] = {}  # points with their own source timestamp
    for k, v in points.items():
        if isinstance(v, list):  # an array: one field per element, name[i]
            key = _name(k, "point")
            these = [f"{key}[{i}]={f}" for i, x in enumerate(v)
                     if (f := _field(x)) is not None]
        else:
            f = _field(v)
            these = [f"{_name(k, 'point')}={f}"] if f is not None else []
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
        lines.append(f"{meas}{tags} {','.join(fields)} {ts}")
    for t, tfields in own.items():
        lines.append(f"{meas}{tags} {','.join(tfields)} {t}")
    q = doc.get("q") or {}
    if not isinstance(q, dict):
        raise PayloadError("q must be an object")
    base = f"{QUALITY_MEASUREMENT},{source}"
    for point, qr in q.items():
        reason = qr[1] if isinstance(qr, list) and len(qr) == 2 else str(qr)
        lines.append(f"{base},point={_name(point, 'point')} reason={_field(str(reason))} {ts}")
    return lines
