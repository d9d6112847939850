"""Write items (messages, store entries) that each carry lines, until the database has
them: retry with backoff on :class:`Retry` (Retry-After honoured), split on 413, bisect
on 400 so that only the bad item(s) are rejected. Used by the ingest service and the
gateway's direct InfluxDB route."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gateway.backoff import Backoff
from gateway.common import Backoff as BackoffConfig
from gateway.influx.sinks import Rejected, Retry, Sink, TooLarge

log = logging.getLogger("edgegw.ingest")

T = TypeVar("T")


class BatchWriter(Generic[T]):
    def __init__(self, sink: Sink, retry: BackoffConfig, lines: Callable[[T], list[str]],
                 written: Callable[[Sequence[T]], None],
                 rejected: Callable[[T, str], None],
                 on_retry: Callable[[], None] | None = None) -> None:
        self.sink = sink
        self.retry = retry
        self._lines = lines
        self._written = written
        self._rejected = rejected
        self._on_retry = on_retry
        self.retries = 0
        self.writes = 0

    async def write(self, items: Sequence[T]) -> None:
        """Return once every item is written or rejected (retries while the database is
        unavailable, for as long as it takes)."""
        backoff = Backoff(self.retry.initial, self.retry.max, self.retry.jitter)
        while True:
            try:
                await self._split(items)
                return
            except Retry as exc:
                self.retries += 1
                if self._on_retry is not None:
                    self._on_retry()
                delay = exc.after if exc.after is not None else backoff.next()
                if self.retries == 1 or self.retries % 20 == 0:
                    log.warning("write failed (%s); retry #%d in %.1f s, holding %d item(s)",
                                exc.reason, self.retries, delay, len(items))
                await asyncio.sleep(delay)

    async def write_once(self, items: Sequence[T]) -> None:
        """One attempt: every item written or rejected, or :class:`Retry` raised (the
        caller retries; the gateway's delivery engine does)."""
        await self._split(items)

    async def _split(self, items: Sequence[T]) -> None:
        body = "\n".join(line for it in items for line in self._lines(it)).encode()
        try:
            if body:
                await self.sink.write(body)
            self.writes += 1
        except (TooLarge, Rejected) as exc:
            if len(items) == 1:
                reason = exc.reason if isinstance(exc, Rejected) else \
                    "too large for the database even alone (HTTP 413)"
                self._rejected(items[0], reason)
                return
            half = len(items) // 2  # find the bad one(s): the rest still goes in
            await self._split(items[:half])
            await self._split(items[half:])
            return
        self._written(items)
