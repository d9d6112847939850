"""Small builders shared by tests."""

from __future__ import annotations

from typing import Any

from gateway.config import Device, DeviceConfig
from gateway.profiles import Profile, default_profile_dirs, load_profile


def device(dev_id: str, profile: str | Profile, connection: dict[str, Any],
           **extra: Any) -> Device:
    prof = profile if isinstance(profile, Profile) else load_profile(profile,
                                                                     default_profile_dirs())
    name = profile if isinstance(profile, str) else f"{prof.vendor}/{prof.model}"
    dc = DeviceConfig.model_validate({"id": dev_id, "profile": name, "connection": connection,
                                     **extra})
    wa = prof.workarounds.model_copy(update=dc.workarounds)
    return Device(dc, name, prof, wa, {**prof.poll_groups, **dc.poll})


def tcp(port: int, **kw: Any) -> dict[str, Any]:
    return {"kind": "modbus-tcp", "host": "127.0.0.1", "port": port, "timeout": 0.3,
            "retries": 0, **kw}
