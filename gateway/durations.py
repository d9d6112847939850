"""Durations in config files: ``250ms``, ``1s``, ``5m``, ``2h``, ``7d`` or plain seconds;
and time zone names."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Return seconds; raise ``ValueError`` with the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 500ms, 1s, 5m or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _RE.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(
            f"expected a duration like 500ms, 1s, 5m or a number of seconds, got {value!r}"
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def time_zone(value: str) -> str:
    """An IANA time zone name (``Europe/Berlin``); ``ValueError`` naming the form."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin "
                         "or Asia/Shanghai)") from None
    return value


TimeZone = Annotated[str, AfterValidator(time_zone)]
