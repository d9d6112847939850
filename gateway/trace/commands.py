"""``edgegw trace CODE``: a product's record, its inputs and its process summary, from
the identifier node (and InfluxDB, when given), optionally as an EPCIS 2.0 document."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.identifiers.codes import CodeError, parse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               with_config: Callable[[argparse.ArgumentParser], None]) -> None:
    tp = sub.add_parser("trace", help="a product's record: where, when, how, from what")
    with_config(tp)
    tp.add_argument("code", help="the product's (or batch's) identifier code")
    tp.add_argument("--influx", metavar="URL", help="also the record in InfluxDB 1.x "
                    "(the ingest's database), e.g. http://127.0.0.1:8086")
    tp.add_argument("--db", default="edgegw", help="InfluxDB database (default edgegw)")
    tp.add_argument("--epcis", action="store_true",
                    help="print the record as an EPCIS 2.0 document (JSON-LD) instead")
    tp.set_defaults(run=run)


def _ms(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def run(args: argparse.Namespace) -> int:
    from gateway.identifiers.client import NodeError
    from gateway.identifiers.service import node_client
    from gateway.trace.node import parse_values

    loaded = load_config(args.config)
    client = node_client(loaded.config.identifiers)
    if client is None:
        raise ConfigError([(str(loaded.path), "identifiers.node is not configured")])
    try:
        code = str(parse(args.code))
        doc = client.resolve(code)
        rec = parse_values(doc.get("values", [])) if doc else {}
        inputs = {c: client.resolve(c) for c in rec.get("inputs", [])}
        machine = client.resolve(rec["machine"]) if rec.get("machine") else None
    except (CodeError, NodeError) as exc:
        print(f"edgegw trace: {exc}", file=sys.stderr)
        return 2
    stored = _influx(args.influx, args.db, code) if args.influx else None
    if doc is None and not stored:
        print(f"{code}: not registered at the node" + (" nor in InfluxDB" if args.influx
                                                          else ""))
        return 1
    if args.epcis:
        return _epcis(code, rec, stored, loaded.config.gateway.id)
    _show(code, rec, inputs, machine, stored)
    return 0


def _influx(url: str, db: str, code: str) -> dict[str, Any] | None:
    """The newest record of ``code`` in InfluxDB (any machine type's ``.../trace``)."""
    from gateway.ingest.live import _query

    esc = code.replace("\\", "\\\\").replace("'", "\\'")
    series = _query(url, db, f"SELECT * FROM /\\/trace$/ WHERE \"code\" = '{esc}'")
    rows = [dict(zip(s["columns"], v, strict=False)) | {"measurement": s["name"]}
            for s in series for v in s.get("values", [])]
    return max(rows, key=lambda r: r["time"]) if rows else None


def _show(code: str, rec: dict[str, Any], inputs: dict[str, Any], machine: Any,
          stored: dict[str, Any] | None) -> None:
    print(code)
    for k in ("kind", "station", "machine", "start", "end", "recipe", "verdict", "why",
              "interrupted", "gateway"):
        if k in rec:
            print(f"  {k:12} {rec[k]}")
    if machine is not None:
        from gateway.identifiers.service import ResolverCache

        described = [f"{v.get('type')}={ResolverCache.value_of(machine, v.get('index', -1))}"
                     for v in machine.get("values", []) if v.get("index", 0) >= 2000]
        print(f"  {'machine is':12} {', '.join(described) or 'registered'}")
    for c, d in inputs.items():
        print(f"  {'input':12} {c}  ({'registered' if d else 'not registered'})")
    if rec.get("summary"):
        print("  process summary")
        for point, stats in rec["summary"].items():
            print(f"    {point:22} " + "  ".join(f"{k} {v:g}" for k, v in stats.items()))
    if stored is not None:
        print(f"  InfluxDB     {stored['measurement']} at "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stored['time'] / 1000))}"
              f", verdict {stored.get('verdict')}, inputs {stored.get('inputs') or '-'}")


def _epcis(code: str, rec: dict[str, Any], stored: dict[str, Any] | None,
           gateway: str) -> int:
    from gateway.trace.epcis import document, event, with_ids

    start = _ms(rec.get("start")) or (stored or {}).get("time")
    end = _ms(rec.get("end")) or (stored or {}).get("end") or start
    if start is None:
        print(f"edgegw trace: {code} has no record (start time) to export", file=sys.stderr)
        return 1
    st: dict[str, Any] = stored or {}
    full: dict[str, Any] = {"code": code, "station": rec.get("station", st.get("device", "")),
            "gateway": rec.get("gateway", gateway), "start_ms": start, "end_ms": end, **{
                k: rec[k] for k in ("kind", "machine", "recipe", "verdict", "why",
                                    "interrupted", "inputs", "summary") if k in rec}}
    out = with_ids(document([event(full)], int(time.time() * 1000)))
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
