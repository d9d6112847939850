"""The backend side: ``ingest`` (MQTT -> InfluxDB, exactly once; ``--check``),
``dashboard`` (production dashboard from InfluxDB) and ``live`` (machine states read
back from InfluxDB 1.x)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.service import LEVELS

if TYPE_CHECKING:
    from gateway.cli.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    ing = sub.add_parser("ingest", help="backend: MQTT -> InfluxDB, exactly once")
    ing.add_argument("-c", "--config", type=Path, required=True, help="ingest.yaml")
    ing.add_argument("--check", action="store_true", help="validate the config, connect to "
                     "the broker (subscribing as the ingest would) and the database, report "
                     "each; exit 0 when all are ok, 2 when one is not")
    ing.add_argument("--log-level", choices=LEVELS)

    lv = sub.add_parser("live", help="live table of machine states read back from InfluxDB 1.x")
    lv.add_argument("--url", default="http://127.0.0.1:8086")
    lv.add_argument("--db", default="edgegw")
    lv.add_argument("--count", type=int, default=0, help="stop after N refreshes")
    lv.add_argument("--note", default="", help="a line shown above the table")
    db = sub.add_parser("dashboard", help="backend: the production dashboard (plant, "
                        "machines, orders) from InfluxDB, read-only")
    db.add_argument("-c", "--config", type=Path, required=True, help="ingest.yaml (its sink "
                    "and dashboard sections)")
    db.add_argument("--port", type=int, help="override dashboard.port")
    db.add_argument("--log-level", choices=LEVELS)
    db.set_defaults(run=dashboard)
    ing.set_defaults(run=ingest)
    lv.set_defaults(run=live)


def ingest(args: argparse.Namespace) -> int:
    from gateway.ingest.config import load_ingest_config
    from gateway.ingest.service import run_ingest

    cfg = load_ingest_config(args.config)
    if args.check:
        from gateway.ingest.check import check

        print(f"{args.config}: config ok")
        findings = asyncio.run(check(cfg))
        for f in findings:
            print(f"{f.what}: {'ok' if f.ok else 'FAILED'}: {f.detail}")
        return 0 if all(f.ok for f in findings) else 2
    asyncio.run(run_ingest(cfg))
    return 0


def dashboard(args: argparse.Namespace) -> int:
    from gateway.dashboard.server import Dashboard
    from gateway.ingest.config import load_ingest_config

    loaded = load_ingest_config(args.config)
    cfg = loaded.config.dashboard
    if args.port is not None:
        cfg = cfg.model_copy(update={"port": args.port})
    dash = Dashboard(cfg, loaded.config.sink)
    try:
        asyncio.run(dash.serve_forever())
    except OSError as exc:
        print(f"edgegw dashboard: cannot listen on {cfg.host}:{cfg.port}: {exc}",
              file=sys.stderr)
        return 2
    return 0


def live(args: argparse.Namespace) -> int:
    from gateway.ingest.live import live as show

    show(args.url, args.db, sys.stdout, args.count, note=args.note)
    return 0
