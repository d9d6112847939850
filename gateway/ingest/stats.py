"""The ingest's counters (read by its health endpoint)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class IngestStats:
    received: int = 0
    written_batches: int = 0  # edgegw batches (MQTT messages) now in the database
    written_lines: int = 0
    writes: int = 0  # HTTP writes
    duplicates: int = 0
    dead_letters: int = 0
    retries: int = 0
    refused_signatures: int = 0  # unsigned (when required), unknown key, bad signature
