"""Each product's record at a machine, built from the polls while it is there.

A record opens when the machine is in process (a running state, or the active point
true) with a product code known, and closes when the process ends or another code
arrives; it is emitted at each close. Time nobody saw (the device offline, the state
unknown, the gateway stopped) marks the record ``interrupted`` and adds to ``gap_s``; a
product whose process stops and starts again with the same code (a fault mid-cure)
continues the same record (``resumed``) and is emitted again, complete: the backend
keeps one record per code (same time stamp: the start), and the identifier node's copy
is updated. Nothing is split silently.

Pure: the caller gives the time, what it knows of the machine, and the values read this
cycle; no I/O, so it is tested with arbitrary interleavings (tests/gateway/trace).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.model import Value
from gateway.trace.spec import CONTEXT, STATS, Summary, TraceSpec, record_fields

PASS, FAIL = "pass", "fail"


@dataclass(slots=True)
class Stats:
    """One summarised point over a record's samples (the values read, each poll)."""

    n: int = 0
    min: float | None = None
    max: float | None = None
    total: float = 0.0
    final: float | None = None
    above_s: float = 0.0
    #: the previous sample's time, None after a gap (time above is not carried over it)
    last_ts: float | None = None

    def _accrue(self, ts: float, above: float | None) -> None:
        """The last sample held until ``ts``: its time above the threshold."""
        if above is not None and self.last_ts is not None and self.final is not None \
                and self.final > above and ts > self.last_ts:
            self.above_s += ts - self.last_ts

    def add(self, v: float, ts: float, above: float | None) -> None:
        self._accrue(ts, above)
        self.n += 1
        self.total += v
        self.min = v if self.min is None or v < self.min else self.min
        self.max = v if self.max is None or v > self.max else self.max
        self.final = v
        self.last_ts = ts

    def hold(self, ts: float, above: float | None) -> None:
        """The window ends at ``ts``: the last sample holds until then; no carry-over."""
        self._accrue(ts, above)
        self.last_ts = None

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass(slots=True)
class TraceRecord:
    code: str
    kind: str  # "product" or "batch"
    start: float
    end: float | None = None
    recipe: Value = None
    inputs: list[str] = field(default_factory=list)
    stats: dict[str, Stats] = field(default_factory=dict)
    interrupted: bool = False
    gap_s: float = 0.0
    resumed: int = 0

    def verdict(self, spec: TraceSpec) -> tuple[str, str]:
        """(pass | fail, why: the limits broken)."""
        why: list[str] = []
        for s in spec.summaries:
            if not s.limited():
                continue
            st = self.stats.get(s.point) or Stats()
            why += _broken(s, st)
        return (FAIL if why else PASS), "; ".join(why)

    def fields(self, spec: TraceSpec, machine: str | None) -> dict[str, Value]:
        """The record as the fields of its batch (record_fields(spec), in order)."""
        verdict, why = self.verdict(spec)
        end = self.end if self.end is not None else self.start
        out: dict[str, Value] = {
            "code": self.code, "kind": self.kind, "machine": machine,
            "end": int(end * 1000), "duration_s": round(end - self.start, 3),
            "recipe": self.recipe, "verdict": verdict, "why": why,
            "interrupted": self.interrupted, "gap_s": round(self.gap_s, 3),
            "resumed": self.resumed, "inputs": ",".join(self.inputs)}
        for s in spec.summaries:
            st = self.stats.get(s.point) or Stats()
            mean = st.mean()
            vals: dict[str, Value] = {
                "min": st.min, "max": st.max, "mean": None if mean is None else round(mean, 6),
                "final": st.final, "n": st.n,
                "above_s": round(st.above_s, 3) if s.above is not None else None}
            for k in STATS:
                out[f"{s.point}_{k}"] = vals[k]
        assert list(out) == record_fields(spec)
        return {k: v for k, v in out.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TraceRecord:
        d = dict(doc)
        d["stats"] = {k: Stats(**v) for k, v in d.get("stats", {}).items()}
        return cls(**d)


def _broken(s: Summary, st: Stats) -> list[str]:
    if st.n == 0:
        return [f"{s.point}: no samples"]
    why = []
    if s.min is not None and st.min is not None and st.min < s.min:
        why.append(f"{s.point} min {_num(st.min)} < {_num(s.min)}")
    if s.max is not None and st.max is not None and st.max > s.max:
        why.append(f"{s.point} max {_num(st.max)} > {_num(s.max)}")
    if s.min_time_above is not None and st.above_s < s.min_time_above:
        why.append(f"{s.point} above {_num(s.above)} for {_num(round(st.above_s, 1))} s "
                   f"< {_num(s.min_time_above)} s")
    return why


def _num(v: float | None) -> str:
    return "?" if v is None else (f"{v:g}")


class TraceBuilder:
    """One machine's product records."""

    def __init__(self, spec: TraceSpec) -> None:
        self.spec = spec
        self.kind = "batch" if spec.batch_output else "product"
        self.open: TraceRecord | None = None
        #: the record closed last: the same code starting again continues it
        self.last: TraceRecord | None = None
        #: since when nobody knows what the machine does (None: known)
        self.unknown_since: float | None = None
        #: the product code read last, and each material reader's last batch code
        self.code: str | None = None
        self.inputs: dict[str, str] = {}

    def code_of(self, values: Mapping[str, Value], ids: Mapping[str, str]) -> str | None:
        """The product code now: the reader's context, or the code point (with prefix)."""
        spec = self.spec
        if spec.code == CONTEXT:
            return ids.get(self.kind)
        v = values.get(spec.code)
        if not isinstance(v, str) or not v.strip():
            return None
        v = v.strip()
        return f"{spec.code_prefix}/{v}" if spec.code_prefix else v

    def observe(self, ts: float, active: bool | None, code: str | None,
                values: Mapping[str, Value], read: Collection[str],
                inputs: Mapping[str, str] | None = None) -> list[TraceRecord]:
        """One cycle: ``active`` None when unknown (device offline, state not known);
        ``code`` the product code now (None: the last one known holds: a reader says a
        code once, when it scans); ``values`` the good current values, ``read`` the
        points read this cycle, ``inputs`` the batch code each material reader read last
        (reader -> code; kept, like the code, over a restart). The records closed by
        this cycle."""
        if code is not None:
            self.code = code
        code = self.code
        if inputs:
            self.inputs.update(inputs)
        out: list[TraceRecord] = []
        rec = self.open
        if active is None:
            if rec is not None:
                rec.interrupted = True
                if self.unknown_since is None:
                    self.unknown_since = ts
                    self._hold(rec, ts)  # no time above carried over the gap
            return out
        if self.unknown_since is not None:
            if rec is not None:
                rec.gap_s += max(0.0, ts - self.unknown_since)
            self.unknown_since = None
        if rec is not None and ((code is not None and code != rec.code) or not active):
            out.append(self._close(rec, ts))
            rec = None
        if rec is None and active and code is not None:
            rec = self._start(ts, code)
        if rec is not None:
            self._sample(rec, ts, values, read,
                         self.inputs.values() if self.spec.inputs else ())
        if code is not None and self.last is not None and self.last.code != code:
            self.last = None  # another product: the last one will not come back
        return out

    def _start(self, ts: float, code: str) -> TraceRecord:
        last = self.last
        if last is not None and last.code == code:  # the same product again
            rec = last
            rec.resumed += 1
            rec.interrupted = True
            if rec.end is not None:
                rec.gap_s += max(0.0, ts - rec.end)
            rec.end = None
        else:
            rec = TraceRecord(code, self.kind, ts)
        self.open, self.last = rec, None
        return rec

    def _close(self, rec: TraceRecord, ts: float) -> TraceRecord:
        self._hold(rec, ts)
        rec.end = ts
        self.open, self.last = None, rec
        return rec

    def _hold(self, rec: TraceRecord, ts: float) -> None:
        """Each summarised value's last sample holds until ``ts``, and no further."""
        for s in self.spec.summaries:
            if (st := rec.stats.get(s.point)) is not None:
                st.hold(ts, s.above)

    def _sample(self, rec: TraceRecord, ts: float, values: Mapping[str, Value],
                read: Collection[str], inputs: Collection[str]) -> None:
        for s in self.spec.summaries:
            if s.point not in read:
                continue
            v = values.get(s.point)
            if v.__class__ in (int, float) and math.isfinite(v):
                st = rec.stats.get(s.point)
                if st is None:
                    st = rec.stats[s.point] = Stats()
                st.add(float(v), ts, s.above)
        if self.spec.recipe is not None and self.spec.recipe in values:
            rec.recipe = values[self.spec.recipe]
        for c in inputs:
            if c not in rec.inputs and c != rec.code:
                rec.inputs.append(c)

    def to_json(self, now: float) -> dict[str, Any]:
        return {"saved": now, "open": self.open.to_json() if self.open else None,
                "last": self.last.to_json() if self.last else None,
                "unknown_since": self.unknown_since, "code": self.code,
                "inputs": self.inputs}

    def restore(self, doc: Mapping[str, Any]) -> None:
        """State saved by a gateway that stopped: the time since it was saved is unknown
        (an open record is marked interrupted; its gap counts from the save)."""
        self.open = TraceRecord.from_json(doc["open"]) if doc.get("open") else None
        self.last = TraceRecord.from_json(doc["last"]) if doc.get("last") else None
        self.unknown_since = doc.get("unknown_since")
        self.code = doc.get("code")
        self.inputs = {str(k): str(v) for k, v in (doc.get("inputs") or {}).items()}
        if self.open is not None:
            self.open.interrupted = True
            if self.unknown_since is None:
                self.unknown_since = float(doc["saved"])
            for st in self.open.stats.values():
                st.last_ts = None
