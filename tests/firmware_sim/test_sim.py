"""Simulator building blocks: PDU handling, RTU framing, faults, scenarios, behaviour."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from firmware_sim.faults import Fault, parse_fault
from firmware_sim.machine import BenchDevice, SimDevice
from firmware_sim.registers import RegisterMap
from firmware_sim.scenario import load_scenario
from firmware_sim.transport import rtu_frame, rtu_request_length

from drivers.serial.framing import crc16
from gateway.errors import ConfigError
from gateway.profiles import Profile, default_profile_dirs, load_profile

PROFILE = Profile.model_validate({"vendor": "t", "model": "m", "points": [
    {"name": "a", "table": "holding", "address": 0, "type": "uint16",
     "sim": {"kind": "constant", "value": 7}},
    {"name": "b", "table": "holding", "address": 5, "type": "uint16"},
    {"name": "c", "table": "coil", "address": 3, "type": "bool", "access": "rw"},
]})


def test_first_register_is_address_zero() -> None:
    m = RegisterMap(PROFILE)
    m.set_point(PROFILE.points[0], 0xBEEF)
    assert m.handle(struct.pack(">BHH", 3, 0, 1)) == b"\x03\x02\xbe\xef"


def test_reads_past_the_map_are_illegal_address() -> None:
    m = RegisterMap(PROFILE)
    assert m.handle(struct.pack(">BHH", 3, 5, 2)) == b"\x83\x02"
    assert m.handle(struct.pack(">BHH", 3, 0, 126)) == b"\x83\x03"
    assert m.handle(b"\x2b\x0e") == b"\xab\x01"


def test_strict_map_rejects_gaps() -> None:
    m = RegisterMap(PROFILE, strict=True)
    assert m.handle(struct.pack(">BHH", 3, 0, 6)) == b"\x83\x02"
    assert m.handle(struct.pack(">BHH", 3, 5, 1))[:2] == b"\x03\x02"


def test_coils_write_and_read() -> None:
    m = RegisterMap(PROFILE)
    assert m.handle(struct.pack(">BHH", 5, 3, 0xFF00)) == struct.pack(">BHH", 5, 3, 0xFF00)
    assert m.handle(struct.pack(">BHH", 1, 0, 4)) == b"\x01\x01\x08"


def test_write_multiple_registers() -> None:
    m = RegisterMap(PROFILE)
    assert m.handle(struct.pack(">BHHBHH", 16, 4, 2, 4, 1, 2)) == struct.pack(">BHH", 16, 4, 2)
    assert m.get_raw("holding", 4, 2) == b"\x00\x01\x00\x02"


def test_crc16_known_vector() -> None:
    # read holding registers unit 1, address 0, count 10 -> CRC C5 CD (low byte first)
    assert rtu_frame(1, bytes.fromhex("030000000a")).hex() == "01030000000ac5cd"
    assert crc16(b"123456789") == 0x4B37


def test_rtu_request_lengths() -> None:
    assert rtu_request_length(b"\x01") is None
    assert rtu_request_length(b"\x01\x03") == 8
    assert rtu_request_length(b"\x01\x10\x00\x00\x00\x02") is None
    assert rtu_request_length(b"\x01\x10\x00\x00\x00\x02\x04") == 13
    assert rtu_request_length(b"\x01\x63") == 0


@pytest.mark.parametrize(("text", "fault"), [
    ("slow:500ms", Fault("slow", delay=0.5)), ("exception:2", Fault("exception", code=2)),
    ("silence", Fault("silence")), ("drop", Fault("drop")), ("garbage", Fault("garbage")),
])
def test_parse_fault(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault


@pytest.mark.parametrize("text", ["explode", "silence:3", "slow:fast"])
def test_bad_faults(text: str) -> None:
    with pytest.raises(ValueError, match=r"fault|duration"):
        parse_fault(text)


def test_scenario_file(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("devices:\n  - {id: a, profile: acme/cnc-vmc850, port: 0}\n"
                 "faults:\n  - {at: 1s, device: a, fault: 'slow:200ms', duration: 2s}\n")
    sc = load_scenario(f)
    assert sc.faults[0].duration == 2.0
    f.write_text("devices:\n  - {id: a, profile: acme/cnc-vmc850, port: 0}\n"
                 "faults:\n  - {at: 1s, device: b, fault: silence}\n")
    with pytest.raises(ConfigError, match="unknown device 'b'"):
        load_scenario(f)


def test_machine_values_follow_state() -> None:
    prof = load_profile("acme/cnc-vmc850", default_profile_dirs())
    dev = SimDevice("c", prof, seed=1)
    dev.set_state("running")
    for _ in range(50):
        dev.step(0.5)
    speed = struct.unpack(">i", dev.map.get_raw("input", 0, 2))[0]
    assert 7000 < speed < 9000
    dev.set_state("idle")
    for _ in range(50):
        dev.step(0.5)
    assert abs(struct.unpack(">i", dev.map.get_raw("input", 0, 2))[0]) < 200
    parts = struct.unpack(">I", dev.map.get_raw("input", 20, 2))[0]
    assert parts >= 1  # 25 s of running at 0.05 parts/s


def test_bench_device_clock_and_changing_registers() -> None:
    dev = BenchDevice("b", 10)
    dev.step()
    first = dev.map.get_raw("holding", 0, 10)
    dev.step()
    second = dev.map.get_raw("holding", 0, 10)
    assert first[4:] != second[4:]
    t = struct.unpack(">I", second[:4])[0]
    import time

    assert abs(((int(time.time() * 1000) & 0xFFFFFFFF) - t) % 2**32) < 1000


def test_example_scenario_loads() -> None:
    sc = load_scenario(Path(__file__).parents[2] / "examples" / "scenario.yaml")
    assert len(sc.devices) == 8 and len(sc.faults) == 9


# -- devices as flawed as real ones ------------------------------------------------------

QUIRKY = Profile.model_validate({"vendor": "t", "model": "q", "points": [
    {"name": "a", "table": "holding", "address": 0, "type": "uint16"},
    {"name": "f", "table": "holding", "address": 2, "type": "float32"},
    {"name": "b", "table": "holding", "address": 20, "type": "uint16"},
    {"name": "c", "table": "coil", "address": 40, "type": "bool"}],
    "simulation": {"modbus": {
        "unmapped": [{"table": "holding", "start": 10, "count": 5},
                     {"table": "coil", "start": 3}],
        "max_registers": 12, "max_bits": 20, "whole_values": True,
        "slow_reads": {"over": 8, "delay": "2s"}, "silent_units": [9]}}})


@pytest.mark.parametrize(("pdu", "answer"), [
    ((3, 0, 10), "ok"),            # over mapped registers
    ((3, 5, 6), "83 02"),          # touches the hole 10-14
    ((3, 14, 1), "83 02"),
    ((3, 15, 6), "ok"),
    ((3, 0, 13), "83 03"),         # more than max_registers: illegal data value
    ((3, 3, 1), "83 02"),          # starts inside the float32 at 2-3
    ((3, 0, 3), "83 02"),          # stops inside it
    ((3, 2, 2), "ok"),
    ((1, 0, 21), "81 03"),         # more bits than max_bits
    ((1, 0, 4), "81 02"),          # an unmapped coil
    ((6, 12, 7), "86 02"),         # writes to a hole are refused too
])
def test_quirks_refuse_what_real_devices_refuse(pdu: tuple[int, int, int], answer: str) -> None:
    m = RegisterMap(QUIRKY)
    got = m.handle(struct.pack(">BHH", *pdu))
    if answer == "ok":
        assert not got[0] & 0x80, got.hex()
    else:
        assert got.hex(" ") == answer


def test_slow_long_reads_and_silent_units() -> None:
    from firmware_sim.transport import answer_delay

    dev = SimDevice("q", QUIRKY)
    assert answer_delay(dev, 1, struct.pack(">BHH", 3, 0, 8)) == 0
    assert answer_delay(dev, 1, struct.pack(">BHH", 3, 0, 9)) == 2.0
    assert answer_delay(dev, 9, struct.pack(">BHH", 3, 0, 1)) is None
    dev.fault = parse_fault("slow:500ms")
    assert answer_delay(dev, 1, struct.pack(">BHH", 3, 0, 9)) == 2.5
    dev.fault = parse_fault("silence")
    assert answer_delay(dev, 1, struct.pack(">BHH", 3, 0, 1)) is None


@pytest.mark.parametrize("hosts", ["b1:notaport", "[::1", "a b:1883"])
def test_fleet_refuses_a_broker_list_the_gateway_would_refuse(
        hosts: str, capsys: pytest.CaptureFixture[str]) -> None:
    from firmware_sim.cli import main
    assert main(["fleet", "--hosts", f"127.0.0.1:1883,{hosts}", "-G", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgegw-sim fleet: --hosts: ") and repr(hosts) in err
