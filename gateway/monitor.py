"""``edgegw monitor``: print live decoded telemetry from a broker (commissioning, demo)."""

from __future__ import annotations

import time
from typing import Any, TextIO

import aiomqtt
import orjson


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def _clock(ms: object) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) \
        if isinstance(ms, int | float) and ms else "?"


def render(topic: str, doc: dict[str, Any], max_points: int = 8) -> str:
    if topic.endswith("/seen"):
        return (f"[seen] {doc.get('gw')} last seen online {_clock(doc.get('ts'))} "
                f"(connected since {_clock(doc.get('since'))})")
    if topic.endswith("/status") and doc.get("status") == "offline":
        return (f"[status] {doc.get('gw')} offline: {doc.get('reason', '?')} (connected "
                f"{_clock(doc.get('since'))})")
    if topic.endswith("/status"):
        devs = doc.get("devices", {})
        states = " ".join(f"{k}={v.get('state')}" for k, v in devs.items())
        store = doc.get("store", {})
        extra = (f" published={doc.get('published')} queued={store.get('entries')} "
                 f"dropped={store.get('dropped')}") if store else ""
        return f"[status] {doc.get('gw')} {doc.get('status')}{extra} {states}".rstrip()
    ts = time.strftime("%H:%M:%S", time.localtime(doc.get("ts", 0) / 1000))
    ms = doc.get("ts", 0) % 1000
    pts = doc.get("p", {})
    items = [f"{k}={_fmt(v)}" for k, v in list(pts.items())[:max_points]]
    more = f" (+{len(pts) - max_points})" if len(pts) > max_points else ""
    bad = f" BAD:{len(doc['q'])}" if doc.get("q") else ""
    err = f" err={doc['err']}" if doc.get("err") else ""
    return (f"{ts}.{ms:03d} {doc.get('dev', '?'):24} {doc.get('state') or '-':12} "
            f"{' '.join(items)}{more}{bad}{err}")


async def monitor(host: str, port: int, topic: str, out: TextIO, count: int = 0) -> None:
    seen = 0
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(topic, qos=1)
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else b""
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                print(f"{m.topic}: {len(payload)} bytes (not JSON)", file=out, flush=True)
                continue
            print(render(str(m.topic), doc), file=out, flush=True)
            seen += 1
            if count and seen >= count:
                return
