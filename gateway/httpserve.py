"""A small HTTP/1.1 endpoint for monitoring (GET and HEAD only, one request per
connection) and the Prometheus text format, shared by the gateway's health endpoint and
the ingest's.

Bounded: a request line and headers of at most 8 KiB read within 5 s (else 400), at most
MAX_CONNECTIONS served at once (the oldest one still waiting for its request is closed
to make room, so idle connections never lock a probe out; counted, logged once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("edgegw.health")

MAX_REQUEST = 8192
#: connections served at once; beyond it the oldest idle one is closed (a flood of idle
#: connections must not use up the file descriptors the devices and spool need)
MAX_CONNECTIONS = 32
#: seconds a client has to send its request
REQUEST_TIMEOUT = 5.0

Route = Callable[[], tuple[int, str, str]]  # -> (status, content type, body)


class HttpEndpoint:
    def __init__(self, host: str, port: int, routes: dict[str, Route], name: str) -> None:
        self.host = host
        self.port = port
        self.name = name
        self._server: asyncio.Server | None = None
        self.requests: dict[str, int] = {}  # path -> answered GETs (known paths)
        self.active = 0  # connections being served
        self.refused = 0  # idle connections closed to make room (MAX_CONNECTIONS)
        self._waiting: dict[asyncio.StreamWriter, None] = {}  # no request yet, oldest first
        self.routes = routes

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("%s on http://%s:%d/ (%s)", self.name, self.host, self.port,
                 ", ".join(p for p in self.routes if p != "/"))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CONNECTIONS and self._waiting:
            # full: the oldest connection still waiting for its request makes room, so
            # idle connections never lock a monitoring probe out
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.close()
            self.refused += 1
            if self.refused == 1 or self.refused % 10_000 == 0:
                log.warning("%s: %d connections at once; closing the oldest idle ones "
                            "(%d so far)", self.name, MAX_CONNECTIONS, self.refused)
        self.active += 1
        self._waiting[writer] = None
        try:
            await self._serve(reader, writer)
        finally:
            self.active -= 1
            self._waiting.pop(writer, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            self._waiting.pop(writer, None)
            if len(head) > MAX_REQUEST:
                raise ValueError("request too large")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("ascii").split(" ", 2)
            path = path.split("?", 1)[0]
            route = self.routes.get(path)
            if method not in ("GET", "HEAD"):
                code, ctype, body = 405, "text/plain", "only GET\n"
            elif route is None:
                code, ctype, body = 404, "text/plain", "not found\n"
            else:
                self.requests[path] = self.requests.get(path, 0) + 1
                code, ctype, body = route()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError, UnicodeDecodeError):
            code, ctype, body = 400, "text/plain", "bad request\n"
            method = "GET"
        except ConnectionError:
            return
        if writer.is_closing():  # closed to make room for a newer connection
            return
        data = body.encode("utf-8")
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[code]
        head_out = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}; charset=utf-8\r\n"
                    f"Content-Length: {len(data)}\r\nCache-Control: no-store\r\n"
                    "Connection: close\r\n\r\n").encode("ascii")
        try:
            writer.write(head_out + (data if method != "HEAD" else b""))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


Sample = tuple[dict[str, str], float]  # (labels, value)


@dataclass(frozen=True, slots=True)
class Family:
    """One Prometheus metric family: ``edgegw_<name>`` with its samples."""

    name: str
    kind: str  # gauge, counter
    help: str
    samples: list[Sample]


class Metrics:
    """Prometheus text format: ``metric(...)`` per family, then ``text()``."""

    def __init__(self, prefix: str = "edgegw_") -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def __call__(self, name: str, kind: str, help_: str,
                 samples: list[Sample]) -> None:
        full = self.prefix + name
        self.lines.append(f"# HELP {full} {help_}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{label(v)}"' for k, v in labels.items())
            self.lines.append(f"{full}{{{lab}}} {value}" if lab else f"{full} {value}")

    def add(self, families: Iterable[Family]) -> None:
        for f in families:
            self(f.name, f.kind, f.help, f.samples)

    def text(self) -> tuple[int, str, str]:
        return 200, "text/plain; version=0.0.4", "\n".join(self.lines) + "\n"


def label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
