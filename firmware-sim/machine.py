"""Simulated devices: a machine-state model driving profile points, or a bench device."""

from __future__ import annotations

import math
import random
import struct
import time
from collections.abc import Callable

from firmware_sim.benchprofiles import opcua_bench_profile
from firmware_sim.faults import Fault
from firmware_sim.registers import LIMITS, RegisterMap

from gateway.profiles import ModbusQuirks, Point, PointSim, Profile

DEFAULT_STATES = {
    "idle": {"running": 0.8, "maintenance": 0.2},
    "running": {"idle": 0.7, "fault": 0.3},
    "fault": {"idle": 0.6, "maintenance": 0.4},
    "maintenance": {"idle": 1.0},
}


class SimDevice:
    """One simulated device: register map + machine state + fault + counters."""

    def __init__(self, dev_id: str, profile: Profile, unit_id: int = 1, seed: int = 0,
                 time_scale: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.id = dev_id
        self.profile = profile
        self.profile_name = f"{profile.vendor}/{profile.model}"
        self.unit_id = unit_id
        self.rng = random.Random(seed)
        self.fault = Fault()
        self.requests = 0
        self.time_scale = time_scale
        #: seconds, for dwell times (a bench plays hours offline with its own clock)
        self.clock = clock
        sim = profile.simulation
        # Modbus devices keep their values in a register map; OPC UA servers read
        # ``values`` (raw values by point name) after each step
        self.map = RegisterMap(profile, strict=bool(sim and sim.strict_map)) \
            if profile.protocol == "modbus" else None
        self.quirks = sim.modbus if sim else ModbusQuirks()
        self.values: dict[str, object] = {}
        self.state = sim.initial if sim else "idle"
        self._state_until = 0.0
        self._values: dict[str, float] = {}
        #: point -> raw value held regardless of the model (scenarios: a counter set,
        #: reset to 0 by a power cycle, frozen)
        self.forced: dict[str, object] = {}
        self._points = [p for p in profile.expanded_points() if p.sim is not None]
        self._last = clock()
        self.step(0.0)
        # a writable constant (a setpoint) is an initial value: what a client writes stays
        self._points = [p for p in self._points
                        if not (p.access == "rw" and p.sim and p.sim.kind == "constant")]

    def answer(self, pdu: bytes) -> bytes:
        assert self.map is not None
        return self.map.handle(pdu)

    def force(self, point: str, value: object | None) -> None:
        """Hold a point at a raw value (None: back to the model), from the next step."""
        if value is None:
            self.forced.pop(point, None)
        else:
            self.forced[point] = value
        self.step(0.0)

    def set_state(self, state: str, hold: float = 3600.0) -> None:
        """Force a machine state (tests, scenarios) for ``hold`` seconds."""
        self.state = state
        self._state_until = self.clock() + hold

    # -- behaviour -------------------------------------------------------------------
    def _next_state(self, now: float) -> None:
        if now < self._state_until:
            return
        sim = self.profile.simulation
        spec = sim.states.get(self.state) if sim else None
        if self._state_until:  # not the first call: move on
            nxt = dict(spec.next) if spec and spec.next else DEFAULT_STATES.get(self.state, {})
            if nxt:
                self.state = self.rng.choices(list(nxt), weights=list(nxt.values()))[0]
                spec = sim.states.get(self.state) if sim else None
        lo, hi = spec.dwell if spec else (5.0, 20.0)
        self._state_until = now + self.rng.uniform(lo, hi) / self.time_scale

    def step(self, dt: float | None = None) -> None:
        """Advance the model by ``dt`` seconds (wall time since last step if None)."""
        now = self.clock()
        if dt is None:
            dt = (now - self._last) * self.time_scale
        self._last = now
        self._next_state(now)
        for p in self._points:
            assert p.sim is not None
            value = self.forced[p.name] if p.name in self.forced else self._value(p, p.sim, dt)
            if value is not None and getattr(p, "array", False):
                value = _spread(value, p.sim.size)
            if value is not None:
                self.values[p.name] = value
                if self.map is not None:
                    self.map.set_point(p, value)  # type: ignore[arg-type]

    def _value(self, p: Point, s: PointSim, dt: float) -> object:
        active = not s.when or self.state in s.when
        prev = self._values.get(p.name)
        if s.kind == "constant":
            return s.value
        if s.kind == "state_code":
            return s.map.get(self.state, 0)
        if s.kind == "alarm":
            return active
        if s.kind == "clock":
            return int(time.time() * 1000) & 0xFFFFFFFF
        if s.kind == "follow":
            target = s.levels.get(self.state, s.levels.get("default", 0.0))
            cur = target if prev is None else prev
            if s.tau and prev is not None:
                cur = target + (prev - target) * math.exp(-dt / s.tau)
            self._values[p.name] = cur
            return self._clamp(p, s, cur + (self.rng.gauss(0, s.noise) if s.noise else 0.0))
        if s.kind == "counter":
            rate = s.levels.get(self.state, 0.0) if s.levels else (s.rate if active else 0.0)
            start = float(s.value) if isinstance(s.value, int | float) else 0.0
            cur = (start if prev is None else prev) + rate * dt
            raw = (cur - p.offset) / p.scale  # counters are stored raw, the profile scales
            is_float = _is_float(p)
            if not is_float and raw > LIMITS[p.type or "uint32"][1]:
                cur, raw = p.offset, 0.0  # wrap around like a real counter register
            self._values[p.name] = cur
            return raw if is_float else int(raw)
        if s.kind == "code":  # a new code every 1/rate seconds: a scanner's reads
            cur = (prev or 0.0) + (s.rate if active else 0.0) * dt
            self._values[p.name] = cur
            template = str(s.value or "CODE-{n:06d}")
            return template.format(n=int(cur) + 1)
        if s.kind == "random_walk":
            lo = s.min if s.min is not None else 0.0
            hi_ = s.max if s.max is not None else 100.0
            cur = (lo + hi_) / 2 if prev is None else prev
            cur = min(max(cur + self.rng.gauss(0, s.noise or 1.0), lo), hi_)
            self._values[p.name] = cur
            return self._clamp(p, s, cur)
        return None

    @staticmethod
    def _clamp(p: Point, s: PointSim, v: float) -> float | int:
        if s.min is not None:
            v = max(v, s.min)
        if s.max is not None:
            v = min(v, s.max)
        if p.scaled:  # value is in engineering units: store the raw register value
            raw = (v - p.offset) / p.scale
            return raw if _is_float(p) else round(raw)
        return v if _is_float(p) else round(v)


def _is_float(p: Point) -> bool:
    """OPC UA points without a type hold doubles."""
    return p.type in (None, "float32", "float64")


class BenchDevice:
    """D x R bench device: holding registers 0-1 hold the update time (ms, uint32 BE).
    ``changing="all"``: registers 2..R-1 change on every update. ``"half-slow"``: the
    first half of them drift (each moves by +-1 with probability 0.05 per update, like a
    slow process value), the second half never change (setpoints, configuration)."""

    def __init__(self, dev_id: str, registers: int, unit_id: int = 1,
                 changing: str = "all") -> None:
        if registers < 2 or registers > 125:
            raise ValueError("bench devices have 2..125 registers")
        self.id = dev_id
        self.profile_name = f"bench/r{registers}"
        self.unit_id = unit_id
        self.fault = Fault()
        self.requests = 0
        self.registers = registers
        self.quirks = ModbusQuirks()
        self.map = RegisterMap(None, size=registers)
        self._pack = struct.Struct(f">I{registers - 2}H")
        self._tick = 0
        self._base = list(range(registers - 2))
        self.changing = changing
        self.rng = random.Random(dev_id)
        self._values = [1000 + 7 * i for i in self._base]

    def answer(self, pdu: bytes) -> bytes:
        return self.map.handle(pdu)

    def step(self, dt: float | None = None) -> None:
        self._tick += 1
        t = self._tick
        now_ms = int(time.time() * 1000) & 0xFFFFFFFF
        if self.changing == "all":
            values = [(t + i) & 0xFFFF for i in self._base]
        else:
            values = self._values
            rnd = self.rng.random
            for i in range(len(values) // 2):
                if rnd() < 0.05:
                    values[i] = (values[i] + (1 if rnd() < 0.5 else -1)) & 0xFFFF
        self._pack.pack_into(self.map.regs["holding"], 0, now_ms, *values)


class OpcuaBenchDevice:
    """An OPC UA bench machine: ``t`` (uint32, the update time in ms mod 2^32) and
    ``v001..`` (uint32 counters). Every update ``t`` changes and a rotating ``change``
    fraction of the counters goes up by exactly one, so a subscriber can prove that no
    change was lost (a counter that jumps by more than one lost changes)."""

    def __init__(self, dev_id: str, nodes: int, change: float = 0.1) -> None:
        if nodes < 2:
            raise ValueError("OPC UA bench devices have at least 2 nodes")
        self.id = dev_id
        self.profile = Profile.model_validate(opcua_bench_profile(nodes, 1.0))
        self.profile_name = f"bench/ua{nodes}"
        self.fault = Fault()
        self.requests = 0
        self.names = [f"v{i:03d}" for i in range(1, nodes)]
        self.per_tick = max(1, round(len(self.names) * change))
        self.values: dict[str, object] = dict.fromkeys(self.names, 0)
        self.values["t"] = 0
        self._next = 0
        self.changes = 0

    def step(self, dt: float | None = None) -> None:
        self.values["t"] = int(time.time() * 1000) & 0xFFFFFFFF
        n = len(self.names)
        for k in range(self._next, self._next + self.per_tick):
            name = self.names[k % n]
            self.values[name] = self.values[name] + 1  # type: ignore[operator]
        self._next = (self._next + self.per_tick) % n
        self.changes += self.per_tick


def _spread(v: object, n: int) -> tuple[object, ...]:
    """An array point's elements from its scalar: a curve over the array (a pressure
    profile, a spectrum) peaking at the value."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return (v,) * n
    curve = [math.sin(math.pi * (i + 0.5) / n) for i in range(n)]
    if isinstance(v, int):
        return tuple(round(v * c) for c in curve)
    return tuple(round(v * c, 3) for c in curve)
