"""A TCP proxy for fault tests: adds latency and cuts connections on demand."""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, upstream_port: int, delay: float = 0.0, rate: float = 0.0) -> None:
        """``rate``: bytes per second in each direction (0 = unlimited), like a narrow
        link: data is forwarded in chunks of at most 512 bytes, each after its
        transmission time."""
        self.upstream_port = upstream_port
        self.delay = delay
        self.rate = rate
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()

    def cut(self) -> None:
        """Close every proxied connection now, mid-stream."""
        self.cuts += 1
        for w in list(self._writers):
            w.transport.abort()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(512 if self.rate else 65536):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    if self.rate:
                        await asyncio.sleep(len(data) / self.rate)
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))
        self._writers -= {writer, up_w}
