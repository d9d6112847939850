"""OPC UA value shapes against a simulated server: enumerations (names from EnumStrings,
EnumValues, the DataTypeDefinition, or the profile), one-dimensional arrays of several
types, a declared type that disagrees with the node's DataType (warned once), and
structures (refused with a reason naming the OPC UA type)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from firmware_sim.sim import Simulator

from drivers.opcua.driver import OpcuaDriver
from drivers.opcua.read import decode as _decode
from drivers.opcua.values import to_value
from gateway.model import Quality, Reading
from gateway.pipeline import DevicePipeline
from tests.drivers.opcua.helpers import groups_of, opcua_driver

PROFILES = Path(__file__).parent / "profiles"
pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def _served(tmp: Path, **conn: Any) -> AsyncIterator[OpcuaDriver]:
    async with Simulator(0.05, profile_dirs=[PROFILES]) as sim:
        sim.add_profile_device("t", "test/ua-types")
        await sim.opcua["t"].start()
        drv = opcua_driver(sim, "t", tmp, **conn)
        await drv.connect()
        try:
            yield drv
        finally:
            await drv.close()


def _by_name(r: Reading) -> tuple[dict[str, object], dict[str, tuple[Quality, str]]]:
    status = {r.points[i]: q for i, q in (r.status or {}).items()}
    return dict(zip(r.points, r.values, strict=True)), status


async def test_enumerations_arrays_and_type_warnings_when_polled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "edgegw.opcua")
    async with _served(tmp_path) as drv:
        pts = tuple(drv.device.profile.expanded_points())
        r = (await drv.read(pts))[0]
        values, status = _by_name(r)
        assert values["mode_strings"] == "Running"
        assert values["mode_values"] == "Setup"
        assert values["mode_definition"] == "Stopped"
        assert values["mode_local"] == "On"  # the profile's names win
        assert values["mode_unnamed"] == "7"
        assert status["mode_unnamed"] == (Quality.UNCERTAIN, "no name for enumeration value 7")
        spectrum = values["spectrum"]
        assert isinstance(spectrum, tuple) and len(spectrum) == 16
        assert all(isinstance(x, float) for x in spectrum)
        assert spectrum[7] == pytest.approx(8.0 * math.sin(math.pi * 7.5 / 16), abs=1e-3)
        assert values["valves"] == (True, True, True)
        assert values["labels"] == ("L", "L")
        assert isinstance(values["raw_counts"], tuple) and len(values["raw_counts"]) == 4
        # declared bool on an Int32 node: the value is what the server sends, and the
        # disagreement is warned once per point (not at every read, not at reconnect)
        assert values["speed_as_bool"] == 2
        await drv.read(pts)
        await drv.close()
        await drv.connect()
    warned = [rec.getMessage() for rec in caplog.records if "speed_as_bool" in rec.getMessage()]
    assert warned == ["device t: point speed_as_bool: declared type bool, but the node's "
                      "DataType is Int32: values arrive as the server sends them (fix 'type' "
                      "in the profile)"]
    assert not [rec for rec in caplog.records if "spectrum" in rec.getMessage()]


async def test_arrays_and_enumerations_through_the_pipeline(tmp_path: Path) -> None:
    async with _served(tmp_path) as drv:
        pipe = DevicePipeline("gw", drv.device, heartbeat=60.0)
        pts = tuple(drv.device.profile.expanded_points())
        first = pipe.process("fast", await drv.read(pts))
        assert first is not None
        raw, _ = _by_name((await drv.read(pts))[0])
        counts = first.values["raw_counts"]
        # scale applies to each element
        assert counts == tuple(x * 0.5 for x in raw["raw_counts"])  # type: ignore[attr-defined]
        assert first.state == "running"  # a rule on an enumeration's name
        assert first.quality["mode_unnamed"][0] is Quality.UNCERTAIN
        # unchanged arrays are not re-reported (report by exception)
        again = pipe.process("fast", await drv.read(pts))
        assert again is None or "spectrum" not in again.values


async def test_arrays_and_enumerations_in_a_subscription(tmp_path: Path) -> None:
    async with _served(tmp_path, mode="subscribe") as drv:
        stream = drv.stream(groups_of(drv.device))
        seen: dict[str, object] = {}
        async for _group, readings in stream:
            for r in readings:
                seen.update(_by_name(r)[0])
            if "spectrum" in seen and "mode_values" in seen:
                break
        await stream.aclose()
        assert seen["mode_values"] == "Setup" and seen["mode_strings"] == "Running"
        assert isinstance(seen["spectrum"], tuple) and len(seen["spectrum"]) == 16


def test_structures_are_refused_with_their_opc_ua_type() -> None:
    values: list[object] = []
    status: dict[int, tuple[Quality, str]] = {}
    rng = ua.Range()
    _decode(ua.DataValue(ua.Variant(rng)), 0, values, status, [], 0.0)  # type: ignore[arg-type]
    assert values == [None]
    assert status[0] == (Quality.BAD, "unsupported OPC UA value: a structure (DataType Range): "
                         "structures are not supported (edgegw reads scalars and "
                         "one-dimensional arrays)")
    ext = ua.ExtensionObject(ua.NodeId(5001, 3), b"\x01")
    with pytest.raises(TypeError, match=r"ExtensionObject of encoding ns=3;i=5001"):
        to_value(ext)
    with pytest.raises(TypeError, match="multi-dimensional array"):
        to_value([[1, 2], [3, 4]])
    assert to_value([1.5, 2.5]) == (1.5, 2.5)
    assert to_value([ua.LocalizedText("a"), ua.LocalizedText("b")]) == ("a", "b")
