"""``edgegw``: run the gateway and commission devices.

One module per command family, each with ``add_parser(sub, with_config)`` whose parsers
set their ``run`` (args -> exit status): :mod:`~gateway.cli.service` (run, check-config,
reload, profiles), :mod:`~gateway.cli.commission` (read, write), :mod:`~gateway.cli.browse`,
:mod:`~gateway.cli.monitor`, :mod:`~gateway.cli.backend` (ingest, live), and the
``id`` and ``certs`` families from their own packages. Here: the parser and the exit
status of each kind of error (docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from gateway import __version__
from gateway.cli import backend, browse, commission, monitor, service
from gateway.cli.common import DEFAULT_CONFIG
from gateway.crypto import commands as certs_commands
from gateway.errors import ConfigError, DeviceError, EdgegwError
from gateway.identifiers import commands as id_commands
from gateway.logs import setup as setup_logging
from gateway.production import commands as order_commands
from gateway.trace import commands as trace_commands

__all__ = ["main"]


def with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, default=Path(DEFAULT_CONFIG),
                   help=f"gateway config (default {DEFAULT_CONFIG}, or $EDGEGW_CONFIG)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edgegw", description="Edge IoT gateway: factory devices -> MQTT."
    )
    ap.add_argument("--version", action="version", version=f"edgegw {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    service.add_run(sub, with_config)
    commission.add_parser(sub, with_config)
    browse.add_parser(sub, with_config)
    families: dict[str, Callable[[argparse.Namespace], int]] = {
        "id": id_commands.run, "certs": certs_commands.run}
    id_commands.add_parser(sub, with_config)
    monitor.add_parser(sub, with_config)
    backend.add_parser(sub)
    service.add_others(sub, with_config)
    certs_commands.add_parser(sub, with_config)
    order_commands.add_parser(sub, with_config)
    trace_commands.add_parser(sub, with_config)
    for name, run in families.items():
        sub.choices[name].set_defaults(run=run)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level if "log_level" in args and args.log_level else "INFO")
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    except DeviceError as exc:
        print(f"edgegw: {exc}", file=sys.stderr)
        return 2
    except EdgegwError as exc:  # a key file, the spool
        print(f"edgegw: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
