"""What a reload changes: the device differences between the running config and the new
one, and the settings that only take effect at a restart.

Devices are applied live (added, removed, restarted when their config or profile
changed); every other device keeps running untouched, so its data never stops. The
uplink, the store, signing, the health endpoint, the identifier node and the pipeline's
settings belong to the whole gateway: a change there is reported and waits for a restart
(the running values stay). ``logging.level`` applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import Device, LoadedConfig

#: top-level config sections that need a restart to change
RESTART_SECTIONS = ("gateway", "uplink", "store", "pipeline", "health", "identifiers",
                    "signing", "profiles_dir", "production")


@dataclass(slots=True)
class Plan:
    added: list[Device] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[Device] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # enabled device ids, new config order

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.removed)} removed",
                 f"{len(self.changed)} changed", f"{len(self.unchanged)} unchanged"]
        names = [f"+{d.id}" for d in self.added] + [f"-{d}" for d in self.removed] + [
            f"~{d.id}" for d in self.changed]
        return ", ".join(parts) + (f" ({' '.join(names)})" if names else "")


def plan(old: LoadedConfig, new: LoadedConfig) -> Plan:
    p = Plan()
    for section in RESTART_SECTIONS:
        if getattr(old.config, section) != getattr(new.config, section):
            p.restart_needed.append(section)
    running = {d.id: d for d in old.devices if d.config.enabled}
    wanted = {d.id: d for d in new.devices if d.config.enabled}
    p.order = list(wanted)
    for dev_id, dev in wanted.items():
        before = running.get(dev_id)
        if before is None:
            p.added.append(dev)
        elif _same(before, dev):
            p.unchanged.append(dev_id)
        else:
            p.changed.append(dev)
    p.removed = [d for d in running if d not in wanted]
    return p


def _same(a: Device, b: Device) -> bool:
    """Same device config, same profile content (a profile file edited in place counts
    as a change), same effective workarounds and periods."""
    return (a.config == b.config and a.profile_name == b.profile_name
            and a.profile == b.profile and a.workarounds == b.workarounds
            and a.poll_periods == b.poll_periods)
