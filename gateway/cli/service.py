"""The gateway itself: ``run``, ``check-config``, ``reload`` (SIGHUP to the running
gateway) and ``profiles``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import LoadedConfig, check_files, load_config
from gateway.logs import setup as setup_logging
from gateway.profiles import default_profile_dirs, list_profiles

if TYPE_CHECKING:
    from gateway.cli.common import Subparsers, WithConfig

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def add_run(sub: Subparsers, with_config: WithConfig) -> None:
    r = sub.add_parser("run", help="run the gateway until SIGTERM/Ctrl-C")
    with_config(r)
    r.add_argument("--log-level", choices=LEVELS)
    r.set_defaults(run=run)

    c = sub.add_parser("check-config", help="validate a config and its profiles; exit 1 on errors")
    c.add_argument("file", type=Path, nargs="?", help="config file (or -c)")
    with_config(c)
    c.set_defaults(run=check_config)


def add_others(sub: Subparsers, with_config: WithConfig) -> None:
    rl = sub.add_parser("reload", help="check the config, then have the running gateway "
                        "apply it (SIGHUP; under systemd: systemctl reload edgegw)")
    with_config(rl)
    rl.set_defaults(run=reload)
    sub.add_parser("profiles", help="list the shipped device profiles").set_defaults(
        run=profiles)


def run(args: argparse.Namespace) -> int:
    from gateway.app import run_until_signal

    loaded = load_config(args.config)
    lc = loaded.config.logging
    setup_logging(args.log_level or lc.level, lc.format)
    for w in check_files(loaded):
        logging.getLogger("edgegw").warning("%s", w)
    asyncio.run(run_until_signal(loaded))
    return 0


def check_config(args: argparse.Namespace) -> int:
    loaded = load_config(args.file or args.config)
    for w in check_files(loaded):
        print(f"warning: {w}", file=sys.stderr)
    n = sum(len(d.profile.expanded_points()) for d in loaded.devices)
    print(f"{loaded.path}: ok ({len(loaded.devices)} device(s), {n} point(s))")
    return 0


def profiles(args: argparse.Namespace) -> int:
    for name in list_profiles(default_profile_dirs()):
        print(name)
    return 0


def reload(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    check_files(loaded)
    return _signal(loaded)


def _signal(loaded: LoadedConfig) -> int:
    """The config is valid (it loaded): signal the gateway that runs it."""
    import signal

    from gateway.app import PIDFILE

    for d in (loaded.state_dir, Path("/var/lib/edgegw")):
        try:
            pid = int((d / PIDFILE).read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # a stale pid file
        if b"edgegw" not in cmdline and b"gateway.cli" not in cmdline:
            continue  # the pid was reused by another program
        os.kill(pid, signal.SIGHUP)
        print(f"{loaded.path}: ok; edgegw (pid {pid}) is applying it: see its log")
        return 0
    print(f"edgegw reload: no running gateway found (no live pid in {loaded.state_dir}/"
          f"{PIDFILE} or /var/lib/edgegw/{PIDFILE})", file=sys.stderr)
    return 2
