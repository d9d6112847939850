"""The driver contract (the registry, connection kind -> driver, is drivers/registry.py).

A driver connects to one device (or one bus shared by several devices), reads lists of
profile points and returns typed :class:`~gateway.model.Reading` objects, one per
request it made. It decodes bytes to values; it does not scale, filter or publish.
Failures are the project's own errors: :class:`~gateway.errors.DeviceUnreachable`
when the device cannot be reached at all (the scheduler then reconnects with backoff),
a reading with ``error`` set when one request failed but the device is alive.
The gateway owns scheduling, reconnects and backoff; drivers never retry on their own
beyond the protocol-level retries configured for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from gateway.model import Reading, Value
from gateway.profiles import Point, Profile, Workarounds

if TYPE_CHECKING:
    from drivers.connection import Connection


class Device(Protocol):
    """What a driver is given of a configured device (``gateway.config.Device`` is one):
    its id, resolved profile and workarounds, and its connection model (the driver's own,
    from ``drivers/<protocol>/config.py``)."""

    @property
    def id(self) -> str: ...

    @property
    def profile(self) -> Profile: ...

    @property
    def workarounds(self) -> Workarounds: ...

    @property
    def connection(self) -> Connection: ...


@dataclass(frozen=True, slots=True)
class DriverMetric:
    """One of a driver's own figures, shown on /metrics as
    ``edgegw_<name>{device=...,<labels>}``."""

    name: str
    kind: Literal["gauge", "counter"]
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


class Driver(Protocol):
    #: True when the device pushes data (OPC UA subscriptions): the scheduler then
    #: consumes :meth:`StreamingDriver.stream` instead of polling :meth:`read`
    streaming: bool

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; raise DeviceUnreachable on failure."""

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        """Read ``points`` (pass the same sequence object each cycle; plans are cached)."""

    async def write(self, point: Point, value: Value) -> None:
        """Write one ``rw`` point (value in engineering units, before scaling)."""

    async def close(self) -> None:
        """Drop the connection (the scheduler calls connect() again later); never raises."""

    def explain(self, points: Sequence[Point]) -> list[str]:
        """How :meth:`read` asks for ``points``: one line per request (commissioning:
        ``edgegw read --explain``)."""

    def metrics(self) -> list[DriverMetric]:
        """The driver's own figures for /metrics (may be empty)."""


class StreamingDriver(Driver, Protocol):
    def stream(
        self, groups: Mapping[str, tuple[float, Sequence[Point]]]
    ) -> AsyncIterator[tuple[str, list[Reading]]]:
        """Set up the pushes for each poll group (period, points) and yield
        ``(group, readings)`` as data arrives; raise DeviceUnreachable when the session
        is lost (the scheduler reconnects and calls stream() again)."""
        ...


class Closable(Protocol):
    def close(self) -> None: ...


class DriverContext:
    """What the drivers of one gateway share: resources (e.g. serial buses), the
    gateway id, where state (e.g. the OPC UA PKI) lives, and the config's directory
    (relative paths in the config are beside it)."""

    def __init__(self, gateway_id: str = "edgegw", state_dir: Path | None = None,
                 config_dir: Path | None = None) -> None:
        self.shared: dict[object, Closable] = {}
        self.gateway_id = gateway_id
        self._persist = state_dir is not None
        self.state_dir = state_dir or Path.cwd()
        self.config_dir = config_dir or Path.cwd()

    def learn_dir(self, protocol: str) -> Path | None:
        """Where a driver keeps what it learned about its devices (``<state dir>/<protocol>``),
        or None when no state directory was given (tests, one-off tools): memory only."""
        return self.state_dir / protocol if self._persist else None

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else self.config_dir / p

    def close(self) -> None:
        for res in self.shared.values():
            res.close()
        self.shared.clear()
