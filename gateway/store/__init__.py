"""Where batches wait until the uplink's delivery was acknowledged.

The contract and the shared policy (bounds, drop policies, counters) are
:mod:`gateway.store.base`; the backends only store: :mod:`gateway.store.sqlite` (the
durable spool, default) and :mod:`gateway.store.memory`. This package's face is those
names and :func:`open_store`, the registry of backends (imported on demand).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.store.base import (
    BoundedStore,
    Encoder,
    Entry,
    Limits,
    Store,
    StoreFull,
    StoreStats,
    initial_seq,
)

if TYPE_CHECKING:
    from gateway.crypto.spool import SpoolCipher

__all__ = ["BoundedStore", "Encoder", "Entry", "Limits", "Store", "StoreFull", "StoreStats",
           "initial_seq", "open_store"]


def open_store(kind: str, encode: Encoder, limits: Limits, path: str | None = None,
               sync_interval: float = 1.0, cipher: SpoolCipher | None = None) -> BoundedStore:
    """Build the configured backend (explicit registry)."""
    if kind == "memory":
        from gateway.store.memory import MemoryStore

        return MemoryStore(encode, limits)
    from gateway.store.sqlite import SqliteStore

    assert path is not None
    return SqliteStore(path, encode, limits, sync_interval, cipher)
