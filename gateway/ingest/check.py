"""``edgegw ingest --check``: the config is valid, the broker takes our CONNECT and our
subscriptions, the database answers. Each is reported on a line of its own.

The broker is tried with the client id ``<client_id>-check`` and a clean session, so a
running ingest keeps its session (the same id would take it over).
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from gateway.common import nearest_existing
from gateway.influx.sinkconfig import InfluxV1, InfluxV2
from gateway.ingest.config import LoadedIngest
from gateway.ingest.connack import UNSUPPORTED_PROTOCOL, code_of, meaning
from gateway.ingest.service import IngestService, _tls


@dataclass(frozen=True, slots=True)
class Finding:
    what: str  # "broker 127.0.0.1:1883"
    ok: bool
    detail: str


async def check(loaded: LoadedIngest) -> list[Finding]:
    return [await _broker(loaded), await asyncio.to_thread(_database, loaded.config.sink),
            _writable(loaded.dead_letter)]


def _writable(path: Path) -> Finding:
    """The dead-letter file can be written (the shipped unit's /etc/edgegw cannot)."""
    what = f"dead-letter file {path}"
    where = nearest_existing(path)  # the file, or the folder it is created in at start
    if os.access(where, os.W_OK):
        return Finding(what, True, "writable")
    return Finding(what, False, f"{where} is not writable by this user: set dead_letter to "
                   "a writable place (default: the systemd state directory)")


async def _broker(loaded: LoadedIngest) -> Finding:
    m = loaded.config.mqtt
    host, port = m.endpoints()[0]  # a cluster: its first node
    what = f"broker {host}:{port}"
    versions = {"auto": ["5", "3.1.1"], "5": ["5"], "3.1.1": ["3.1.1"]}[m.protocol]
    topics = IngestService(loaded).topics
    note = ""
    for version in versions:
        proto = aiomqtt.ProtocolVersion.V5 if version == "5" else aiomqtt.ProtocolVersion.V311
        try:
            async with aiomqtt.Client(
                    host, port, identifier=f"{m.client_id or 'edgegw-ingest'}-check",
                    username=m.username, password=m.password(), protocol=proto,
                    timeout=10, tls_context=_tls(m)) as client:
                refused = []
                for topic in topics:
                    granted = await client.subscribe(topic, qos=1)
                    codes = [getattr(g, "value", g) for g in granted or []]
                    if any(not isinstance(c, int) or c >= 0x80 for c in codes):
                        refused.append(topic)
            if refused:
                return Finding(what, False, f"MQTT {version}: the broker refuses the "
                               f"subscription(s) {', '.join(refused)} (its ACL?)")
            if version == "3.1.1" and m.share_group:
                return Finding(what, False, "speaks MQTT 3.1.1 only; mqtt.share_group needs v5")
            return Finding(what, True, f"MQTT {version}{note}; subscribed to "
                           f"{', '.join(topics)}")
        except MqttConnectError as exc:
            if code_of(exc.rc) == UNSUPPORTED_PROTOCOL and version != versions[-1]:
                note = " (the broker does not speak v5)"
                continue
            return Finding(what, False, f"refused (MQTT {version}): {meaning(exc.rc)[0]}")
        except aiomqtt.MqttError as exc:
            if version != versions[-1]:  # no answer to v5 at all: try 3.1.1 too
                note = f" (a v5 CONNECT got no answer: {exc})"
                continue
            return Finding(what, False, f"cannot connect: {exc}")
    return Finding(what, False, "no MQTT version the broker accepts")  # pragma: no cover


def _database(sink: InfluxV1 | InfluxV2) -> Finding:
    what = f"database {sink.kind} {sink.url}"
    if isinstance(sink, InfluxV1):
        return _influx_v1(what, sink)
    return _influx_v2(what, sink)


def _get(url: str, timeout: float, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _influx_v1(what: str, sink: InfluxV1) -> Finding:
    base = sink.url.rstrip("/")
    headers = sink.auth_headers()
    try:
        status, hdrs, _ = _get(f"{base}/ping", sink.timeout, headers)
        if status not in (200, 204):
            return Finding(what, False, f"/ping answered HTTP {status}")
        version = hdrs.get("X-Influxdb-Version", "?")
        q = urllib.parse.urlencode({"q": "SHOW DATABASES"})
        status, _, body = _get(f"{base}/query?{q}", sink.timeout, headers)
    except (urllib.error.URLError, OSError) as exc:
        return Finding(what, False, f"cannot connect: {getattr(exc, 'reason', exc)}")
    if status in (401, 403):
        return Finding(what, False, f"HTTP {status}: the user name or password is refused")
    names: list[str] = []
    try:
        for series in json.loads(body)["results"][0].get("series", []):
            names += [v[0] for v in series.get("values", [])]
    except (ValueError, KeyError, IndexError, TypeError):
        return Finding(what, True, f"InfluxDB {version} answers (databases not listed)")
    if sink.database in names:
        return Finding(what, True, f"InfluxDB {version}; database {sink.database!r} exists")
    if sink.create_database:
        return Finding(what, True, f"InfluxDB {version}; database {sink.database!r} will be "
                       "created at the first write")
    return Finding(what, False, f"InfluxDB {version}: no database {sink.database!r} and "
                   "create_database is off")


def _influx_v2(what: str, sink: InfluxV2) -> Finding:
    base = sink.url.rstrip("/")
    try:
        status, hdrs, _ = _get(f"{base}/ping", sink.timeout)
    except (urllib.error.URLError, OSError) as exc:
        return Finding(what, False, f"cannot connect: {getattr(exc, 'reason', exc)}")
    if status not in (200, 204):
        return Finding(what, False, f"/ping answered HTTP {status}")
    version = hdrs.get("X-Influxdb-Version") or hdrs.get("X-Influxdb-Build") or "v2 write API"
    return Finding(what, True, f"answers ({version}); bucket {sink.org}/{sink.bucket} is "
                   "checked at the first write")
