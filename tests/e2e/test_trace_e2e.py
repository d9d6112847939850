"""Traceability end to end: a code reader at a curing press reads tyre codes, a second
station's reader reads compound batch codes (the press's inputs); the press cures four
tyres while the gateway restarts in the middle of one cure and the broker is down in the
middle of another. Afterwards every tyre has exactly one record in InfluxDB and at the
(fake) identifier node, with its start and end, the inputs scanned, the summaries equal
to the raw samples' min/max/mean over its window, and the verdict the limits give; the
records export as EPCIS 2.0 events valid against GS1's schema, and `edgegw trace` shows
them. simulator -> `edgegw run` -> mosquitto -> `edgegw ingest` -> influxd."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from firmware_sim.idnode import FakeIdNode
from firmware_sim.sim import Simulator, write_yaml

from gateway.trace.node import parse_values
from tests.e2e.harness import GatewayProcess, id_node_config, run_cli, write_config
from tests.e2e.test_ingest_e2e import start_ingest
from tests.support.servers import Influxd, Mosquitto, influxd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PRESS = "presstec/tyre-curing-tc48"
MEAS = f"{PRESS}/trace"
TYRES = [f"88.118.8/TYRE-2026-{i:06d}" for i in range(1, 5)]
COMPOUND = ["88.118.8/CMP-B-0001", "88.118.8/CMP-B-0002"]
SCHEMA = Path(__file__).resolve().parents[2] / ".venv/share/epcis-schema/EPCISDocument.schema.json"


def rows(db: Influxd, q: str) -> list[dict[str, Any]]:
    try:
        series = db.query(q, "edgegw")
    except (OSError, RuntimeError):
        return []
    return [dict(zip(s["columns"], v, strict=True))  # type: ignore[call-overload]
            for s in series or [] for v in s["values"]]  # type: ignore[union-attr]


async def test_every_tyre_has_one_record_with_its_inputs_summary_and_verdict(
    tmp_path: Path, persistent_broker: Mosquitto, gateway: GatewayProcess
) -> None:
    if not shutil.which("influxd"):
        pytest.fail("influxd is not installed: run scripts/test")
    broker = persistent_broker
    sim = Simulator(0.05, serial_dir=tmp_path / "tty")
    tyres = sim.add_profile_device("tyres", "scanfast/bcr-200")
    compound = sim.add_profile_device("compound", "scanfast/bcr-200-lot")
    press = sim.add_profile_device("press-1", PRESS, port=0, seed=5)
    for reader in (tyres, compound):
        reader.force("code", "")  # nothing scanned yet
    press.set_state("idle")
    node = FakeIdNode({"edgegw": "123456"})
    (tmp_path / "influx").mkdir()
    with node, influxd(tmp_path / "influx") as db:
        async with sim:
            write_config(sim, gateway.config, broker)
            cfg = yaml.safe_load(gateway.config.read_text())
            for d in cfg["devices"]:
                if d["id"] in ("tyres", "compound"):
                    d["context_for"] = ["press-1"]
                else:
                    d["identifier"] = "88.118.8/PRESS-01"
            cfg["pipeline"] = {"report": "always"}  # every polled sample lands
            cfg["identifiers"] = id_node_config(
                node.url, tmp_path, [{"index": 2000, "type": "station", "value": "{device}"}])
            write_yaml(gateway.config, cfg)
            # the cure spec's 600 s above 160 degC, for cures of seconds: a site profile
            # beside the config (found before the shipped one) with 2 s
            shipped = Path(__file__).resolve().parents[2] / "profiles" / f"{PRESS}.yaml"
            site = tmp_path / "profiles" / f"{PRESS}.yaml"
            site.parent.mkdir(parents=True)
            site.write_text(shipped.read_text().replace("min_time_above: 600s",
                                                        "min_time_above: 2s"))
            ingest = start_ingest(tmp_path, broker, db)
            try:
                gateway.start()
                await asyncio.sleep(3.0)  # connected, first polls
                compound.force("code", COMPOUND[0])
                await asyncio.sleep(1.0)

                window: dict[str, tuple[float, float]] = {}  # code -> (running, idle)

                async def cure(code: str, seconds: float, middle: Any = None) -> None:
                    tyres.force("code", code)
                    await asyncio.sleep(1.0)  # the scan reaches the press's context
                    press.set_state("running")
                    t0 = time.time()
                    await asyncio.sleep(seconds / 2)
                    if middle is not None:
                        await middle()
                    await asyncio.sleep(seconds / 2)
                    press.set_state("idle")
                    window[code] = (t0, time.time())
                    await asyncio.sleep(1.0)

                async def restart() -> None:
                    assert gateway.signal(signal.SIGTERM) == 0
                    await asyncio.sleep(1.5)  # the press cures on, nobody watching
                    gateway.start()
                    await asyncio.sleep(2.0)

                async def outage() -> None:
                    broker.stop()
                    compound.force("code", COMPOUND[1])  # a new batch loaded mid-cure
                    await asyncio.sleep(2.0)
                    broker.start()

                await cure(TYRES[0], 4.0)
                await cure(TYRES[1], 4.0, restart)
                await cure(TYRES[2], 4.0, outage)
                press.force("platen_temp_top", 1400)  # 140.0 degC: below the cure spec
                await cure(TYRES[3], 3.0)
                press.force("platen_temp_top", None)
                tyres.force("code", "88.118.8/TYRE-2026-999999")  # the next tyre, idle
                await asyncio.sleep(1.0)
                assert gateway.signal(signal.SIGTERM) == 0

                for _ in range(60):
                    got = rows(db, f'SELECT * FROM "{MEAS}"')
                    if {r["code"] for r in got} >= set(TYRES) and \
                            set(TYRES) <= set(node.records) and all(
                                node.records[t]["value"][-1]["type"] == "input"
                                for t in TYRES):
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.0)
                records = rows(db, f'SELECT * FROM "{MEAS}"')
                code, out, err = await run_cli("trace", "-c", str(gateway.config),
                                               TYRES[0], "--influx", db.url)
                assert code == 0, err
                trace_out = out
                code, out, err = await run_cli("trace", "-c", str(gateway.config),
                                               TYRES[3], "--epcis")
                assert code == 0, err
                epcis = json.loads(out)
                raw = {t: rows(db, f'SELECT "platen_temp_top", "bladder_pressure" FROM '
                                   f'"{PRESS}" WHERE time >= {int(r["time"])}ms AND '
                                   f'time < {int(r["end"])}ms')
                       for r in records for t in [r["code"]]}
            finally:
                ingest.terminate()
                ingest.wait(10)
                print((tmp_path / "ingest.log").read_text()[-1500:])
                print(gateway.log.read_text()[-3000:])
    by_code = {r["code"]: r for r in records}
    print(json.dumps(records, indent=1)[:4000])
    # exactly one record per tyre (a resumed record overwrote itself: same time stamp)
    assert sorted(r["code"] for r in records) == TYRES
    for t in TYRES:
        r = by_code[t]
        assert r["machine"] == "88.118.8/PRESS-01" and r["kind"] == "product"
        # start and end: the first and last poll in the state (polls every 200 ms)
        t0, t1 = window[t]
        assert 0 <= r["time"] / 1000 - t0 < 0.6 and 0 <= r["end"] / 1000 - t1 < 0.6
        assert r["recipe"] == 305
        # the summaries are the raw samples' (every poll reported) over the window
        samples = [s["platen_temp_top"] for s in raw[t] if s["platen_temp_top"] is not None]
        assert r["platen_temp_top_n"] == len(samples) > 5
        assert r["platen_temp_top_min"] == min(samples)
        assert r["platen_temp_top_max"] == max(samples)
        assert r["platen_temp_top_mean"] == pytest.approx(sum(samples) / len(samples))
    assert by_code[TYRES[0]]["inputs"] == by_code[TYRES[1]]["inputs"] == COMPOUND[0]
    assert by_code[TYRES[2]]["inputs"] == ",".join(COMPOUND)  # the batch changed mid-cure
    assert by_code[TYRES[3]]["inputs"] == COMPOUND[1]
    assert [by_code[t]["verdict"] for t in TYRES] == ["pass", "pass", "pass", "fail"]
    assert "platen_temp_top min 140 < 150" in by_code[TYRES[3]]["why"]
    # the restart mid-cure: one record, marked, with the time nobody saw
    assert by_code[TYRES[1]]["interrupted"] is True and by_code[TYRES[1]]["gap_s"] >= 1.0
    assert by_code[TYRES[0]]["interrupted"] is False
    assert by_code[TYRES[2]]["interrupted"] is False  # a link outage loses nothing
    # at the node: the record as the code's data; inputs and machine resolve
    for t in TYRES:
        rec = parse_values(node.records[t]["value"])
        assert rec["verdict"] == by_code[t]["verdict"] and rec["machine"] == "88.118.8/PRESS-01"
        assert rec["summary"]["platen_temp_top"]["min"] == pytest.approx(
            by_code[t]["platen_temp_top_min"])
        assert node.registrations[t] == 1
    assert parse_values(node.records[TYRES[2]]["value"])["inputs"] == COMPOUND
    assert set(COMPOUND) <= set(node.records) and "88.118.8/PRESS-01" in node.records
    assert TYRES[0] in trace_out and COMPOUND[0] in trace_out and "InfluxDB" in trace_out
    # EPCIS: valid against GS1's schema, with its hash id
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(epcis)) == []
    ev = epcis["epcisBody"]["eventList"][0]
    assert ev["disposition"] == "non_conformant" and ev["eventID"].startswith("ni:///sha-256;")
    assert ev["inputEPCList"] == [f"hdl:{COMPOUND[1]}"]
