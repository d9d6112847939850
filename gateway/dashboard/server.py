"""``edgegw dashboard -c ingest.yaml``: the factory's production dashboard, read-only,
served by the backend from InfluxDB.

A process of its own rather than part of the ingest: the ingest's job is to write every
message exactly once at full speed, and a page render, a slow query or a crash of the
dashboard must never hold it back; the two also scale apart (one ingest per broker
share group, one dashboard per plant network) and the dashboard needs only read access
to the database.

HTTP/1.1, GET and HEAD only, one request per connection, request head at most 8 KiB
within 5 s, at most 32 connections at once. Authentication (HTTP Basic with a configured
user, or a bearer token; a TV can open ``/?token=...`` once and keeps a cookie) is
required beyond loopback; HTTPS when a certificate is given.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import ssl
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.dashboard import data, pages
from gateway.dashboard.config import DashboardConfig
from gateway.influx.sinkconfig import InfluxV1, InfluxV2

log = logging.getLogger("edgegw.dashboard")

MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 32
COOKIE = "edgegw_dashboard"
Answer = tuple[int, str, str, dict[str, str]]  # status, content type, body, extra headers
REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _secret(p: Path | None) -> str | None:
    return p.read_text(encoding="utf-8").strip() if p is not None else None


class Dashboard:
    def __init__(self, cfg: DashboardConfig, sink: InfluxV1 | InfluxV2) -> None:
        """``cfg`` and ``sink`` with absolute paths (as ``load_ingest_config`` gives
        them)."""
        self.cfg = cfg
        self.db = data.Influx(sink)
        self.tz = ZoneInfo(cfg.timezone)
        self.password = _secret(cfg.password_file)
        self.token = _secret(cfg.token_file)
        self.ssl: ssl.SSLContext | None = None
        if cfg.tls is not None:
            self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl.load_cert_chain(cfg.tls.cert_file, cfg.tls.key_file)
        self.host, self.port = cfg.host, cfg.port
        self._server: asyncio.Server | None = None
        self.active = 0
        self.requests = 0

    # -- serving ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl else "http"
        log.info("dashboard on %s://%s:%d/ (%s)", scheme, self.host, self.port,
                 "authentication required" if self.password or self.token else "loopback, "
                 "no authentication")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CONNECTIONS:
            writer.close()
            return
        self.active += 1
        try:
            await self._serve(reader, writer)
        finally:
            self.active -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            if len(head) > MAX_REQUEST:
                raise ValueError("request too large")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for h in lines[1:]:
                if ":" in h:
                    k, v = h.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if method not in ("GET", "HEAD"):
                answer: Answer = (405, "text/plain", "read-only: GET only\n", {})
            else:
                self.requests += 1
                answer = await self.handle(target, headers)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError, UnicodeDecodeError):
            answer = (400, "text/plain", "bad request\n", {})
        except (ConnectionError, ssl.SSLError):
            return
        code, ctype, body, extra = answer
        raw = body.encode("utf-8")
        hdrs = {"Content-Type": f"{ctype}; charset=utf-8", "Content-Length": str(len(raw)),
                "Cache-Control": "no-store", "Connection": "close",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                "img-src 'self'; form-action 'none'; frame-ancestors 'none'", **extra}
        out = f"HTTP/1.1 {code} {REASONS[code]}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        try:
            writer.write(out.encode("latin-1") + (raw if method != "HEAD" else b""))
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    # -- authentication ----------------------------------------------------------------------------
    def _authorised(self, headers: dict[str, str], query: dict[str, str]) -> bool | str:
        """True, False, or the token to set as a cookie (it came in the URL)."""
        if self.password is None and self.token is None:
            return True
        auth = headers.get("authorization", "")
        if self.password is not None and auth.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user.encode(), (self.cfg.username or "").encode()) \
                and hmac.compare_digest(pw.encode(), self.password.encode())
        if self.token is not None:
            if auth.lower().startswith("bearer ") and \
                    hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
                return True
            for part in headers.get("cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE and hmac.compare_digest(v.encode(), self.token.encode()):
                    return True
            given = query.get("token")
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                return given
        return False

    async def handle(self, target: str, headers: dict[str, str]) -> Answer:
        url = urllib.parse.urlsplit(target)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        ok = self._authorised(headers, query)
        if ok is False:
            extra = {"WWW-Authenticate": 'Basic realm="edgegw dashboard", charset="UTF-8"'} \
                if self.password is not None else {}
            return 401, "text/plain", "authentication required\n", extra
        if isinstance(ok, str):  # a token in the URL: keep it in a cookie, drop it from the URL
            secure = "; Secure" if self.ssl else ""
            return 302, "text/plain", "", {
                "Location": url.path or "/",
                "Set-Cookie": f"{COOKIE}={ok}; HttpOnly; SameSite=Strict; Path=/{secure}"}
        if url.path == "/healthz":
            return 200, "text/plain", "ok\n", {}
        route = {"/": self.overview, "/machine": self.machine, "/orders": self.orders,
                 "/trace": self.trace}.get(url.path)
        if route is None:
            return 404, "text/plain", "not found\n", {}
        try:
            code, body = await route(query)
        except data.QueryError as exc:
            log.warning("dashboard: %s", exc)
            return 503, "text/html", pages.error_page(self.cfg.title, str(exc),
                                                      self.cfg.refresh), {}
        return code, "text/html", body, {}

    # -- pages -------------------------------------------------------------------------------------
    async def overview(self, query: dict[str, str]) -> tuple[int, str]:
        states, kpis, orders = await asyncio.to_thread(self.db.query, *data.OVERVIEW)
        now = int(time.time() * 1000)
        ts = data.tiles(states, kpis, orders, now, self.cfg.targets)
        return 200, pages.overview(self.cfg.title, ts, self.tz, now, self.cfg.refresh)

    def _day_start(self, now: float) -> int:
        local = datetime.fromtimestamp(now, self.tz)
        midnight = datetime.combine(local.date(), datetime.min.time(), self.tz)
        if now - midnight.timestamp() < 3600:  # just after midnight: show the last 24 h
            midnight -= timedelta(days=1)
        return int(midnight.timestamp() * 1000)

    async def machine(self, query: dict[str, str]) -> tuple[int, str]:
        device = query.get("id", "")
        now = time.time()
        now_ms = int(now * 1000)
        start = self._day_start(now)
        known, before, rows, kpis = await asyncio.to_thread(
            self.db.query, data.OVERVIEW[0], *data.machine_queries(device, start))
        if device not in {r["device"] for r in known}:
            return 404, pages.error_page(self.cfg.title, f"no machine {device!r}",
                                         self.cfg.refresh)
        segs = data.segments(before, rows, start, now_ms)
        hours = max(1, -(-(now_ms - start) // 3_600_000))
        return 200, pages.machine(
            self.cfg.title, device, segs, data.stop_reasons(segs), data.time_per_category(segs),
            data.counts_per_hour(kpis, start, hours), data.cycle_trend(kpis),
            kpis[-1] if kpis else None, start, now_ms, self.tz, self.cfg.refresh)

    async def orders(self, query: dict[str, str]) -> tuple[int, str]:
        current, finished = await asyncio.to_thread(self.db.query, *data.ORDERS)
        return 200, pages.orders(self.cfg.title, data.order_rows(current, finished), self.tz,
                                 self.cfg.refresh)

    async def trace(self, query: dict[str, str]) -> tuple[int, str]:
        """``/trace``: the newest product records; ``/trace?code=``: one product's record
        with the process curves of its window."""
        code = query.get("code", "").strip()
        if not code:
            [recent] = await asyncio.to_thread(self.db.query, data.RECENT_TRACES)
            return 200, pages.traces(self.cfg.title, recent, self.tz, self.cfg.refresh)
        [found] = await asyncio.to_thread(self.db.query, data.trace_query(code))
        if not found:
            return 404, pages.error_page(self.cfg.title, f"no record of {code!r}",
                                         self.cfg.refresh)
        rec = max(found, key=lambda r: r["time"])
        points = data.summarised(rec)
        curves: dict[str, list[tuple[int, float]]] = {p: [] for p in points}
        if points:
            [samples] = await asyncio.to_thread(self.db.query, data.curve_query(rec, points))
            for r in samples:
                for p in points:
                    v = r.get(p)
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        curves[p].append((int(r["time"]), float(v)))
        return 200, pages.trace(self.cfg.title, rec, curves, self.tz)
