"""Write line protocol to InfluxDB: 1.x ``/write`` (HTTP) or the 2.x/3.x write API
(``influxdb-client``). Both run their blocking HTTP call in a worker thread, one batch at
a time, and map answers to three outcomes the service acts on:

- success (2xx): the batch is in the database;
- :class:`Rejected` (400, 413 handled by splitting): the data is bad, retrying cannot help;
- :class:`Retry` (401/403, 429, 5xx, timeouts, refused connections): try again later,
  honouring ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from gateway.errors import SinkError
from gateway.influx.sinkconfig import InfluxV1, InfluxV2


class Rejected(SinkError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TooLarge(SinkError):
    pass


class Retry(SinkError):
    def __init__(self, reason: str, after: float | None = None) -> None:
        self.reason = reason
        self.after = after
        super().__init__(reason)


class Sink(Protocol):
    async def write(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _classify(status: int, text: str, retry_after: str | None) -> Exception:
    if status == 413:
        return TooLarge(text)
    if status in {400, 422}:
        return Rejected(f"HTTP {status}: {text[:500]}")
    return Retry(f"HTTP {status}: {text[:200]}", _retry_after(retry_after))


class InfluxV1Sink:
    def __init__(self, cfg: InfluxV1) -> None:
        self.cfg = cfg
        q = {"db": cfg.database, "precision": "ms"}
        if cfg.retention_policy:
            q["rp"] = cfg.retention_policy
        self._url = f"{cfg.url.rstrip('/')}/write?{urllib.parse.urlencode(q)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8", **cfg.auth_headers()}
        self._created = not cfg.create_database

    def _post(self, url: str, body: bytes, content_type: str = "text/plain; charset=utf-8"
              ) -> None:
        headers = {**self._headers, "Content-Type": content_type}
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout) as r:
                r.read()  # the whole answer: influxd may cancel a statement whose
                return    # connection closes before it is written (CREATE DATABASE)
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            raise _classify(exc.code, text, exc.headers.get("Retry-After")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Retry(f"{self.cfg.url}: {getattr(exc, 'reason', exc)}") from None

    def _write(self, body: bytes) -> None:
        if not self._created:
            q = urllib.parse.urlencode({"q": f'CREATE DATABASE "{self.cfg.database}"'})
            try:
                self._post(f"{self.cfg.url.rstrip('/')}/query", q.encode(),
                           "application/x-www-form-urlencoded")
            except (Rejected, TooLarge) as exc:  # never blame the data for this
                raise Retry(f"cannot create database {self.cfg.database!r}: {exc}") from None
            self._created = True
        try:
            self._post(self._url, body)
        except Retry as exc:
            if self.cfg.create_database and "database not found" in str(exc):
                self._created = False  # dropped, or a server restored empty: again
            raise

    async def write(self, body: bytes) -> None:
        await asyncio.to_thread(self._write, body)

    async def close(self) -> None:
        return None


class InfluxV2Sink:
    """The InfluxDB 2.x/3.x write API through influxdb-client, synchronous writes only
    (its batching WriteApi can lose buffered points on close; our batches are ours)."""

    def __init__(self, cfg: InfluxV2) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.cfg = cfg
        self._client = InfluxDBClient(url=cfg.url, token=cfg.token(), org=cfg.org,
                                      timeout=int(cfg.timeout * 1000))
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def _write(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=body,
                            write_precision=WritePrecision.MS)  # type: ignore[arg-type]
        except ApiException as exc:
            text = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else \
                str(exc.body or exc.reason)
            headers: dict[str, str] = dict(exc.headers or {})
            raise _classify(int(exc.status or 0), text, headers.get("Retry-After")) from None
        except (HTTPError, OSError) as exc:
            raise Retry(f"{self.cfg.url}: {exc}") from None

    async def write(self, body: bytes) -> None:
        await asyncio.to_thread(self._write, body)

    async def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def make_sink(cfg: InfluxV1 | InfluxV2) -> Sink:
    return InfluxV1Sink(cfg) if isinstance(cfg, InfluxV1) else InfluxV2Sink(cfg)


def describe(cfg: InfluxV1 | InfluxV2) -> str:
    where = cfg.database if isinstance(cfg, InfluxV1) else f"{cfg.org}/{cfg.bucket}"
    return json.dumps({"kind": cfg.kind, "url": cfg.url, "target": where})
