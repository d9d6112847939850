"""Frame payloads -> point values, by the profile's regex or binary layout.

:class:`Parser` returns, for one payload, the values of every point of the profile in
profile order plus the per-point problems (a group that did not match, a number that
does not parse, a short binary payload); or raises :class:`FrameRejected` when the
payload as a whole does not fit (not decodable text, no regex match), so the driver can
count it and keep listening.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence

from gateway.errors import DataError
from gateway.model import Value
from gateway.profiles import BINARY_CODES, SerialPoint, SerialSettings

_TRUE = frozenset({"1", "true", "on", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "off", "no", "n", "f"})
_INT_TYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"})


class FrameRejected(DataError):
    """The payload does not have the profile's shape (counted, then dropped)."""


def text_value(p: SerialPoint, raw: str) -> Value:
    """One regex group's text as the point's value; ValueError with a reason."""
    if p.map:
        if raw in p.map:
            return p.map[raw]
        raise ValueError(f"{raw!r} is not one of {sorted(p.map)}")
    if p.type == "string":
        return raw
    text = raw.strip()
    if p.type == "bool":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not a boolean")
    if p.type in _INT_TYPES:
        return int(text.replace("+", "", 1) if text.startswith("+") else text)
    return float(text)


class Parser:
    def __init__(self, ss: SerialSettings, points: Sequence[SerialPoint]) -> None:
        self.ss = ss
        self.points = list(points)
        self.regex = re.compile(ss.pattern) if ss.parser == "regex" and ss.pattern else None
        self.layout: list[tuple[SerialPoint, struct.Struct | None]] = []
        if ss.parser == "binary":
            for p in self.points:
                code = BINARY_CODES.get(p.type)
                order = ">" if p.byte_order == "big" else "<"
                self.layout.append((p, struct.Struct(order + code) if code else None))

    def parse(self, payload: bytes) -> tuple[list[Value], dict[int, str]]:
        if self.regex is not None:
            return self._regex(payload)
        return self._binary(payload)

    def _regex(self, payload: bytes) -> tuple[list[Value], dict[int, str]]:
        assert self.regex is not None
        try:
            text = payload.decode(self.ss.encoding)
        except UnicodeDecodeError as exc:
            raise FrameRejected(f"not {self.ss.encoding} text ({exc.reason})") from None
        m = self.regex.fullmatch(text.strip())
        if m is None:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise FrameRejected(f"does not match the pattern: {shown!r}")
        values: list[Value] = []
        problems: dict[int, str] = {}
        for i, p in enumerate(self.points):
            raw = m.group(p.regex_group)
            if raw is None:
                values.append(None)
                problems[i] = f"no {p.regex_group} in this frame"
                continue
            try:
                values.append(text_value(p, raw))
            except ValueError as exc:
                values.append(None)
                problems[i] = f"cannot parse {p.type}: {exc}"
        return values, problems

    def _binary(self, payload: bytes) -> tuple[list[Value], dict[int, str]]:
        values: list[Value] = []
        problems: dict[int, str] = {}
        for i, (p, st) in enumerate(self.layout):
            at = p.at or 0
            if st is None:  # string of `length` bytes
                n = p.length or 0
                if at + n > len(payload):
                    values.append(None)
                    problems[i] = f"payload of {len(payload)} bytes ends before byte {at + n}"
                    continue
                values.append(payload[at : at + n].rstrip(b"\0 ").decode("latin-1"))
                continue
            if at + st.size > len(payload):
                values.append(None)
                problems[i] = f"payload of {len(payload)} bytes ends before byte {at + st.size}"
                continue
            (v,) = st.unpack_from(payload, at)
            values.append(float(f"{v:.7g}") if p.type == "float32" else v)  # 7 digits
        return values, problems
