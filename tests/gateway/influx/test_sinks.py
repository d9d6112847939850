"""The InfluxDB 1.x sink against a real influxd: it creates its database, and creates it
again when it is gone (dropped by an administrator, or a server restored empty), instead
of retrying "database not found" forever."""

from __future__ import annotations

import urllib.parse
import urllib.request

import pytest

from gateway.influx.sinkconfig import InfluxV1
from gateway.influx.sinks import InfluxV1Sink, Retry
from tests.support.servers import Influxd


def _drop(server: Influxd, db: str) -> None:
    body = urllib.parse.urlencode({"q": f'DROP DATABASE "{db}"'}).encode()
    with urllib.request.urlopen(f"{server.url}/query", data=body, timeout=10) as r:
        r.read()  # the answer read: a connection closed early can cancel the statement


async def test_a_dropped_database_is_created_again(influx: Influxd) -> None:
    sink = InfluxV1Sink(InfluxV1.model_validate(
        {"kind": "influxdb-v1", "url": influx.url, "database": "plant"}))
    await sink.write(b"m,device=a v=1i 1700000000000\n")
    _drop(influx, "plant")
    with pytest.raises(Retry, match="database not found"):
        await sink.write(b"m,device=a v=2i 1700000001000\n")
    await sink.write(b"m,device=a v=3i 1700000002000\n")  # the retry creates it again
    (series,) = influx.query("SELECT v FROM m", "plant")
    assert [v[1] for v in series["values"]] == [3]  # type: ignore[index]
