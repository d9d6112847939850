"""The modem as a polled device: each read asks the module for a link sample (and, for
``imei``/``iccid`` points, its identity once per connection) and returns the profile's
points from it. Values the module did not report are bad ("not reported by the
module"); a module that does not answer makes the device offline, like any device.

The latest sample is kept on the driver (``latest``): the uplink's link-aware policy
reads it (gateway/uplink/link.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from drivers.base import Device, DriverContext, DriverMetric
from drivers.modem.at import AtModem, AtPort, Identity, ModemBackend
from drivers.modem.config import ModemAt, ModemMm
from drivers.modem.errors import ModemError
from gateway.errors import ConfigError, DeviceUnreachable, WriteRejected
from gateway.model import LinkSample, Quality, Reading, Value
from gateway.profiles import ModemPoint, Point

_MISSING = (Quality.BAD, "not reported by the module")


class ModemDriver:
    streaming = False

    def __init__(self, device: Device, ctx: DriverContext) -> None:
        conn = device.connection
        self.device = device
        self.backend: ModemBackend
        if isinstance(conn, ModemAt):
            carrier = None
            if conn.carrier is not None:
                from drivers.modem.carrier import make_carrier
                from drivers.modem.errors import CarrierError

                try:
                    carrier = make_carrier(conn.carrier)
                except CarrierError as exc:
                    raise ConfigError([(f"device {device.id}: connection.carrier.kind",
                                        str(exc))]) from None
            self.backend = AtModem(AtPort(conn.port, conn.baudrate, conn.timeout),
                                   conn.vendor_commands, carrier)
        else:
            assert isinstance(conn, ModemMm)
            from drivers.modem.mm import MmcliModem

            self.backend = MmcliModem(conn.modem, conn.mmcli, conn.timeout)
        self._open = False
        self.identity: Identity | None = None
        #: called with the identity read at each connect (the gateway registers its code)
        self.on_identity: Callable[[Identity], None] | None = None
        self.latest: LinkSample | None = None
        self.latest_at = 0.0

    @property
    def connected(self) -> bool:
        return self._open

    async def connect(self) -> None:
        if self._open:
            return
        try:
            await self.backend.open()
            self.identity = await self.backend.identity()
        except ModemError as exc:
            await self.backend.close()
            raise DeviceUnreachable(str(exc)) from None
        self._open = True
        if self.on_identity is not None:
            self.on_identity(self.identity)

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        try:
            sample = await self.backend.sample()
        except ModemError as exc:
            await self.close()
            raise DeviceUnreachable(str(exc)) from None
        now = time.time()
        self.latest, self.latest_at = sample, now
        values: list[Value] = []
        status: dict[int, tuple[Quality, str]] = {}
        ident = self.identity
        for i, p in enumerate(points):
            assert isinstance(p, ModemPoint)
            v: object
            if p.field in ("imei", "iccid", "identifier"):
                v = getattr(ident, p.field, None) if ident is not None else None
            elif p.field.startswith("extra."):
                v = sample.extra.get(p.field[6:])
            else:
                v = getattr(sample, p.field, None)
            if v is None:
                status[i] = _MISSING
            values.append(v if isinstance(v, int | float | str | bool) else None)
        return [Reading(tuple(p.name for p in points), values, now, status=status or None)]

    async def reset(self, action: str) -> None:
        """Reset the module (the link watchdog's remedy; gateway/linkwatch.py)."""
        if not self._open:
            raise ModemError("the module is not connected")
        await self.backend.reset(action)

    async def write(self, point: Point, value: Value) -> None:
        raise WriteRejected(f"{point.name}: the modem's link values are read-only")

    def explain(self, points: Sequence[Point]) -> list[str]:
        return [f"one link sample from the module ({type(self.backend).__name__}): "
                + " ".join(p.name for p in points)]

    def metrics(self) -> list[DriverMetric]:
        """The latest link sample as gauges (values the module did not report are left
        out), whether it is registered, and the serving cell as labels."""
        s = self.latest
        if s is None:
            return []
        out = [DriverMetric(f"modem_{name}_{unit.lower()}", "gauge", f"{name.upper()} ({unit})",
                            float(v))
               for name, unit, v in (("rssi", "dBm", s.rssi_dbm), ("rsrp", "dBm", s.rsrp_dbm),
                                     ("rsrq", "dB", s.rsrq_db), ("sinr", "dB", s.sinr_db),
                                     ("nr_rsrp", "dBm", s.nr_rsrp_dbm),
                                     ("nr_rsrq", "dB", s.nr_rsrq_db),
                                     ("nr_sinr", "dB", s.nr_sinr_db))
               if v is not None]
        out.append(DriverMetric("modem_registered", "gauge", "1 while the module is registered",
                                1.0 if s.registered else 0.0))
        out.append(DriverMetric("modem_info", "gauge", "the serving cell (labels), always 1",
                                1.0, {"tech": s.tech or "", "band": s.band or "",
                                      "cell": s.cell or "", "operator": s.mcc_mnc or ""}))
        return out

    async def close(self) -> None:
        self._open = False
        await self.backend.close()
