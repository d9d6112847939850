"""Identifier code grammar: examples per rule, and properties (hypothesis)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.identifiers.codes import CodeError, is_code, normalise, parse
from gateway.identifiers.passwords import v1_password


def test_v1_login_password_vector() -> None:
    assert v1_password("123456", dt.date(2019, 8, 15)) == \
        "58e2c92c46485fdbc35fdcd0814d6c0f000cad5aa156848ca5edaf29406b7661"


@pytest.mark.parametrize(("text", "prefix", "suffix"), [
    ("88.118.8/TYRE-2026-000123", "88.118.8", "TYRE-2026-000123"),
    ("  88.1021.150/002 ", "88.1021.150", "002"),
    ("88.118.8/a.b_c-D", "88.118.8", "a.b_c-D"),
    ("86.709.612/cc", "86.709.612", "cc"),
])
def test_valid_codes(text: str, prefix: str, suffix: str) -> None:
    c = parse(text)
    assert (c.prefix, c.suffix) == (prefix, suffix)
    assert normalise(text) == f"{prefix}/{suffix}"


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty code"),
    ("88.118.8", "exactly one '/'"),
    ("88.118.8/a/b", "exactly one '/'"),
    ("/TYRE-1", "prefix before '/' is empty"),
    ("88.118.8/", "suffix after '/' is empty"),
    ("88..8/x", "empty segment"),
    (".88.8/x", "empty segment"),
    ("88.1a8.8/x", "prefix segments are digits; '1a8'"),
    ("88/x", "at least the enterprise segment"),
    ("88.118.8/TYRE 1", "character ' ' is not allowed"),
    ("88.118.8/TYRE#1", "character '#'"),
    ("88.118.8/.x", "does not start or end with '.'"),
    ("88.118.8/x.", "does not start or end with '.'"),
    ("88." + "1" * 70 + "/x", "prefix of 73 characters; at most 64"),
    ("88.118.8/" + "x" * 120, "129 characters; a code has at most 128"),
])
def test_each_rule_has_its_message(text: str, says: str) -> None:
    with pytest.raises(CodeError) as ei:
        parse(text)
    assert says in str(ei.value)
    assert not is_code(text)


segment = st.from_regex(r"[0-9]{1,6}", fullmatch=True)
suffix = st.from_regex(r"[A-Za-z0-9_-]([A-Za-z0-9._-]{0,30}[A-Za-z0-9_-])?", fullmatch=True)


@given(st.lists(segment, min_size=2, max_size=5), suffix)
def test_generated_codes_parse_and_round_trip(segments: list[str], sfx: str) -> None:
    text = ".".join(segments) + "/" + sfx
    if len(".".join(segments)) > 64:
        return
    c = parse(text)
    assert str(c) == text and parse(str(c)) == c


@given(st.text(max_size=150))
def test_anything_either_parses_to_a_valid_code_or_raises_code_error(text: str) -> None:
    try:
        c = parse(text)
    except CodeError:
        return
    s = str(c)
    assert len(s) <= 128 and s.count("/") == 1 and len(c.prefix) <= 64
    assert parse(s) == c  # normal form is stable
