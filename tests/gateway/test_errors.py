"""Every exception the project defines is in its one tree (issue 19: 14 were outside)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import drivers
import gateway
from gateway.errors import EdgegwError


def project_exceptions() -> list[type[BaseException]]:
    found = []
    for pkg in (gateway, drivers):
        for info in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."):
            mod = importlib.import_module(info.name)
            found += [c for _, c in inspect.getmembers(mod, inspect.isclass)
                      if issubclass(c, BaseException) and c.__module__ == mod.__name__]
    return found


def test_every_project_exception_derives_from_edgegw_error() -> None:
    classes = project_exceptions()
    assert len(classes) >= 25  # the walk found them
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes
                     if not issubclass(c, EdgegwError))
    assert outside == []


def test_parse_errors_are_still_value_errors() -> None:
    """Callers (pydantic validators, value parsers) catch ValueError."""
    from drivers.serial.parse import FrameRejected
    from gateway.identifiers.codes import CodeError
    from gateway.wire.compact import CompactError

    assert all(issubclass(c, ValueError) for c in (FrameRejected, CompactError, CodeError))
