"""Machine state derivation from profile rules (first matching rule wins)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.model import Value
from gateway.profiles import Condition, StateSpec

OFFLINE = "offline"


def _holds(c: Condition, values: Mapping[str, Value]) -> bool:
    if c.all is not None:
        return all(_holds(x, values) for x in c.all)
    if c.any is not None:
        return any(_holds(x, values) for x in c.any)
    assert c.point is not None
    if c.point not in values:
        return False  # unknown (never read, or bad quality): the test does not hold
    v = values[c.point]
    try:
        if "eq" in c.model_fields_set:
            return v == c.eq
        if "ne" in c.model_fields_set:
            return v != c.ne
        if c.in_ is not None:
            return v in c.in_
        if v is None or isinstance(v, str | tuple):
            return False  # comparisons are for numbers
        if c.gt is not None:
            return v > c.gt
        if c.ge is not None:
            return v >= c.ge
        if c.lt is not None:
            return v < c.lt
        if c.le is not None:
            return v <= c.le
    except TypeError:
        return False
    return False


def derive_state(spec: StateSpec, values: Mapping[str, Value]) -> str:
    for rule in spec.rules:
        if _holds(rule.when, values):
            return rule.state
    return spec.default
