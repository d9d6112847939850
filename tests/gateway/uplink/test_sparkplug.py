"""Sparkplug B against a real mosquitto, decoded by an independent implementation:
Google's protobuf runtime with the Tahu schema (Payload and Metric, with the field
numbers of eclipse/tahu sparkplug_b.proto, declared here). Births, aliases, seq,
bdSeq in NBIRTH and in the NDEATH will, rebirth on NCMD, DDEATH."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from firmware_sim.sim import Simulator, write_yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from gateway.app import Gateway
from gateway.config import load_config
from tests.proxy import Proxy
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.component, pytest.mark.timeout(90)]

F = descriptor_pb2.FieldDescriptorProto


def tahu_payload_class() -> Any:
    """org.eclipse.tahu.protobuf.Payload (proto2), the fields a node sends."""
    fdp = descriptor_pb2.FileDescriptorProto(name="sparkplug_b_test.proto",
                                             package="org.eclipse.tahu.protobuf",
                                             syntax="proto2")
    payload = fdp.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    for name, num, typ in [("name", 1, F.TYPE_STRING), ("alias", 2, F.TYPE_UINT64),
                           ("timestamp", 3, F.TYPE_UINT64), ("datatype", 4, F.TYPE_UINT32),
                           ("is_historical", 5, F.TYPE_BOOL), ("is_transient", 6, F.TYPE_BOOL),
                           ("is_null", 7, F.TYPE_BOOL), ("int_value", 10, F.TYPE_UINT32),
                           ("long_value", 11, F.TYPE_UINT64), ("float_value", 12, F.TYPE_FLOAT),
                           ("double_value", 13, F.TYPE_DOUBLE),
                           ("boolean_value", 14, F.TYPE_BOOL),
                           ("string_value", 15, F.TYPE_STRING),
                           ("bytes_value", 16, F.TYPE_BYTES)]:
        metric.field.add(name=name, number=num, type=typ, label=opt)
    payload.field.add(name="timestamp", number=1, type=F.TYPE_UINT64, label=opt)
    payload.field.add(name="metrics", number=2, type=F.TYPE_MESSAGE, label=rep,
                      type_name=".org.eclipse.tahu.protobuf.Payload.Metric")
    payload.field.add(name="seq", number=3, type=F.TYPE_UINT64, label=opt)
    payload.field.add(name="uuid", number=4, type=F.TYPE_STRING, label=opt)
    payload.field.add(name="body", number=5, type=F.TYPE_BYTES, label=opt)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))


Payload = tahu_payload_class()


@dataclass
class Msg:
    topic: str
    kind: str
    p: Any


@contextlib.asynccontextmanager
async def spb_subscriber(port: int, out: list[Msg]) -> AsyncIterator[None]:
    ready = asyncio.Event()

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as c:
            await c.subscribe("spBv1.0/#", qos=1)
            ready.set()
            async for m in c.messages:
                p = Payload()
                p.ParseFromString(m.payload)  # raises on bytes that are not a Payload
                out.append(Msg(str(m.topic), str(m.topic).split("/")[2], p))

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(pred: Any, what: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def value(m: Any) -> Any:
    if m.is_null:
        return None
    for f in ("string_value", "boolean_value", "double_value", "float_value", "long_value",
              "int_value"):
        if m.HasField(f):
            return getattr(m, f)
    raise AssertionError(f"metric without a value: {m}")


async def test_sparkplug_b_births_data_deaths_and_rebirth(
    tmp_path: Path, sim: Simulator, broker: Mosquitto
) -> None:
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    await sim.start()
    sim.devices["cnc"].set_state("running")  # type: ignore[union-attr]
    got: list[Msg] = []
    async with Proxy(broker.port) as link, spb_subscriber(broker.port, got):
        cfg = sim.gateway_config("gw-spb", mqtt_port=link.port, store={"kind": "memory"},
                                 health={"enabled": False})
        cfg["uplink"]["mqtt"].update(  # type: ignore[index]
            encoding="sparkplug", sparkplug={"group_id": "plant1"},
            reconnect={"initial": "100ms", "max": "300ms"})
        for d in cfg["devices"]:  # type: ignore[attr-defined]
            d["poll"] = {"fast": "200ms", "slow": "500ms"}
        write_yaml(tmp_path / "gateway.yaml", cfg)
        loaded = load_config(tmp_path / "gateway.yaml")
        names = [p.name for p in loaded.devices[0].profile.expanded_points()]
        gw = Gateway(loaded)
        task = asyncio.create_task(gw.run())
        try:
            await until(lambda: sum(m.kind == "DDATA" for m in got) >= 5, "DDATA")
            nbirth, dbirth = got[0], got[1]
            assert nbirth.topic == "spBv1.0/plant1/NBIRTH/gw-spb" and nbirth.p.seq == 0
            bd = {m.name: m for m in nbirth.p.metrics}
            assert bd["bdSeq"].datatype == 8 and bd["Node Control/Rebirth"].boolean_value is False
            b0 = bd["bdSeq"].long_value
            assert dbirth.topic == "spBv1.0/plant1/DBIRTH/gw-spb/cnc" and dbirth.p.seq == 1
            assert [m.name for m in dbirth.p.metrics] == names
            assert [m.alias for m in dbirth.p.metrics] == list(range(len(names)))
            by_name = {m.name: m for m in dbirth.p.metrics}
            assert by_name["spindle_speed"].datatype == 3  # Int32
            assert by_name["spindle_load"].datatype == 10  # scaled: Double
            assert by_name["program_name"].datatype == 12  # String
            assert by_name["alarm_active"].datatype == 11  # Boolean
            data = [m for m in got if m.kind == "DDATA"]
            assert all(m.topic == "spBv1.0/plant1/DDATA/gw-spb/cnc" for m in data)
            seqs = [m.p.seq for m in got if m.kind in ("NBIRTH", "DBIRTH", "DDATA")]
            assert seqs == list(range(len(seqs)))
            for m in data:
                assert m.p.timestamp > 0
                for mt in m.p.metrics:
                    assert not mt.name and mt.alias < len(names)  # aliases only
            seen = {names[mt.alias]: value(mt) for m in data for mt in m.p.metrics}
            seen.update({mt.name: value(mt) for mt in dbirth.p.metrics if not mt.is_null})
            assert seen["program_name"] == "O4711-FLANGE"
            assert seen["program_number"] == 4711
            assert isinstance(seen["spindle_load"], float)

            # the link dies: the broker publishes our will, NDEATH with the same bdSeq
            n = len(got)
            link.cut()
            await until(lambda: any(m.kind == "NDEATH" for m in got[n:]), "NDEATH")
            death = next(m for m in got[n:] if m.kind == "NDEATH")
            assert {m.name: m.long_value for m in death.p.metrics} == {"bdSeq": b0}
            await until(lambda: any(m.kind == "DBIRTH" for m in got[n:]), "rebirth on connect")
            again = next(m for m in got[n:] if m.kind == "NBIRTH")
            assert again.p.seq == 0
            assert {m.name: m.long_value for m in again.p.metrics}["bdSeq"] == (b0 + 1) % 256

            # a host asks for a rebirth
            n = len(got)
            cmd = Payload(timestamp=1, metrics=[Payload.Metric(
                name="Node Control/Rebirth", datatype=11, boolean_value=True)])
            async with aiomqtt.Client("127.0.0.1", broker.port) as host:
                await host.publish("spBv1.0/plant1/NCMD/gw-spb", cmd.SerializeToString(), qos=1)
            await until(lambda: [m.kind for m in got[n:] if "BIRTH" in m.kind][:2]
                        == ["NBIRTH", "DBIRTH"], "NBIRTH and DBIRTH after NCMD")

            # the device goes away: DDEATH
            await sim.tcp["cnc"].stop()
            await until(lambda: any(m.kind == "DDEATH" for m in got), "DDEATH")
            assert next(m for m in got if m.kind == "DDEATH").topic == \
                "spBv1.0/plant1/DDEATH/gw-spb/cnc"
        finally:
            gw.stop()
            await asyncio.wait_for(task, 15)


# -- array datatypes (Sparkplug 3.0, 6.4.17: bytes_value, little-endian packed) ----------
def _one_metric(datatype: int, value: object) -> Any:
    from gateway.uplink import sparkplug as spb

    p = Payload()
    p.ParseFromString(spb.payload(1, 0, [spb.metric(3, 1, datatype, value)]))
    return p.metrics[0]


def test_array_metrics_match_the_specification_examples() -> None:
    from gateway.uplink import sparkplug as spb

    m = _one_metric(spb.INT32_ARRAY, (123456789, 987654321))
    assert m.datatype == 24
    assert m.bytes_value == bytes([0x15, 0xCD, 0x5B, 0x07, 0xB1, 0x68, 0xDE, 0x3A])
    bools = [False, False, True, True, False, True, False, False, True, True, False, True]
    m = _one_metric(spb.BOOLEAN_ARRAY, bools)
    assert m.datatype == 32 and m.bytes_value[:5] == bytes([0x0C, 0, 0, 0, 0x34])
    assert m.bytes_value[5] & 0xF0 == 0xD0  # the last 4 bits: do not care
    m = _one_metric(spb.STRING_ARRAY, ["ABC", "hello"])
    assert m.bytes_value == b"ABC\x00hello\x00"
    m = _one_metric(spb.INT8_ARRAY, [-23, 123])
    assert m.bytes_value == bytes([0xE9, 0x7B])
    m = _one_metric(spb.DOUBLE_ARRAY, (1.5, -2.25))
    assert m.datatype == 31 and m.bytes_value == bytes.fromhex("000000000000f83f00000000000002c0")


def test_array_datatypes_from_the_profile_and_from_values() -> None:
    from gateway.uplink import sparkplug as spb

    assert spb.datatype("float64[]", False) == spb.DOUBLE_ARRAY
    assert spb.datatype("int32[]", True) == spb.DOUBLE_ARRAY  # scaled: doubles
    assert spb.datatype("bool[]", False) == spb.BOOLEAN_ARRAY
    assert spb.datatype("[]", False, ["a"]) == spb.STRING_ARRAY
    assert spb.datatype(None, False, [1, 2]) == spb.INT64_ARRAY
    # a value that does not fit the birth datatype is sent as null, not as garbage
    m = spb.safe_metric(1, 1, spb.INT16_ARRAY, ["x"])
    p = Payload()
    p.ParseFromString(spb.payload(1, 0, [m]))
    assert p.metrics[0].is_null
