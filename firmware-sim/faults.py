"""Fault injection: how a simulated device misbehaves right now.

=============  =====================================================================
fault          behaviour
=============  =====================================================================
``none``       answers correctly
``drop``       closes every connection and refuses new ones (TCP); ignores frames (RTU)
``silence``    keeps the connection but never answers
``slow``       answers after ``delay`` seconds
``exception``  answers every request with Modbus exception ``code`` (default 4)
``garbage``    answers with random bytes
``short``      answers with a well-framed response that is missing its last bytes
``kill``       OPC UA: closes every client connection once (session loss)
``bad``        OPC UA: ``bad:<point>,<point>`` gives those variables BadSensorFailure
``badsum``     serial: one byte of every frame flipped (the checksum fails)
=============  =====================================================================

On an OPC UA server ``drop`` stops the server until the fault is cleared (a restart),
and ``exception``, ``garbage`` and ``short`` have no effect. On a serial device ``drop``
makes the port disappear (back, as a new pty under the same name, when cleared),
``garbage`` sends noise bytes and ``short`` truncated frames.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from gateway.durations import parse_duration

KINDS = ("none", "drop", "silence", "slow", "exception", "garbage", "short", "kill", "bad",
         "badsum")


@dataclass(slots=True)
class Fault:
    kind: str = "none"
    delay: float = 0.0
    code: int = 4
    points: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(KINDS)}")

    def garble(self, response: bytes, rng: random.Random) -> bytes:
        if self.kind == "garbage":
            return rng.randbytes(max(1, len(response)))
        if self.kind == "short":
            return response[: max(2, len(response) // 2)]
        return response


def parse_fault(text: str) -> Fault:
    """``slow:500ms``, ``exception:2``, ``silence``... as used on the command line."""
    m = re.fullmatch(r"([a-z]+)(?::(.+))?", text.strip())
    if not m:
        raise ValueError(f"cannot parse fault {text!r}; e.g. slow:500ms or exception:2")
    kind, arg = m.group(1), m.group(2)
    if kind == "slow":
        return Fault("slow", delay=parse_duration(arg or "1s"))
    if kind == "exception":
        return Fault("exception", code=int(arg or 4))
    if kind == "bad":
        if not arg:
            raise ValueError("fault 'bad' names points: bad:spindle_speed,feed_rate")
        return Fault("bad", points=tuple(p.strip() for p in arg.split(",") if p.strip()))
    if arg:
        raise ValueError(f"fault {kind!r} takes no argument")
    return Fault(kind)
