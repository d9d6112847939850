"""The OPC UA driver against simulated OPC UA machines (asyncua servers on loopback)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator

from drivers.opcua.driver import OpcuaDriver
from drivers.opcua.pki import UntrustedCertificate
from gateway.errors import DeviceUnreachable, WriteRejected
from gateway.model import Quality
from tests.drivers.opcua.helpers import groups_of, opcua_driver, served

CNC = "acme/cnc-ua500"
IMM = "moldtech/imm-ua-e77"
pytestmark = pytest.mark.timeout(60)


async def _values(drv: OpcuaDriver) -> dict[str, object]:
    r = (await drv.read(tuple(drv.device.profile.expanded_points())))[0]
    return dict(zip(r.points, r.values, strict=True))


async def test_poll_reads_every_node_with_shifted_namespaces(tmp_path: Path) -> None:
    """Two extra namespaces move the profile's namespace to index 4: paths and nsu=
    NodeIds still resolve."""
    async with served(tmp_path, "cnc", CNC, sim_kw={"extra_namespaces": 2},
                      timestamps="source") as (_sim, drv):
        pts = tuple(drv.device.profile.expanded_points())
        r = (await drv.read(pts))[0]
        assert r.status is None, r.status
        vals = dict(zip(r.points, r.values, strict=True))
        assert len(vals) == 24
        assert vals["serial_number"] == "UA500-2024-0815"
        assert vals["program_name"] == "O4711-FLANGE-B"
        assert isinstance(vals["spindle_speed"], float)
        assert isinstance(vals["part_count"], int) and vals["part_count"] >= 52310
        assert vals["alarm_active"] in (True, False)
        # source timestamps kept, one per value, from the simulator's last update
        assert r.times is not None and len(r.times) == 24
        assert abs(max(r.times) - time.time()) < 5 and r.read_ts >= max(r.times)


async def test_reads_are_chunked_by_max_nodes_per_read(tmp_path: Path) -> None:
    async with served(tmp_path, "imm", IMM, max_nodes_per_read=5) as (_sim, drv):
        pts = tuple(drv.device.profile.expanded_points())
        assert len(drv._plan(pts).chunks) == 5  # 25 nodes in 5 requests
        r = (await drv.read(pts))[0]
        assert len(r.values) == 25
        # an array among the values: each value is looked at on its own (status not None)
        assert r.status == {}
        assert r.times is None  # polling: samples are at the read time by default
        assert dict(zip(r.points, r.values, strict=True))["mould_id"] == "M-5520-A"


async def test_bad_status_codes_become_bad_quality_for_those_nodes_only(tmp_path: Path) -> None:
    async with served(tmp_path, "cnc", CNC) as (sim, drv):
        sim.set_fault("cnc", "bad:spindle_speed,coolant_temp")
        await asyncio.sleep(0.3)
        r = (await drv.read(tuple(drv.device.profile.expanded_points())))[0]
        assert r.status is not None
        bad = {r.points[i]: q for i, q in r.status.items()}
        assert bad == {"spindle_speed": (Quality.BAD, "BadSensorFailure"),
                       "coolant_temp": (Quality.BAD, "BadSensorFailure")}
        assert r.values[r.points.index("spindle_speed")] is None
        assert r.values[r.points.index("feed_rate")] is not None
        sim.set_fault("cnc", "none")
        await asyncio.sleep(0.3)
        r = (await drv.read(tuple(drv.device.profile.expanded_points())))[0]
        assert r.status is None


async def test_subscriptions_push_changes_per_poll_group(tmp_path: Path) -> None:
    async with served(tmp_path, "cnc", CNC, mode="subscribe") as (_sim, drv):
        assert drv.streaming
        seen: dict[str, set[str]] = {}
        t0 = time.monotonic()
        async for group, readings in drv.stream(groups_of(drv.device)):
            for r in readings:
                assert r.times is not None and len(r.times) == len(r.values)
                seen.setdefault(group, set()).update(r.points)
            if time.monotonic() - t0 > 2.5:
                break
        # initial values of every item, then changes; each group on its own subscription
        assert set(seen) == {"fast", "process", "info"}
        assert "serial_number" in seen["info"] and "x_position" in seen["fast"]
        assert sum(len(v) for v in seen.values()) == 24


async def test_writes_are_type_checked_against_the_node_data_type(tmp_path: Path) -> None:
    async with served(tmp_path, "cnc", CNC) as (_sim, drv):
        by = drv.by_name
        await drv.write(by["spindle_override"], 85)
        assert (await _values(drv))["spindle_override"] == 85
        with pytest.raises(WriteRejected, match="UInt16; 70000 is outside"):
            await drv.write(by["spindle_override"], 70000)
        with pytest.raises(WriteRejected, match="expected an integer"):
            await drv.write(by["spindle_override"], "fast")
        with pytest.raises(WriteRejected, match="read-only"):
            await drv.write(by["spindle_speed"], 100)


async def test_browse_prints_the_machine_tree(tmp_path: Path) -> None:
    async with served(tmp_path, "imm", IMM) as (_sim, drv):
        lines, nodes, _ = await drv.browse(depth=6)
        text = "\n".join(lines)
        assert "2:IMM" in text and "  2:Barrel" in text
        assert any("Temperature" in ln and "Double = " in ln for ln in lines)
        assert len([b for b in nodes if b.path[-1].Name == "Temperature"]) == 5
        sub, _, _ = await drv.browse("ns=2;s=IMM.Jobs.ActiveJob", depth=1)
        assert any("JobName" in ln and '"JOB-2026-1123-07"' in ln for ln in sub)


async def test_unreachable_server_is_a_clear_device_error(tmp_path: Path) -> None:
    async with Simulator(0.05) as sim:
        sim.add_profile_device("cnc", CNC)  # never started
        drv = opcua_driver(sim, "cnc", tmp_path, timeout="500ms")
        with pytest.raises(DeviceUnreachable, match="connect failed"):
            await drv.connect()
        await drv.close()
        await drv.close()  # idempotent


async def test_server_restart_mid_subscription_ends_stream_then_resumes(tmp_path: Path) -> None:
    async with Simulator(0.05) as sim:
        sim.add_profile_device("cnc", CNC)
        await sim.opcua["cnc"].start()
        drv = opcua_driver(sim, "cnc", tmp_path, mode="subscribe", timeout="1s")
        await drv.connect()
        groups = groups_of(drv.device)
        try:
            async def consume() -> None:
                n = 0
                async for _ in drv.stream(groups):
                    n += 1
                    if n == 3:
                        await sim.opcua["cnc"].restart()

            with pytest.raises(DeviceUnreachable, match=r"session lost|subscription ended"):
                await consume()
            assert not drv.connected
            await drv.close()
            await drv.connect()
            names: set[str] = set()
            async for _, readings in drv.stream(groups):
                names.update(p for r in readings for p in r.points)
                if len(names) == 24:
                    break  # every current value sent again by the new subscriptions
        finally:
            await drv.close()


async def test_killed_session_and_slow_server(tmp_path: Path) -> None:
    """A session killed by the server, and a server slower than the timeout, both send
    the device offline (DeviceUnreachable); the next connect works again."""
    async with served(tmp_path, "cnc", CNC, timeout="700ms") as (sim, drv):
        pts = tuple(drv.device.profile.expanded_points())
        try:
            sim.set_fault("cnc", "kill")
            await asyncio.sleep(0.3)
            async def read_until_lost() -> None:
                for _ in range(20):  # the loss shows at the next request
                    await drv.read(pts)
                    await asyncio.sleep(0.1)

            with pytest.raises(DeviceUnreachable, match="session lost"):
                await read_until_lost()
            sim.set_fault("cnc", "none")
            await drv.close()
            await drv.connect()
            assert len((await drv.read(pts))[0].values) == 24
            sim.set_fault("cnc", "slow:2s")
            t0 = time.monotonic()
            with pytest.raises(DeviceUnreachable):
                await drv.read(pts)
            assert time.monotonic() - t0 < 1.5  # the configured timeout, not the server's delay
        finally:
            sim.set_fault("cnc", "none")


# -- security ----------------------------------------------------------------------
def _trust_client(sim: Simulator, tmp: Path) -> None:
    assert sim.pki is not None
    (sim.pki / "trusted").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "pki" / "own" / "cert.der", sim.pki / "trusted" / "gateway.der")


@pytest.mark.parametrize(("policy", "mode", "refuse_at"), [
    ("Basic256Sha256", "SignAndEncrypt", "session"),
    ("Basic256Sha256", "Sign", "session"),
    ("Aes256_Sha256_RsaPss", "SignAndEncrypt", "session"),
    ("Aes128_Sha256_RsaOaep", "SignAndEncrypt", "session"),
    # refused with a ServiceFault to OpenSecureChannel (asyncua: a bare AssertionError)
    ("Basic256Sha256", "SignAndEncrypt", "channel"),
])
async def test_secured_endpoint_after_both_sides_trust(tmp_path: Path, policy: str,
                                                       mode: str, refuse_at: str) -> None:
    async with Simulator(0.05, pki=tmp_path / "sim") as sim:
        sim.add_profile_device("cnc", CNC, secure=True, refuse_at=refuse_at)
        await sim.opcua["cnc"].start()
        srv = sim.opcua["cnc"]
        security = {"policy": policy, "mode": mode, "trust": [str(srv.cert_path)]}
        drv = opcua_driver(sim, "cnc", tmp_path, security=security)
        # the server does not know the gateway yet: refused, with the reason
        with pytest.raises(DeviceUnreachable, match="server does not trust our certificate"):
            await drv.connect()
        assert (tmp_path / "pki" / "own" / "cert.der").is_file()  # created on first run
        _trust_client(sim, tmp_path)
        await drv.connect()
        try:
            assert (await _values(drv))["serial_number"] == "UA500-2024-0815"
        finally:
            await drv.close()


async def test_untrusted_server_certificate_is_refused_and_saved(tmp_path: Path) -> None:
    async with Simulator(0.05, pki=tmp_path / "sim") as sim:
        sim.add_profile_device("cnc", CNC, secure=True)
        await sim.opcua["cnc"].start()
        drv = opcua_driver(sim, "cnc", tmp_path, security={
            "policy": "Basic256Sha256", "mode": "SignAndEncrypt"})  # default trust dir: empty
        with pytest.raises(UntrustedCertificate, match="server certificate not trusted") as ei:
            await drv.connect()
        assert "CN=edgegw-sim cnc" in str(ei.value)
        rejected = list((tmp_path / "pki" / "rejected").iterdir())
        assert len(rejected) == 1
        # moving it into the trust list (and trusting the client) heals the device
        (tmp_path / "pki" / "trusted").mkdir()
        rejected[0].rename(tmp_path / "pki" / "trusted" / rejected[0].name)
        _trust_client(sim, tmp_path)
        await drv.connect()
        await drv.close()


async def test_policy_the_server_does_not_offer(tmp_path: Path) -> None:
    async with Simulator(0.05) as sim:
        sim.add_profile_device("cnc", CNC)  # unsecured server: None only
        await sim.opcua["cnc"].start()
        drv = opcua_driver(sim, "cnc", tmp_path, security={
            "policy": "Basic256Sha256", "mode": "SignAndEncrypt"})
        with pytest.raises(DeviceUnreachable, match="no endpoint with Basic256Sha256/"
                           "SignAndEncrypt; the server offers None/None_"):
            await drv.connect()


async def test_user_name_and_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Simulator(0.05) as sim:
        sim.add_profile_device("imm", IMM, users={"edgegw": "s3cret"})
        await sim.opcua["imm"].start()
        monkeypatch.setenv("IMM_PASSWORD", "wrong")
        drv = opcua_driver(sim, "imm", tmp_path, username="edgegw", password_env="IMM_PASSWORD")
        with pytest.raises(DeviceUnreachable) as ei:
            await drv.connect()
        msg = str(ei.value)
        assert "user name or password refused (user 'edgegw')" in msg and "wrong" not in msg
        monkeypatch.setenv("IMM_PASSWORD", "s3cret")
        await drv.connect()
        try:
            assert (await _values(drv))["job_name"] == "JOB-2026-1123-07"
        finally:
            await drv.close()
