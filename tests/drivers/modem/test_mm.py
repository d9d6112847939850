"""The ModemManager backend: mmcli JSON (golden documents in mmcli/) and the subprocess
handling, with a stand-in mmcli executable that prints those documents (ModemManager
cannot run here: there is no module)."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from drivers.modem.errors import ModemError
from drivers.modem.mm import MmcliModem, mm_identity, mm_sample
from drivers.modem.parse import ParseError

DOCS = Path(__file__).parent / "mmcli"


def doc(name: str) -> object:
    return json.loads((DOCS / name).read_text())


def test_nsa_sample_and_identity() -> None:
    s = mm_sample(doc("modem-nsa.json"), doc("signal-nsa.json"))
    assert s.as_dict() == {
        "tech": "NR5G-NSA", "registration": "home", "registered": True, "rssi_dbm": -58.0,
        "rsrp_dbm": -87.0, "rsrq_db": -9.0, "sinr_db": 18.2, "nr_rsrp_dbm": -95.0,
        "nr_rsrq_db": -11.0, "nr_sinr_db": 9.5, "mcc_mnc": "262-01",
        "extra": {"state": "connected", "quality_pct": 72.0}}
    ident = mm_identity(doc("modem-nsa.json"), doc("sim.json"))
    assert (ident.imei, ident.iccid) == ("867698040123456", "89860121801234567890")


def test_searching_and_bad_documents() -> None:
    s = mm_sample(doc("modem-searching.json"), None)
    assert s.registered is False and s.registration == "searching" and s.tech is None
    assert s.mcc_mnc is None
    with pytest.raises(ParseError, match="no 'modem' object"):
        mm_sample({"sim": {}}, None)
    with pytest.raises(ParseError, match="not a number"):
        mm_sample(doc("modem-nsa.json"), {"modem": {"signal": {"lte": {"rsrp": "loud"}}}})


def fake_mmcli(tmp_path: Path, modem: str = "modem-nsa.json", fail: str = "") -> Path:
    """An executable that answers like mmcli from the golden documents."""
    exe = tmp_path / "mmcli"
    exe.write_text(f"""#!{sys.executable}
import sys, pathlib
args = sys.argv[1:]
docs = pathlib.Path({str(DOCS)!r})
if {fail!r} and {fail!r} in " ".join(args):
    print("error: couldn't find modem", file=sys.stderr); sys.exit(1)
with open(pathlib.Path(sys.argv[0]).with_suffix(".log"), "a") as log:
    log.write(" ".join(args) + "\\n")
if "--signal-setup=10" in args:
    print("{{}}")
elif any(a.startswith(("--set-power-state", "--reset")) for a in args):
    assert "--output-json" not in args
    print("successfully requested")
elif "--signal-get" in args:
    print((docs / "signal-nsa.json").read_text())
elif args[0] == "-b":
    print((docs / "bearer.json").read_text())
elif args[0] == "-i":
    print((docs / "sim.json").read_text())
else:
    print((docs / {modem!r}).read_text())
""")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


async def test_backend_through_the_mmcli_executable(tmp_path: Path) -> None:
    mm = MmcliModem("any", str(fake_mmcli(tmp_path)), timeout=10)
    await mm.open()
    ident = await mm.identity()
    assert ident.iccid == "89860121801234567890"
    s = await mm.sample()
    assert s.nr_sinr_db == 9.5 and s.tech == "NR5G-NSA"
    assert (s.tx_bytes, s.rx_bytes) == (614400, 1843200)  # the bearer's stats


async def test_mmcli_errors_are_modem_errors(tmp_path: Path) -> None:
    with pytest.raises(ModemError, match="couldn't find modem"):
        await MmcliModem("7", str(fake_mmcli(tmp_path, fail="-m")), timeout=10).open()
    with pytest.raises(ModemError, match="cannot run"):
        await MmcliModem("any", str(tmp_path / "no-mmcli")).open()


async def test_reset_through_mmcli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.modem import mm as mm_mod

    monkeypatch.setattr(mm_mod, "RADIO_OFF_S", 0.01)
    exe = fake_mmcli(tmp_path)
    mm = MmcliModem("0", str(exe), timeout=10)
    await mm.reset("radio")
    await mm.reset("module")
    calls = exe.with_suffix(".log").read_text().splitlines()
    assert calls == ["-m 0 --set-power-state-low", "-m 0 --set-power-state-on",
                     "-m 0 --reset"]


def test_bearer_counters() -> None:
    from drivers.modem.mm import mm_counters

    assert mm_counters(doc("bearer.json")) == (614400, 1843200)
    assert mm_counters({"bearer": {"status": {"connected": "no"}}}) == (None, None)
    assert mm_counters({"bearer": {"status": {"connected": "yes"},
                                   "stats": {"bytes-tx": "--"}}}) == (None, None)
    assert mm_counters([]) == (None, None)
