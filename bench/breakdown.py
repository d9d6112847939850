"""CPU per device poll by part of the gateway, from a py-spy raw profile.

    python3 bench/breakdown.py PROFILE.txt [US_PER_POLL]

PROFILE.txt is ``py-spy record -f raw`` output (collapsed stacks, one line per stack
with its sample count). Each sample is given to the part of the gateway that owns its
innermost frame, so time spent in C (a SQLite statement, a socket send) counts for the
Python frame that called it. With US_PER_POLL (the gateway's CPU per device poll, from
the benchmark: CPU seconds / polls), each share is also shown in microseconds.
"""

from __future__ import annotations

import collections
import sys

#: (part, test on the innermost frame's file path), first match wins
PARTS: list[tuple[str, str]] = [
    ("pymodbus client (transaction, framer, PDU decode)", "pymodbus/"),
    ("Modbus TCP link (drivers/modbus/tcp.py)", "drivers/modbus/tcp"),
    ("Modbus driver and register decode (drivers/modbus)", "drivers/modbus"),
    ("spool: SQLite insert, select, delete, commit", "store/sqlite"),
    ("spool: SQLite insert, select, delete, commit", "sqlite3"),
    ("store policy (gateway/store/base.py)", "gateway/store/"),
    ("pipeline (scale, deadband, quality, state)", "gateway/pipeline"),
    ("pipeline (scale, deadband, quality, state)", "gateway/state"),
    ("encode (gateway/wire)", "gateway/wire"),
    ("MQTT client (gateway/uplink/mqttwire.py)", "gateway/uplink/mqttwire"),
    ("uplink engine and MQTT transport (gateway/uplink)", "gateway/uplink"),
    ("paho + aiomqtt (publish, PUBACK, socket callbacks)", "paho/"),
    ("paho + aiomqtt (publish, PUBACK, socket callbacks)", "aiomqtt/"),
    ("scheduler (gateway/scheduler.py)", "gateway/scheduler"),
    ("asyncio: selector (epoll)", "selectors.py"),
    ("asyncio: loop, handles, tasks, timers, futures", "asyncio/"),
    ("threads (checkpointer, locks)", "threading.py"),
]


def part(frame: str) -> str:
    path = frame.rsplit("(", 1)[-1].split(":", maxsplit=1)[0]
    for name, needle in PARTS:
        if needle in path:
            return name
    return "other"


def breakdown(path: str) -> tuple[int, collections.Counter[str]]:
    shares: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack:
                continue
            total += int(n)
            shares[part(stack.split(";")[-1])] += int(n)
    return total, shares


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    total, shares = breakdown(sys.argv[1])
    per_poll = float(sys.argv[2]) if len(sys.argv) > 2 else None
    print(f"{total} samples")
    for name, n in shares.most_common():
        us = f"{per_poll * n / total:6.0f} us  " if per_poll else ""
        print(f"{100 * n / total:5.1f} %  {us}{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
