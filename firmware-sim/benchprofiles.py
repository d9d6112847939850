"""The profiles of the simulator's bench devices (data: the gateway loads them like
any profile; ``edgegw-sim bench`` writes them next to its config)."""

from __future__ import annotations

import math


def opcua_bench_profile(nodes: int, period: float,
                        sampling: float | None = None) -> dict[str, object]:
    """The profile of an OPC UA bench device (see ``OpcuaBenchDevice``). With
    ``sampling`` shorter than the period (the publishing interval), each item samples that
    often and queues every sample until the next publish."""
    sub: dict[str, object] = {}
    if sampling is not None:
        sub = {"sampling": sampling, "queue_size": max(1, math.ceil(period / sampling))}
    points: list[dict[str, object]] = [
        {"name": "t", "path": "Bench/t", "type": "uint32", "unit": "ms",
         "description": "update time, ms since epoch mod 2^32", **sub}]
    points += [{"name": f"v{i:03d}", "path": f"Bench/v{i:03d}", "type": "uint32", **sub}
               for i in range(1, nodes)]
    return {"schema": 1, "vendor": "edgegw", "model": f"bench-ua{nodes}", "version": "1",
            "protocol": "opcua", "description": "firmware simulator OPC UA bench machine",
            "opcua": {"namespaces": {"b": "urn:edgegw-sim:bench"}},
            "poll_groups": {"default": f"{round(period * 1000)}ms"}, "points": points}


def bench_profile_name(registers: int) -> str:
    return f"bench/r{registers}"


def bench_profile(registers: int, period: float) -> dict[str, object]:
    """The profile of a bench device: ``t`` (uint32 ms clock) then ``r2..r<R-1>``."""
    points: list[dict[str, object]] = [
        {"name": "t", "table": "holding", "address": 0, "type": "uint32", "unit": "ms",
         "description": "update time, ms since epoch mod 2^32"}
    ]
    points += [{"name": f"r{i}", "table": "holding", "address": i, "type": "uint16"}
               for i in range(2, registers)]
    return {"schema": 1, "vendor": "edgegw", "model": f"bench-r{registers}", "version": "1",
            "description": "firmware simulator bench device",
            "poll_groups": {"default": f"{round(period * 1000)}ms"}, "points": points}
