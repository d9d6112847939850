"""Commissioning an OPC UA server nobody configured yet: ``edgegw browse --endpoint``
without a config prints the namespace table and every variable in full (shape, unit,
EURange, writable), writes a starting profile, and that profile reads the machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from firmware_sim.sim import Simulator, write_yaml

from drivers.opcua.address import resolve
from gateway.profiles import OpcuaPoint, OpcuaSettings
from tests.drivers.opcua.helpers import served
from tests.e2e.harness import run_cli

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]


async def test_browse_an_endpoint_write_a_profile_and_read_with_it(tmp_path: Path) -> None:
    async with Simulator(0.05) as sim:
        sim.add_profile_device("imm", "moldtech/imm-ua-e77", seed=3)
        await sim.opcua["imm"].start()
        url = sim.opcua["imm"].url
        prof = tmp_path / "profiles" / "moldtech" / "imm-new.yaml"
        prof.parent.mkdir(parents=True)
        code, out, err = await run_cli(
            "browse", "--endpoint", url, "ns=2;s=IMM", "--state-dir", str(tmp_path),
            "-c", str(tmp_path / "none.yaml"), "--write-profile", str(prof), "--depth", "6",
            "--vendor", "Moldtech", "--model", "IMM-NEW")
        assert code == 0, err
        assert "namespaces:\n  0  http://opcfoundation.org/UA/" in out
        assert "  2  urn:moldtech:imm-ua:e77" in out
        line = next(ln for ln in out.splitlines() if "PressureCurve" in ln)
        assert "Double[16] = [" in line and "[bar]" in line and "EURange 0..100" in line
        assert 'JobName  ns=2;s=IMM.Jobs.ActiveJob.JobName  String = "JOB-2026-1123-07"' in out
        assert "CycleTimeSetpoint" in out and "writable" in out
        assert "MachineMode" in out and "(enumeration)" in out
        assert "wrote" in err and "25 point(s)" in err

        doc = yaml.safe_load(prof.read_text())
        assert doc["opcua"] == {"namespaces": {"e77": "urn:moldtech:imm-ua:e77"},
                                "root": "nsu=urn:moldtech:imm-ua:e77;s=IMM"}
        by = {p["name"]: p for p in doc["points"]}
        assert by["injection_unit1_pressure_curve"] == {
            "name": "injection_unit1_pressure_curve", "path": "e77:Injection/e77:Unit1/"
            "e77:PressureCurve", "type": "float64", "array": True, "unit": "bar"}
        assert by["machine_status_machine_mode"]["enum"] is True
        assert by["jobs_active_job_cycle_time_setpoint"]["access"] == "rw"

        # the written profile, as written, reads every point of the machine
        cfg = {"gateway": {"id": "gw-browse"}, "uplink": {"mqtt": {"port": 1}},
               "profiles_dir": [str(tmp_path / "profiles")],
               "devices": [{"id": "imm", "profile": "moldtech/imm-new",
                            "connection": {"kind": "opcua", "endpoint": url}}]}
        write_yaml(tmp_path / "gateway.yaml", cfg)
        code, out, err = await run_cli("read", "-c", str(tmp_path / "gateway.yaml"), "imm")
        assert code == 0, out + err
        assert "BAD" not in out and "warning" not in err.lower(), out + err
        assert "machine_status_machine_mode" in out and "AUTOMATIC" in out


async def test_browse_a_secured_endpoint_names_the_certificate_to_trust(tmp_path: Path) -> None:
    async with Simulator(0.05, pki=tmp_path / "sim") as sim:
        sim.add_profile_device("cnc", "acme/cnc-ua500", secure=True)
        srv = sim.opcua["cnc"]
        await srv.start()
        args = ["browse", "--endpoint", srv.url, "--security", "Basic256Sha256/SignAndEncrypt",
                "--trust", str(srv.cert_path), "--state-dir", str(tmp_path / "gw"),
                "-c", str(tmp_path / "none.yaml"), "--depth", "2"]
        own = tmp_path / "gw" / "pki" / "own" / "cert.der"
        code, _, err = await run_cli(*args)
        assert code == 2 and "the server does not trust our certificate" in err, err
        assert str(own) in err
        assert srv.pki is not None
        (srv.pki / "trusted").mkdir(parents=True, exist_ok=True)
        shutil.copy(own, srv.pki / "trusted" / "gw.der")
        code, out, err = await run_cli(*args)
        assert code == 0, err
        assert "urn:acme:cnc-ua500:machine" in out and "Machine" in out


async def test_a_failed_browse_path_names_the_missing_segment(tmp_path: Path) -> None:
    async with served(tmp_path, "cnc", "acme/cnc-ua500") as (_sim, drv):
        assert drv._client is not None
        settings = OpcuaSettings(namespaces={"cnc": "urn:acme:cnc-ua500:machine"})
        pts = [OpcuaPoint(name="a", path="Machine/Spindel/Speed"),
               OpcuaPoint(name="b", path="Maschine/Spindle/Speed"),
               OpcuaPoint(name="c", path="Machine/Spindle/Speed")]
        out = await resolve(drv._client, pts, settings)
    ns = drv.device.profile.opcua
    assert ns is not None
    assert out["a"] == "browse path not found: no 2:Spindel below Machine (BadNoMatch)"
    assert out["b"] == "browse path not found: no 2:Maschine below the root i=85 (BadNoMatch)"
    assert not isinstance(out["c"], str)
