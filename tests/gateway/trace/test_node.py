"""A product record as the code's data at the identifier node, and back."""

from __future__ import annotations

from gateway.identifiers.client import Record
from gateway.trace.builder import TraceBuilder
from gateway.trace.node import node_values, parse_values
from gateway.trace.spec import TraceSpec

SPEC = TraceSpec.model_validate({"recipe": "recipe", "summaries": [
    {"point": "temp", "above": 160, "min": 150}, {"point": "pressure"}]})


def test_record_values_round_trip_and_obey_the_node_rules() -> None:
    b = TraceBuilder(SPEC)
    for i, t in enumerate([158.0, 165.5, 171.25]):
        b.observe(100.0 + i, True, "88.1.2/T-1", {"temp": t, "pressure": 21.5, "recipe": "R-7"},
                  ("temp", "pressure"), {"mixer": "88.1.2/C-1", "creel": "88.1.2/W-2"})
    [rec] = b.observe(103.0, False, None, {}, ())
    fields = rec.fields(SPEC, "88.1.2/PRESS-1")
    values = node_values(SPEC, fields, int(rec.start * 1000), "press-1", "gw-1")
    Record("88.1.2/T-1", "1.0", values).check()  # indexes >= 2000, <= 255 characters
    got = parse_values([{"index": v.index, "type": v.type,
                         "data": {"format": "string", "value": v.value}} for v in values])
    assert got["machine"] == "88.1.2/PRESS-1" and got["station"] == "press-1"
    assert got["start"] == "1970-01-01T00:01:40.000Z" and got["end"] == "1970-01-01T00:01:43.000Z"
    assert got["verdict"] == "pass" and got["recipe"] == "R-7" and got["interrupted"] is False
    assert got["inputs"] == ["88.1.2/C-1", "88.1.2/W-2"]
    assert got["summary"]["temp"] == {"min": 158.0, "max": 171.25, "mean": 164.916667,
                                      "final": 171.25, "n": 3.0, "above_s": 2.0}
    assert "above_s" not in got["summary"]["pressure"]  # no threshold: no time above
