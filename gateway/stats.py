"""Counters the gateway exposes in its status topic."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DeviceStats:
    state: str = "starting"
    polls: int = 0
    points: int = 0
    read_errors: int = 0
    missed_ticks: int = 0
    reconnects: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class GatewayStats:
    devices: dict[str, DeviceStats] = field(default_factory=dict)
    published: int = 0
    publish_errors: int = 0
    mqtt_connects: int = 0

    def device(self, dev: str) -> DeviceStats:
        st = self.devices.get(dev)
        if st is None:
            st = self.devices[dev] = DeviceStats()
        return st
