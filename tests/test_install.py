"""scripts/install into a temporary prefix: a real (non-editable) pip install of the
package, used from outside the source tree; the units point at it and verify; a second
run keeps the integrator's config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.component, pytest.mark.timeout(600)]


def test_install_into_a_prefix(tmp_path: Path) -> None:
    prefix, conf, units = tmp_path / "opt", tmp_path / "etc", tmp_path / "units"
    cmd = [str(ROOT / "scripts" / "install"), "--prefix", str(prefix), "--config-dir",
           str(conf), "--unit-dir", str(units), "--no-user", "--no-systemctl"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=540, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    exe = prefix / "bin" / "edgegw"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # from a directory outside the source tree: only the installed package is seen
        return subprocess.run([str(exe), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60, check=False)

    assert run("--version").stdout.startswith("edgegw ")
    # the shipped profiles come with the package (edgegw_profiles)
    assert "acme/cnc-vmc850" in run("profiles").stdout.split()
    # the example names the OPC UA password file the integrator provides: named until then
    missing = run("check-config", str(conf / "gateway.yaml"))
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert f"password_file: {conf}/cnc-ua-02.pass does not exist" in missing.stderr
    secret = conf / "cnc-ua-02.pass"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    ok = run("check-config", str(conf / "gateway.yaml"))
    assert ok.returncode == 0 and ": ok (" in ok.stdout, ok.stdout + ok.stderr
    assert (conf.stat().st_mode & 0o777) == 0o750
    assert "init" in run("certs", "--help").stdout  # every subpackage is in the wheel
    # the wheel holds no test launchers (issue 19): no servers.py, no tests package
    site = next(prefix.glob("**/site-packages"))
    assert (site / "firmware_sim" / "sim.py").exists()
    shipped = [site / "firmware_sim", site / "gateway", site / "drivers"]
    assert not [p for d in shipped for p in d.glob("**/servers.py")]
    assert not (site / "tests").exists()
    unit = (units / "edgegw.service").read_text()
    assert f"ExecStart={exe} run -c ${{EDGEGW_CONFIG}}" in unit
    assert f"EDGEGW_CONFIG={conf}/gateway.yaml" in unit
    if shutil.which("systemd-analyze"):
        for name in ("edgegw.service", "edgegw-ingest.service", "edgegw-dashboard.service"):
            v = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / name)],
                               capture_output=True, text=True, timeout=60, check=False)
            assert v.returncode == 0, v.stdout + v.stderr
    # again (an upgrade): the edited config stays
    (conf / "gateway.yaml").write_text("version: 1\ngateway: {id: kept}\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=540, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept" in (conf / "gateway.yaml").read_text()
