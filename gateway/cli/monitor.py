"""``monitor``: live decoded telemetry from the broker (gateway/monitor.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from gateway.config import load_config

if TYPE_CHECKING:
    from gateway.cli.common import Subparsers, WithConfig


def add_parser(sub: Subparsers, with_config: WithConfig) -> None:
    m = sub.add_parser("monitor", help="print live decoded telemetry from the broker")
    with_config(m)
    m.add_argument("--host", help="broker host (default: from the config, else 127.0.0.1)")
    m.add_argument("--port", type=int, help="broker port (default: from the config, else 1883)")
    m.add_argument("--topic", default=None, help="topic filter (default: <prefix>/#)")
    m.add_argument("--count", type=int, default=0, help="stop after N messages")
    m.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gateway.monitor import monitor

    host, port, prefix = "127.0.0.1", 1883, "edgegw"
    if args.config.is_file():
        mq = load_config(args.config).config.uplink.mqtt
        host, port, prefix = mq.host, mq.port, mq.topic_prefix
    topic = args.topic or f"{prefix}/#"
    import aiomqtt

    try:
        asyncio.run(monitor(args.host or host, args.port or port, topic, sys.stdout, args.count))
    except aiomqtt.MqttError as exc:
        print(f"edgegw monitor: broker {args.host or host}:{args.port or port}: {exc}",
              file=sys.stderr)
        return 2
    return 0
