"""A product's record as a GS1 EPCIS 2.0 event (JSON-LD): a TransformationEvent from
its inputs (material batch codes) to the product, with what (identifier codes as
``hdl:`` URIs), when (the end of the process), where (the machine as the read point),
why (business step ``commissioning``, disposition ``conformant`` / ``non_conformant``
from the verdict) and the process summary as one sensor element (min, max and mean per
value, over the product's time at the machine). The recipe, verdict and the limits
broken are extension fields in the ``edgegw`` namespace.

Event ids are computed with the EPCIS event hash algorithm (CBV 2.0, section 8.9)
by GS1's reference implementation (``epcis-event-hash-generator``, an optional
dependency: ``pip install edgegw[epcis]``), so they match any other implementation:
``ni:///sha-256;<hex>?ver=CBV2.0``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from gateway.errors import ConfigError
from gateway.trace.node import iso_ms

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
NAMESPACE = {"edgegw": "urn:edgegw:"}
#: a unit of the profiles -> (EPCIS measurement type, UN/CEFACT unit code)
UNITS: dict[str, tuple[str, str]] = {
    "degC": ("Temperature", "CEL"), "°C": ("Temperature", "CEL"),
    "bar": ("Pressure", "BAR"), "kPa": ("Pressure", "KPA"), "MPa": ("Pressure", "MPA"),
    "Pa": ("Pressure", "PAL"), "s": ("Time", "SEC"), "min": ("Time", "MIN"),
    "kN": ("Force", "KNT"), "N": ("Force", "NEW"), "kg": ("Mass", "KGM"),
    "rpm": ("Frequency", "RPM"), "A": ("ElectricCurrent", "AMP"), "V": ("Voltage", "VLT"),
    "kW": ("Power", "KWT"), "%": ("Dimensionless", "P1"), "mm": ("Length", "MMT"),
}


def code_uri(code: str) -> str:
    """An identifier code as a URI (the Handle System's ``hdl:`` scheme)."""
    return "hdl:" + quote(code, safe="/.:-_~")


def event(rec: Mapping[str, Any], units: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The record (``code, kind, machine, station, gateway, start_ms, end_ms, recipe,
    verdict, why, inputs, summary: {point: {min, max, mean, ...}}``) as an event
    (without its id: :func:`with_ids`)."""
    units = units or {}
    station = f"urn:edgegw:station:{quote(str(rec.get('gateway', '')))}:" \
              f"{quote(str(rec['station']))}"
    where = code_uri(rec["machine"]) if rec.get("machine") else station
    start, end = int(rec["start_ms"]), int(rec["end_ms"])
    ev: dict[str, Any] = {
        "type": "TransformationEvent",
        "eventTime": iso_ms(end),
        "eventTimeZoneOffset": "+00:00",
    }
    inputs = [code_uri(c) for c in dict.fromkeys(rec.get("inputs") or ())]
    if inputs:
        ev["inputEPCList"] = inputs
    ev["outputEPCList"] = [code_uri(rec["code"])]
    ev["transformationID"] = f"{station}:{start}"
    ev["bizStep"] = "commissioning"
    ev["disposition"] = "conformant" if rec.get("verdict") == "pass" else "non_conformant"
    ev["readPoint"] = {"id": where}
    reports = []
    for point, stats in (rec.get("summary") or {}).items():
        mtype, uom = UNITS.get(units.get(point) or "", ("Dimensionless", None))
        r: dict[str, Any] = {"type": mtype, "component": f"edgegw:{quote(point)}"}
        for k, name in (("min", "minValue"), ("max", "maxValue"), ("mean", "meanValue")):
            if stats.get(k) is not None:
                r[name] = float(stats[k])
        if uom:
            r["uom"] = uom
        reports.append(r)
    if reports:
        ev["sensorElementList"] = [{
            "sensorMetadata": {"startTime": iso_ms(start), "endTime": iso_ms(end),
                               "deviceID": where},
            "sensorReport": reports}]
    if rec.get("recipe") is not None:
        ev["edgegw:recipe"] = str(rec["recipe"])
    ev["edgegw:verdict"] = str(rec.get("verdict", ""))
    if rec.get("why"):
        ev["edgegw:why"] = str(rec["why"])
    if rec.get("interrupted"):
        ev["edgegw:interrupted"] = True
    return ev


def document(events: list[dict[str, Any]], created_ms: int) -> dict[str, Any]:
    """An EPCISDocument holding ``events``."""
    return {"@context": [CONTEXT, NAMESPACE], "type": "EPCISDocument",
            "schemaVersion": "2.0", "creationDate": iso_ms(created_ms),
            "epcisBody": {"eventList": events}}


def event_ids(doc: Mapping[str, Any]) -> list[str]:
    """The event hash ids of a document's events (GS1's reference implementation)."""
    try:
        from epcis_event_hash_generator import (  # type: ignore[import-untyped]
            hash_generator,
            json_to_py,
        )
    except ImportError as exc:
        raise ConfigError([("edgegw[epcis]", "EPCIS event ids need the package "
                            "epcis-event-hash-generator (pip install 'edgegw[epcis]')")]) \
            from exc
    events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(dict(doc)))
    return list(hash_generator.epcis_hashes_from_events(events))


def with_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with each event's ``eventID`` set to its hash id."""
    for ev, eid in zip(doc["epcisBody"]["eventList"], event_ids(doc), strict=True):
        ev["eventID"] = eid
    return doc
