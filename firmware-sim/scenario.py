"""Scenario files: which devices to serve and which faults to inject when.

.. code-block:: yaml

    time_scale: 1.0            # >1 makes machine states change faster
    update_interval: 100ms     # how often device values are recomputed
    devices:
      - {id: cnc-01, profile: acme/cnc-mc500, port: 15020, seed: 1}
      - {id: meter-01, profile: janitza/umg96, rtu: /tmp/edgegw/ttyA, unit_id: 3}
    faults:
      - {at: 10s, device: cnc-01, fault: silence, duration: 20s}
      - {at: 40s, device: meter-01, fault: "slow:800ms"}
"""

from __future__ import annotations

from pathlib import Path

from firmware_sim.faults import parse_fault
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.durations import Duration
from gateway.errors import ConfigError
from gateway.yamlfile import load_yaml, validation_problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimDeviceSpec(_Strict):
    id: str
    profile: str
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)
    rtu: str | None = Field(default=None, description="tty path; 'pty' creates a pty")
    unit_id: int = Field(default=1, ge=0, le=247)
    seed: int = 0
    fault: str = "none"
    secure: bool = Field(default=False, description="OPC UA: also offer secured endpoints")
    users: dict[str, str] = Field(default_factory=dict, description="OPC UA: user -> password")

    @model_validator(mode="after")
    def _transport(self) -> SimDeviceSpec:
        if self.port is not None and self.rtu is not None:
            raise ValueError("give one of 'port' (TCP: Modbus or OPC UA) or 'rtu' (serial)")
        parse_fault(self.fault)
        return self


class FaultEvent(_Strict):
    at: Duration
    device: str
    fault: str
    duration: Duration | None = None

    @field_validator("fault")
    @classmethod
    def _fault(cls, v: str) -> str:
        parse_fault(v)
        return v


class Scenario(_Strict):
    time_scale: float = Field(default=1.0, gt=0)
    update_interval: Duration = 0.1
    devices: list[SimDeviceSpec] = Field(min_length=1)
    faults: list[FaultEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> Scenario:
        ids = {d.id for d in self.devices}
        if len(ids) != len(self.devices):
            raise ValueError("device ids must be unique")
        for i, f in enumerate(self.faults):
            if f.device not in ids:
                raise ValueError(f"faults[{i}]: unknown device '{f.device}'")
        return self


def load_scenario(path: Path) -> Scenario:
    try:
        return Scenario.model_validate(load_yaml(path))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(validation_problems(str(path), exc)) from None
