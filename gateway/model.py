"""Typed data that crosses module borders: readings from drivers, sample batches.

The hot path works on whole batches: a driver returns one :class:`Reading` per
coalesced block of points, the pipeline turns all readings of one poll cycle into one
:class:`Batch`. No raw dicts cross module borders.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

Scalar = int | float | bool | str
#: a point's value: a scalar, a one-dimensional array of scalars (OPC UA arrays), or
#: None (no value: bad quality)
Value = Scalar | tuple[Scalar, ...] | None


class Quality(enum.IntEnum):
    """OPC-style quality of one value."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


ALARM, STATE, PROCESS, BULK = 0, 1, 2, 3
PRIORITY = {"alarm": ALARM, "state": STATE, "process": PROCESS, "bulk": BULK}


@dataclass(slots=True)
class Reading:
    """What a driver read for a list of points in one request (or one failed request).

    ``values`` is aligned with ``points``. When ``error`` is set every value is ``None``
    and every point of the reading has bad quality with that reason.
    """

    points: tuple[str, ...]
    values: list[Value]
    read_ts: float  # wall clock seconds (UTC epoch) when the answer arrived
    error: str | None = None
    #: per-value quality that is not good, by index (e.g. OPC UA StatusCodes); a bad
    #: value is None. Not None (``{}`` when every value is good) also asks the pipeline
    #: to treat each value on its own: a driver whose values may be arrays sets it
    status: dict[int, tuple[Quality, str]] | None = None
    #: per-value source timestamps (wall clock seconds), when the device supplies them
    times: list[float] | None = None


@dataclass(slots=True)
class Batch:
    """What one device's poll cycle produced, after the pipeline.

    ``values`` holds only the points to report (changed, or heartbeat due).
    ``quality`` holds only points whose quality is not good: ``name -> (quality, reason)``.
    ``seq`` is set by the store when the batch is appended.
    """

    gateway: str
    device: str
    profile: str
    ts_ms: int
    values: dict[str, Value]
    quality: dict[str, tuple[Quality, str]] = field(default_factory=dict)
    state: str | None = None
    ids: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    group: str = ""
    error: str | None = None  # device-level fault: every point is bad for this reason
    #: source timestamps (ms) of reported points whose own time differs from ``ts_ms``
    src: dict[str, int] = field(default_factory=dict)
    #: uplink priority: ALARM or STATE (an alarm/state point or the machine state
    #: changed) goes first; BULK (only bulk points) may wait for a good radio signal;
    #: PROCESS is everything else
    priority: int = 2

    @property
    def point_count(self) -> int:
        return len(self.values)


@dataclass(slots=True)
class LinkSample:
    """What one round of reads of the 5G module knows about the radio; None where the
    module did not say (drivers/modem/parse.py fills it; the uplink judges the link by it)."""

    tech: str | None = None  # LTE, NR5G-SA, NR5G-NSA (EN-DC), UTRAN, GSM ...
    registration: str | None = None
    registered: bool | None = None
    rssi_dbm: float | None = None
    ber: int | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    nr_rsrp_dbm: float | None = None  # the 5G leg of EN-DC, or SA
    nr_rsrq_db: float | None = None
    nr_sinr_db: float | None = None
    band: str | None = None
    cell: str | None = None
    pci: int | None = None
    arfcn: int | None = None
    mcc_mnc: str | None = None
    tx_bytes: int | None = None  # data counters of the module, where it keeps them
    rx_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: LinkSample) -> LinkSample:
        """Fields of ``other`` that are known override this sample's."""
        for k, v in asdict(other).items():
            if v is not None and v != {}:
                setattr(self, k, v)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}
