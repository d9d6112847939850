"""A product's record as the data of its code at the identifier node, and back.

The values (index, type, value; strings of at most 255 characters, as the node takes):

=====  ===============  ==============================================================
index  type             value
=====  ===============  ==============================================================
2100   ``trace.kind``   ``product`` or ``batch``
2101   ``machine``      the machine's identifier code (a reference: resolve it)
2102   ``station``      the gateway's device id of the machine
2103   ``start``        start, ISO 8601 UTC with milliseconds
2104   ``end``          end, the same
2105   ``recipe``       the recipe/program
2106   ``verdict``      ``pass`` or ``fail``
2107   ``why``          the limits broken (``; ``-separated), cut at 255
2108   ``interrupted``  ``true`` when time is missing (gateway/device down, resumed)
2109   ``gateway``      the gateway's id
2120+  ``summary``      one per summarised point, in the profile's order:
                        ``<point> min=.. max=.. mean=.. final=.. n=.. above_s=..``
2160+  ``input``        one per input (material batch) code: a reference to its handle
=====  ===============  ==============================================================

Indexes from 2100 leave 2000-2099 to the configured values of the kind (station,
gateway, ...: identifiers.values). At most 40 summaries and 40 inputs are registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.identifiers.client import MAX_VALUE, Value
from gateway.model import Value as FieldValue
from gateway.trace.spec import STATS, TraceSpec

KIND, MACHINE, STATION, START, END, RECIPE, VERDICT, WHY, INTERRUPTED, GATEWAY = range(
    2100, 2110)
SUMMARY0, INPUT0, MAX_EACH = 2120, 2160, 40
_SCALARS = {KIND: "trace.kind", MACHINE: "machine", STATION: "station", START: "start",
            END: "end", RECIPE: "recipe", VERDICT: "verdict", WHY: "why",
            INTERRUPTED: "interrupted", GATEWAY: "gateway"}


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


def node_values(spec: TraceSpec, fields: Mapping[str, FieldValue], start_ms: int,
                device: str, gateway: str) -> tuple[Value, ...]:
    """The record (its batch fields) as the code's values at the node."""
    end = fields.get("end")
    scalars: dict[int, object] = {
        KIND: fields.get("kind"), MACHINE: fields.get("machine"), STATION: device,
        START: iso_ms(start_ms), END: iso_ms(end if isinstance(end, int) else start_ms),
        RECIPE: fields.get("recipe"), VERDICT: fields.get("verdict"),
        WHY: fields.get("why") or None, INTERRUPTED: bool(fields.get("interrupted")),
        GATEWAY: gateway}
    out = [Value(i, _SCALARS[i], _text(v)[:MAX_VALUE]) for i, v in scalars.items()
           if v is not None]
    for k, s in enumerate(spec.summaries[:MAX_EACH]):
        parts = [f"{st}={_text(fields[f'{s.point}_{st}'])}" for st in STATS
                 if f"{s.point}_{st}" in fields]
        out.append(Value(SUMMARY0 + k, "summary", " ".join([s.point, *parts])[:MAX_VALUE]))
    inputs = str(fields.get("inputs") or "")
    for k, code in enumerate([c for c in inputs.split(",") if c][:MAX_EACH]):
        out.append(Value(INPUT0 + k, "input", code))
    return tuple(out)


def parse_values(values: list[Any]) -> dict[str, Any]:
    """A resolved code's values (the node's detail or Handle answer) as a record:
    ``{kind, machine, station, start, end, recipe, verdict, why, interrupted, gateway,
    summary: {point: {stat: number}}, inputs: [code]}`` (what is present)."""
    by_index: dict[int, str] = {}
    for v in values:
        if isinstance(v, dict) and isinstance(v.get("index"), int) and \
                isinstance(v.get("data"), dict):
            by_index[v["index"]] = str(v["data"].get("value", ""))
    out: dict[str, Any] = {}
    for i, name in _SCALARS.items():
        if i in by_index:
            out[name.removeprefix("trace.")] = by_index[i]
    if "interrupted" in out:
        out["interrupted"] = out["interrupted"] == "true"
    summary: dict[str, dict[str, float]] = {}
    for i in range(SUMMARY0, SUMMARY0 + MAX_EACH):
        if i in by_index:
            point, *parts = by_index[i].split(" ")
            stats: dict[str, float] = {}
            for part in parts:
                k, _, v = part.partition("=")
                try:
                    stats[k] = float(v)
                except ValueError:
                    continue
            summary[point] = stats
    if summary:
        out["summary"] = summary
    inputs = [by_index[i] for i in range(INPUT0, INPUT0 + MAX_EACH) if i in by_index]
    if inputs:
        out["inputs"] = inputs
    return out
