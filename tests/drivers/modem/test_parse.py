"""AT answer parsers: golden cases (tests/drivers/modem/golden.yaml) and garbage."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modem import parse
from drivers.modem.parse import ParseError

CASES = yaml.safe_load((Path(__file__).parent / "golden.yaml").read_text())
PARSERS: dict[str, Callable[[str], Any]] = {
    "csq": parse.csq, "cesq": parse.cesq, "qeng": parse.qeng_servingcell,
    "creg": lambda t: parse.registration(t, "+CREG"),
    "cereg": lambda t: parse.registration(t, "+CEREG"),
    "c5greg": lambda t: parse.registration(t, "+C5GREG"),
    "imei": parse.imei, "iccid": parse.iccid, "qgdcnt": parse.qgdcnt,
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['parser']}:{c['answer'][:30]}")
def test_golden(case: dict[str, Any]) -> None:
    fn = PARSERS[case["parser"]]
    if "error" in case:
        with pytest.raises(ParseError, match=re.escape(case["error"])):
            fn(case["answer"])
        return
    got = fn(case["answer"])
    if "value" in case:
        assert got == case["value"]
    else:
        assert got.as_dict() == case["expect"]


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)),
       text=st.one_of(st.text(max_size=120),
                      st.builds(lambda p, b: f"{p}: {b}", st.sampled_from(
                          ["+CSQ", "+CESQ", "+CREG", "+CEREG", "+C5GREG", "+QENG", "+ICCID"]),
                          st.text(alphabet="0123456789,-\"ABCDEFxyz. ", max_size=80))))
def test_garbage_only_raises_parse_error(name: str, text: str) -> None:
    with contextlib.suppress(ParseError):
        PARSERS[name](text)


def test_merge_keeps_known_fields() -> None:
    s = parse.csq("+CSQ: 18,99").merge(parse.registration("+CEREG: 2,1,\"1\",\"AB\",7", "+CEREG"))
    assert s.as_dict() == {"rssi_dbm": -77.0, "registration": "home", "registered": True,
                           "cell": "AB", "tech": "LTE"}
