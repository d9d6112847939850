"""Bounded in-memory store: fast, but its content is lost on restart or power loss.
For tests, and for users who choose speed over durability (``store.kind: memory``)."""

from __future__ import annotations

from collections import OrderedDict

from gateway.store.base import BoundedStore, Encoder, Entry, Limits, initial_seq


class MemoryStore(BoundedStore):
    def __init__(self, encode: Encoder, limits: Limits, first_seq: int | None = None) -> None:
        super().__init__(encode, limits)
        self._entries: OrderedDict[int, tuple[Entry, int]] = OrderedDict()
        self._seq = initial_seq() if first_seq is None else first_seq

    def _insert(self, seq: int, topic: str, payload: bytes, ts_ms: int, points: int,
                bulk: bool) -> None:
        self._entries[seq] = (Entry(seq, topic, payload, ts_ms, bulk), points)

    def _oldest(self, n: int) -> list[tuple[int, int, int]]:
        out = []
        for seq, (e, points) in self._entries.items():
            out.append((seq, len(e.payload), points))
            if len(out) >= n:
                break
        return out

    def _delete(self, seq: int) -> tuple[int, int] | None:
        item = self._entries.pop(seq, None)
        return None if item is None else (len(item[0].payload), item[1])

    def _select(self, n: int, after: int, before: int | None) -> list[Entry]:
        entries = self._entries
        if not entries or after >= next(reversed(entries)):
            return []
        out: list[Entry] = []
        if after < next(iter(entries)):  # from the oldest: the backlog case
            for seq, (e, _) in entries.items():
                if before is not None and seq >= before:
                    break
                out.append(e)
                if len(out) >= n:
                    break
            return out
        for seq, (e, _) in reversed(entries.items()):  # from the newest: the live case
            if seq <= after:
                break
            if before is None or seq < before:
                out.append(e)
        out.reverse()
        return out[:n]

    def _expire(self, cutoff_ms: int) -> tuple[int, int, int]:
        n = nbytes = points = 0
        while self._entries:
            seq, (e, p) = next(iter(self._entries.items()))
            if e.ts_ms >= cutoff_ms:
                break
            del self._entries[seq]
            n, nbytes, points = n + 1, nbytes + len(e.payload), points + p
        return n, nbytes, points
