"""Per-device pipeline: readings -> scaled, quality-checked, filtered sample batch.

For each point of each reading: scale/offset (a scaled value is always a float, so a
field never flips between int and float), quality (request error or a non-finite
float -> bad with a reason), deadband (absolute or percent of the last reported value)
and report-by-exception with a heartbeat: a point is reported when it changed beyond
its deadband, when its quality changed, or when it was not reported for ``heartbeat``
seconds. The device's machine state is derived from the profile's rules on every cycle.

The hot path works on whole readings: a block of points that are neither scaled nor
deadbanded, whose values are not floats (integers, bits, text), keeps its last
reported values and report times in two lists (:class:`_Plan`), compared with the new
values in C (``map(ne, ...)``), so only the values that changed (or whose heartbeat is
due) cost Python work; with ``report: always`` the block goes into the batch with one
``dict.update``. The per-point state (:class:`_PointState`) is the truth otherwise; the
two are synchronised whenever the fast path is left (a failed read, offline, a new
request plan, the status page) and both paths give the same batches (property-tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import compress
from operator import ne

from gateway.config import Device
from gateway.model import BULK, PRIORITY, PROCESS, STATE, Batch, Quality, Reading, Value
from gateway.profiles import ModbusPoint, Point
from gateway.state import OFFLINE, derive_state

#: value types the fast path takes as they are (never a non-finite float)
_EXACT_VALUES = frozenset({int, bool, str})
#: Modbus types whose values are never a non-finite float
_EXACT_TYPES = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64", "bitfield",
                          "bool", "string"})


@dataclass(slots=True)
class _PointState:
    name: str
    scale: float
    offset: float
    scaled: bool
    db_abs: float
    db_pct: float
    track: bool  # used by state rules
    digits: int  # decimals kept after scaling (from the scale: 0.1 -> 1, 0.001 -> 3)
    #: reported as read: not scaled, no deadband (the fast path, for values that are not
    #: floats)
    plain: bool
    #: and its values are never floats (a Modbus integer, bit or text)
    exact: bool
    last: Value = None
    last_ts: float = -math.inf
    last_quality: Quality | None = None


def _rt(p: Point, track: bool) -> _PointState:
    db = p.deadband
    digits = max(0, -math.floor(math.log10(abs(p.scale)))) + 3 if p.scale else 6
    plain = not p.scaled and db is None
    return _PointState(
        p.name, p.scale, p.offset, p.scaled,
        (db.absolute or 0.0) if db else 0.0, (db.percent or 0.0) if db else 0.0, track,
        min(digits, 12), plain, plain and isinstance(p, ModbusPoint) and p.type in _EXACT_TYPES,
    )


class _Plan:
    """The points of one reading (a request's names tuple) and, while ``active``, the
    truth about them for the fast path: every point was last reported good, with the
    value ``values[i]`` at ``times[i]`` (``times`` None: all at ``ts``)."""

    __slots__ = ("_points", "active", "due", "exact", "fast", "names", "states", "times",
                 "track", "ts", "values")

    def __init__(self, names: tuple[str, ...], states: list[_PointState]) -> None:
        self.names = names
        self._points: frozenset[str] | None = None
        self.states = states
        self.fast = all(st.plain for st in states)
        #: no value can be a float: no need to look at the values' types
        self.exact = all(st.exact for st in states)
        self.track = [i for i, st in enumerate(states) if st.track]
        self.active = False
        self.values: list[Value] = []
        self.times: list[float] | None = None
        self.ts = 0.0
        self.due = math.inf  # the earliest heartbeat

    @property
    def points(self) -> frozenset[str]:
        """The names as a set, made when first asked for (only when two plans of a device
        are active at once: 4 KB for 100 points, kept by every plan before)."""
        if self._points is None:
            self._points = frozenset(self.names)
        return self._points

    def activate(self, heartbeat: float) -> bool:
        """Take over from the point states when every point was last reported good."""
        states = self.states
        if not self.fast or not all(st.last_quality is Quality.GOOD for st in states):
            return False
        self.values = [st.last for st in states]
        if heartbeat:
            self.times = [st.last_ts for st in states]
            self.due = min(self.times, default=math.inf) + heartbeat
        else:
            self.times = None
            self.ts = max((st.last_ts for st in states), default=0.0)
        self.active = True
        return True

    def release(self) -> None:
        """Hand the truth back to the point states."""
        if not self.active:
            return
        self.active = False
        times = self.times
        for i, st in enumerate(self.states):
            st.last = self.values[i]
            st.last_ts = self.ts if times is None else times[i]
            st.last_quality = Quality.GOOD


def _within(v: Value, last: Value, st: _PointState) -> bool:
    """Whether ``v`` is inside the deadband around ``last`` (numbers only; an array when
    every element is, and the length is the same)."""
    if not (st.db_abs or st.db_pct):
        return False
    if isinstance(v, tuple):
        return isinstance(last, tuple) and len(v) == len(last) and all(
            _within_one(a, b, st) for a, b in zip(v, last, strict=True))
    return _within_one(v, last, st)


def _within_one(v: object, last: object, st: _PointState) -> bool:
    if not isinstance(v, int | float) or not isinstance(last, int | float) \
            or isinstance(v, bool):
        return False
    if st.db_abs and abs(v - last) <= st.db_abs:
        return True
    return bool(st.db_pct) and abs(v - last) <= abs(last) * st.db_pct / 100


def _array(raw: tuple[object, ...], st: _PointState) -> tuple[Value, str | None]:
    """An array value scaled element by element, or None and why it is bad."""
    if st.scaled:
        try:
            raw = tuple(round(x * st.scale + st.offset, st.digits)  # type: ignore[operator]
                        for x in raw)
        except TypeError:
            return None, "scale applies to numbers; the array holds other values"
    for i, x in enumerate(raw):
        if isinstance(x, float) and not math.isfinite(x):
            return None, f"element {i} is not a finite number"
    return raw, None  # type: ignore[return-value]


class DevicePipeline:
    """Turns one poll cycle's readings of one device into one :class:`Batch` (or None)."""

    def __init__(self, gateway_id: str, device: Device, heartbeat: float,
                 always: bool = False) -> None:
        self.gateway_id = gateway_id
        self.device = device
        prof = device.profile
        self.profile_tag = device.profile_tag
        self.state_spec = prof.state
        tracked = set()
        if prof.state is not None:
            for rule in prof.state.rules:
                tracked |= rule.when.points()
        #: the points the state rules read: the state is known once each has a value
        self.state_points = frozenset(tracked)
        if prof.production is not None:
            tracked |= prof.production.points()
        if prof.trace is not None:
            tracked |= prof.trace.points()
        self.points = {p.name: _rt(p, p.name in tracked) for p in prof.expanded_points()}
        self._detail_names: tuple[str, ...] = ()  # the last detailed reading's names,
        self._detail_rts: list[_PointState] = []  # and their points
        self.heartbeat = 0.0 if always else heartbeat
        self.current: dict[str, Value] = {}  # good values of state-rule points
        self.state: str | None = None
        self.ids = {"device": device.config.identifier} if device.config.identifier else {}
        #: the batch code each reader serving this machine read last (reader id -> code)
        self.inputs: dict[str, str] = {}
        self._plans: dict[int, _Plan] = {}
        #: alarm/state-class points -> priority; a change of one makes the batch urgent
        self.urgent = {p.name: PRIORITY[p.priority] for p in prof.expanded_points()
                       if p.priority in ("alarm", "state")}
        self._urgent_last: dict[str, Value] = {}
        #: bulk-priority points: a batch of these only may wait for a good radio signal
        self.bulk = frozenset(p.name for p in prof.expanded_points() if p.priority == "bulk")

    def _plan(self, names: tuple[str, ...]) -> _Plan:
        plan = self._plans.get(id(names))
        if plan is None or plan.names is not names:
            if len(self._plans) > 64:  # (readings that bring a new tuple each time)
                self.sync()
                self._plans.clear()
            plan = self._plans[id(names)] = _Plan(names, [self.points[n] for n in names])
        return plan

    def state_known(self) -> bool:
        """Whether every point the state rules read has a good value (the first cycle of
        a slow poll group, or a bad read, leaves the derived state a guess)."""
        return self.state_points.issubset(self.current.keys())

    def sync(self) -> None:
        """Bring every point state up to date (they are read for the status page)."""
        for plan in self._plans.values():
            plan.release()

    def _release(self, plan: _Plan) -> None:
        """Make the point states of ``plan``'s points the truth: release it and every
        active plan that shares a point with it (after a new request plan, two plans
        may hold the same point for a while)."""
        for other in self._plans.values():
            if other.active and (other is plan or not other.points.isdisjoint(plan.names)):
                other.release()

    def _fast(self, plan: _Plan, values: list[Value], ts: float,
              out: dict[str, Value]) -> bool:
        """A good reading of plain points; False when its plan cannot take it (or a value
        may be a non-finite float, an array or missing: the point-by-point path judges)."""
        if not plan.exact and not _EXACT_VALUES.issuperset(map(type, values)):
            return False
        if not plan.active:
            self._release(plan)
            if not plan.activate(self.heartbeat):
                return False
        names = plan.names
        if plan.track:
            current = self.current
            for i in plan.track:
                current[names[i]] = values[i]
        if plan.times is None:  # report: always
            out.update(zip(names, values, strict=True))
            plan.values, plan.ts = values, ts
            return True
        last, times = plan.values, plan.times
        report = list(compress(range(len(values)), map(ne, values, last)))
        if ts >= plan.due:  # heartbeats
            hb = self.heartbeat
            report = sorted({*report, *(i for i, t in enumerate(times) if ts - t >= hb)})
        for i in report:
            v = values[i]
            out[names[i]] = v
            last[i] = v
            times[i] = ts
        if ts >= plan.due:
            plan.due = min(times) + self.heartbeat
        return True

    def process(self, group: str, readings: list[Reading]) -> Batch | None:
        out: dict[str, Value] = {}
        bad: dict[str, tuple[Quality, str]] = {}
        current = self.current
        ts = readings[0].read_ts if readings else 0.0
        src: dict[str, int] = {}
        for r in readings:
            if r.status is not None or r.times is not None:
                # the points looked up by name; a poll's readings come with the same
                # tuple of names each time (its read plan's), a subscription's with a
                # new one (the items that changed)
                if r.points is self._detail_names:
                    rts = self._detail_rts
                else:
                    rts = [self.points[n] for n in r.points]
                    self._detail_names, self._detail_rts = r.points, rts
                self._detailed(r, rts, ts, out, bad, src)
                continue
            plan = self._plan(r.points)
            if r.error is None and plan.fast and self._fast(plan, r.values, ts, out):
                continue
            self._release(plan)
            self._each(plan.states, r, ts, out, bad)
        state = derive_state(self.state_spec, current) if self.state_spec else None
        changed_state = state != self.state
        self.state = state
        if not out and not changed_state:
            return None
        prio = STATE if changed_state else PROCESS
        if self.urgent:
            prio = min(prio, self._urgency(out))
        if prio == PROCESS and self.bulk and self.bulk.issuperset(out):
            prio = BULK
        return Batch(self.gateway_id, self.device.id, self.profile_tag, int(ts * 1000), out,
                     bad, state, self.ids, group=group, src=src, priority=prio)

    def _each(self, rts: list[_PointState], r: Reading, ts: float, out: dict[str, Value],
              bad: dict[str, tuple[Quality, str]]) -> None:
        """A reading point by point: scale, quality, deadband, heartbeat."""
        heartbeat = self.heartbeat
        current = self.current
        if r.error is not None:
            for st in rts:
                if st.last_quality is not Quality.BAD or ts - st.last_ts >= heartbeat:
                    out[st.name] = None
                    bad[st.name] = (Quality.BAD, r.error)
                    st.last, st.last_ts, st.last_quality = None, ts, Quality.BAD
                if st.track:
                    current.pop(st.name, None)
            return
        for st, raw in zip(rts, r.values, strict=True):
            # scaled values are rounded so that 214 * 0.1 reads 21.4, not 21.400000000000002
            v = round(raw * st.scale + st.offset, st.digits) if st.scaled else raw  # type: ignore[operator]
            if v.__class__ is float and not math.isfinite(v):
                if st.last_quality is not Quality.BAD or ts - st.last_ts >= heartbeat:
                    out[st.name] = None
                    bad[st.name] = (Quality.BAD, "not a finite number")
                    st.last, st.last_ts, st.last_quality = None, ts, Quality.BAD
                continue
            if st.track:
                current[st.name] = v
            last = st.last
            if (
                st.last_quality is Quality.GOOD
                and ts - st.last_ts < heartbeat
                and (
                    v == last
                    or (st.db_abs and abs(v - last) <= st.db_abs)  # type: ignore[operator]
                    or (st.db_pct and abs(v - last) <= abs(last) * st.db_pct / 100)  # type: ignore[operator, arg-type]
                )
            ):
                continue
            out[st.name] = v
            st.last, st.last_ts, st.last_quality = v, ts, Quality.GOOD

    def _urgency(self, out: dict[str, Value]) -> int:
        """The highest priority among alarm/state points whose value changed (not a
        heartbeat's repetition)."""
        prio = PROCESS
        last = self._urgent_last
        for name, p in self.urgent.items():
            if name in out:
                v = out[name]
                if name not in last or last[name] != v:
                    last[name] = v
                    prio = min(prio, p)
        return prio

    def _detailed(self, r: Reading, rts: list[_PointState], ts: float,
                  out: dict[str, Value], bad: dict[str, tuple[Quality, str]],
                  src: dict[str, int]) -> None:
        """A reading with per-value quality and/or source timestamps (OPC UA): the same
        rules as the fast path in :meth:`process`, value by value."""
        if r.error is None and not r.status:
            self._plain(r, rts, ts, out, bad, src)
            return
        self._general(r, rts, ts, out, bad, src)

    def _general(self, r: Reading, rts: list[_PointState], ts: float,  # noqa: C901 - quality, arrays, deadband, heartbeat in one pass
                 out: dict[str, Value], bad: dict[str, tuple[Quality, str]],
                 src: dict[str, int]) -> None:
        heartbeat = self.heartbeat
        status = r.status or {}
        times = r.times
        ts_ms = int(ts * 1000)
        for i, (st, raw) in enumerate(zip(rts, r.values, strict=True)):
            q = status.get(i)
            if r.error is not None:
                q = (Quality.BAD, r.error)
            if raw is None and q is None:
                q = (Quality.BAD, "no value")
            if q is not None and q[0] is Quality.BAD:
                if st.last_quality is not Quality.BAD or ts - st.last_ts >= heartbeat:
                    out[st.name] = None
                    bad[st.name] = q
                    st.last, st.last_ts, st.last_quality = None, ts, Quality.BAD
                if st.track:
                    self.current.pop(st.name, None)
                continue
            v = raw
            why = "not a finite number"
            if isinstance(raw, tuple):
                v, whyarr = _array(raw, st)
                why = whyarr or why
            elif st.scaled and isinstance(raw, int | float) and not isinstance(raw, bool):
                v = round(raw * st.scale + st.offset, st.digits)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                if st.last_quality is not Quality.BAD or ts - st.last_ts >= heartbeat:
                    out[st.name] = None
                    bad[st.name] = (Quality.BAD, why)
                    st.last, st.last_ts, st.last_quality = None, ts, Quality.BAD
                continue
            if st.track:
                self.current[st.name] = v
            quality = Quality.GOOD if q is None else q[0]
            last = st.last
            if (
                st.last_quality is quality
                and ts - st.last_ts < heartbeat
                and (v == last or _within(v, last, st))
            ):
                continue
            out[st.name] = v
            if q is not None:
                bad[st.name] = q
            if times is not None:
                t_ms = int(times[i] * 1000)
                if t_ms != ts_ms:
                    src[st.name] = t_ms
            st.last, st.last_ts, st.last_quality = v, ts, quality

    def _plain(self, r: Reading, rts: list[_PointState], ts: float, out: dict[str, Value],
               bad: dict[str, tuple[Quality, str]], src: dict[str, int]) -> None:
        """:meth:`_detailed` for a reading whose values are all good (the common case of
        a subscription's notification or an OPC UA poll): scalar numbers take a lean
        path; anything else (an array, a missing value, a string, a non-finite number)
        goes through the full one, value by value."""
        heartbeat = self.heartbeat
        current = self.current
        times = r.times
        ts_ms = int(ts * 1000)
        good = Quality.GOOD
        isfinite = math.isfinite
        values = r.values
        if len(values) != len(rts):
            raise ValueError(f"{len(values)} values for {len(rts)} points")
        for i, st, raw in zip(range(len(rts)), rts, values):  # noqa: B905 - checked above
            cls = raw.__class__
            v = raw
            if cls is int or cls is float:
                if st.scaled:
                    v = round(raw * st.scale + st.offset, st.digits)  # type: ignore[operator]
                plain = v.__class__ is int or isfinite(v)  # type: ignore[arg-type]
            else:
                plain = cls is bool
            if not plain:
                one = Reading((st.name,), [raw], ts, None, None,
                              None if times is None else [times[i]])
                self._general(one, [st], ts, out, bad, src)
                continue
            if st.track:
                current[st.name] = v
            if (
                st.last_quality is good
                and ts - st.last_ts < heartbeat
                and (v == st.last or _within(v, st.last, st))
            ):
                continue
            out[st.name] = v
            if times is not None:
                t_ms = int(times[i] * 1000)
                if t_ms != ts_ms:
                    src[st.name] = t_ms
            st.last, st.last_ts, st.last_quality = v, ts, good

    def set_context(self, kind: str, code: str, source: str | None = None) -> None:
        """Tag this device's batches with ``ids[kind] = code`` (e.g. the product a
        scanner read at this machine) until the next code. A new dict each time: batches
        already made keep the context they were made with. A batch code is also this
        machine's current input from ``source`` (the reader's device id: one material
        per reader), for the product records (gateway/trace)."""
        if self.ids.get(kind) != code:
            self.ids = {**self.ids, kind: code}
        if kind == "batch" and source is not None:
            self.inputs[source] = code

    def offline(self, reason: str, ts: float) -> Batch:
        """State ``offline`` with the reason: every point of the device is bad until the
        next good read, which then reports every point again."""
        self.sync()
        for st in self.points.values():
            st.last, st.last_ts, st.last_quality = None, ts, Quality.BAD
        self.current.clear()
        self.state = OFFLINE
        return Batch(self.gateway_id, self.device.id, self.profile_tag, int(ts * 1000), {},
                     state=OFFLINE, ids=self.ids, error=reason, priority=STATE)
