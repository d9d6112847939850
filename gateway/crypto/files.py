"""Private files: written 0600 from the start (never briefly world-readable), and
checked before use."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import KeyFileError


def write_private(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Create ``path`` with mode 0600 holding ``data``; refuse to replace a key unless
    ``overwrite`` (a lost key cannot be recovered)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; not overwritten (move it away first, "
                           "or pass --force)") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # O_TRUNC keeps an old file's mode


def require_private(path: Path, what: str) -> None:
    """Refuse a key file that other users can read (group or world bits set)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: the {what} is accessible to other users (mode "
                           f"{mode & 0o777:o}); run: chmod 600 {path}")
