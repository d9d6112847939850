"""Tracers fed like the scheduler feeds them, and the state file over a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.config import Device, DeviceConfig
from gateway.profiles import Profile
from gateway.trace.service import TraceService

PROFILE = Profile.model_validate({
    "vendor": "mix", "model": "m1", "version": "2",
    "state": {"default": "idle", "rules": [{"state": "running",
                                            "when": {"point": "step", "eq": 1}}]},
    "trace": {"active_point": "mixing", "batch_output": True,
              "summaries": [{"point": "temp", "max": 120}]},
    "points": [{"name": "step", "table": "holding", "address": 0},
               {"name": "mixing", "table": "coil", "address": 0, "type": "bool"},
               {"name": "temp", "table": "holding", "address": 1}]})


def device() -> Device:
    dc = DeviceConfig.model_validate({"id": "mixer-1", "profile": "mix/m1",
                                     "identifier": "88.1.2/MIXER-1",
                                     "connection": {"kind": "modbus-tcp", "host": "x"}})
    return Device(dc, "mix/m1", PROFILE, PROFILE.workarounds, dict(PROFILE.poll_groups))


class Pipe:
    def __init__(self) -> None:
        self.state: str | None = "idle"
        self.current: dict[str, Any] = {}
        self.ids: dict[str, str] = {"device": "88.1.2/MIXER-1"}
        self.inputs: dict[str, str] = {}

    def state_known(self) -> bool:
        return True


def test_a_mixer_makes_batch_records_while_its_active_point_is_true(tmp_path: Path) -> None:
    got: list[tuple[Any, ...]] = []
    svc = TraceService("gw1", tmp_path, lambda *a: got.append(a))
    t = svc.tracer(device())
    assert t is not None and t.profile == "mix/m1/trace@2"
    pipe = Pipe()
    pipe.ids["batch"] = "88.1.2/CMP-B-7"  # the batch code the mixer's label printer got
    pipe.inputs["silo-reader"] = "88.1.2/CARBON-3"
    for i, (mixing, temp) in enumerate([(True, 100), (True, 118), (False, 90)]):
        pipe.current = {"mixing": mixing, "temp": temp}
        out = t.observe(10.0 + i, pipe, {"mixing", "temp"})  # type: ignore[arg-type]
    [batch] = out
    assert batch.profile == "mix/m1/trace@2" and batch.ts_ms == 10_000
    assert batch.values["kind"] == "batch" and batch.values["code"] == "88.1.2/CMP-B-7"
    assert batch.values["temp_max"] == 118 and batch.values["verdict"] == "pass"
    assert batch.values["inputs"] == "88.1.2/CARBON-3"
    assert batch.ids == {"device": "88.1.2/MIXER-1"}  # the code is a field, not a tag
    kind, code, dev, profile, values = got[0]
    assert (kind, code, dev, profile) == ("batch", "88.1.2/CMP-B-7", "mixer-1", "mix/m1")
    start = next(v.value for v in values if v.type == "start")
    assert start == "1970-01-01T00:00:10.000Z"  # the record's start, 10_000 ms


def test_an_open_record_survives_a_restart_through_the_state_file(tmp_path: Path) -> None:
    svc = TraceService("gw1", tmp_path)
    t = svc.tracer(device())
    assert t is not None
    pipe = Pipe()
    pipe.ids["batch"] = "88.1.2/CMP-B-8"
    pipe.current = {"mixing": True, "temp": 100}
    t.observe(10.0, pipe, {"temp"})  # type: ignore[arg-type]
    svc.save()
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert doc["machines"]["mixer-1"]["open"]["code"] == "88.1.2/CMP-B-8"
    svc2 = TraceService("gw1", tmp_path)
    t2 = svc2.tracer(device())
    assert t2 is not None and t2.builder.open is not None and t2.builder.open.interrupted
    pipe2 = Pipe()  # a new pipeline: no context yet (the reader has not scanned again)
    pipe2.current = {"mixing": False}
    [batch] = t2.observe(20.0, pipe2, {"mixing"})  # type: ignore[arg-type]
    assert batch.values["code"] == "88.1.2/CMP-B-8" and batch.values["interrupted"] is True
    assert batch.values["temp_n"] == 1
