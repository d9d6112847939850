"""A raw pty pair behind a stable symlink, as a USB serial adapter's by-id name: what the
simulated serial devices and the simulated modem listen on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path


def open_pty(link: Path) -> tuple[int, int, str]:
    """``(master fd, slave fd, slave path)``; ``link`` points at the slave, replaced
    atomically (a reader never sees it missing while it moves)."""
    fd, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(fd)
    os.set_blocking(fd, False)
    path = os.ttyname(slave)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(path)
    tmp.replace(link)
    return fd, slave, path


def close_pty(fd: int, slave: int, link: Path) -> None:
    """Unplug: the event loop stops watching the master, the link goes, then both ends
    (a reader gets an I/O error)."""
    asyncio.get_running_loop().remove_reader(fd)
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    os.close(fd)
    os.close(slave)
