"""A test subscriber on a real broker: collects decoded messages in the background."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson

from gateway.profiles import default_profile_dirs
from gateway.wire.compact import PACK, Schemas, decode_pack, decode_record


def default_schemas() -> Schemas:
    s = Schemas()
    s.search = default_profile_dirs()
    return s


@dataclass
class Received:
    topic: str
    doc: dict[str, Any]
    at: float
    retain: bool
    raw: bytes = b""


@dataclass
class Subscriber:
    port: int
    topic: str = "edgegw/#"
    session: str | None = None  # a persistent session (survives broker restarts)
    messages: list[Received] = field(default_factory=list)
    #: compact packs as they arrived (their records are in messages too)
    packs: list[bytes] = field(default_factory=list)
    schemas: Schemas = field(default_factory=default_schemas)
    username: str | None = None
    password: str | None = None
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError:
                if self.session is None:
                    raise
                await asyncio.sleep(0.1)  # the broker restarts: come back to the session

    async def _session(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.session,
                                  clean_session=self.session is None,
                                  username=self.username, password=self.password) as client:
            await client.subscribe(self.topic, qos=1)
            self._ready.set()
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else b"{}"
                topic = str(m.topic)
                if payload[:2] == PACK:  # compact: one message per record, as if JSON
                    self.packs.append(payload)
                    prefix, gw = topic.rsplit("/", 2)[:2]
                    for rec in decode_pack(payload):
                        doc = decode_record(rec, gw, self.schemas)
                        self.messages.append(Received(f"{prefix}/{gw}/{doc['dev']}/data", doc,
                                                      time.monotonic(), m.retain, rec))
                    continue
                self.messages.append(
                    Received(topic, orjson.loads(payload), time.monotonic(), m.retain,
                             payload)
                )

    def data(self, device: str | None = None) -> list[dict[str, Any]]:
        return [m.doc for m in self.messages if m.topic.endswith("/data")
                and (device is None or m.doc["dev"] == device)]

    def production(self, device: str | None = None) -> list[dict[str, Any]]:
        """The production records (state intervals, KPIs, orders: docs/production.md)."""
        return [m.doc for m in self.messages if m.topic.endswith("/production")
                and (device is None or m.doc["dev"] == device)]

    def status(self) -> list[dict[str, Any]]:
        return [m.doc for m in self.messages if m.topic.endswith("/status")]

    async def wait_for(self, pred: Any, timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
            await asyncio.sleep(0.02)
