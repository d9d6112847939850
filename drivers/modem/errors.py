"""The modem's errors (no I/O here, so importing them loads no serial stack)."""

from __future__ import annotations

from gateway.errors import DeviceError


class ModemError(DeviceError):
    """The module (or ModemManager) cannot be read: the modem device goes offline."""


class AtError(ModemError):
    """The module answered with an error result, or not at all."""


class CarrierError(ModemError):
    """The carrier could not be read, or holds no identifier code."""
