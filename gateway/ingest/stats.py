"""The ingest's counters (read by its health endpoint)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: the ages kept for the quantiles (the newest ones)
AGES = 10_000


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
    #: seconds from each batch's time stamp to the database accepting it (the newest)
    ages: deque[float] = field(default_factory=lambda: deque(maxlen=AGES))

    def age_quantiles(self) -> dict[str, float]:
        """p50, p99 and max of the recent ages (seconds); empty before the first write."""
        if not self.ages:
            return {}
        a = sorted(self.ages)
        return {k: round(v, 3) for k, v in (
            ("0.5", a[len(a) // 2]), ("0.99", a[min(len(a) - 1, int(len(a) * 0.99))]),
            ("1", a[-1]))}
