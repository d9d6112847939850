"""JSON logs carry the device id on every line logged from that device's tasks."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from gateway.logs import DeviceFilter, JsonFormatter, current_device


async def test_device_id_follows_the_task_and_its_children() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(DeviceFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("edgegw.test.logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    async def device_task(dev: str) -> None:
        current_device.set(dev)
        log.info("connect")

        async def child() -> None:
            log.warning("timeout")

        await asyncio.create_task(child())

    try:
        await asyncio.gather(device_task("cnc-01"), device_task("press-07"))
        log.info("gateway line")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert {(d["msg"], d.get("device")) for d in lines} == {
        ("connect", "cnc-01"), ("timeout", "cnc-01"), ("connect", "press-07"),
        ("timeout", "press-07"), ("gateway line", None)}
    assert all({"ts", "level", "logger", "msg"} <= set(d) for d in lines)
