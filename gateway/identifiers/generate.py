"""Codes from templates, with a counter that never hands out a number twice.

A template is a Python format string over ``prefix``, ``date`` (now, local time; use a
strftime spec: ``{date:%Y%m%d}``), ``counter`` (``{counter:06d}``) and any fields the
caller passes (``device``, ``device_kind``, ``serial``...). Every generated code is
validated by the grammar.

The counter lives in a small file. :meth:`Counter.reserve` writes the *next* value to
disk (temporary file, fsync, atomic rename, fsync of the directory) before it returns
the current one: after a crash or a power cut a number may be skipped, never reused.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from string import Formatter

from gateway.identifiers.codes import CodeError, normalise


class Counter:
    def __init__(self, path: Path, start: int = 1) -> None:
        self.path = path
        self.start = start

    def peek(self) -> int:
        try:
            return int(self.path.read_text(encoding="ascii").strip() or self.start)
        except FileNotFoundError:
            return self.start

    def reserve(self) -> int:
        n = self.peek()
        self._store(n + 1)
        return n

    def _store(self, value: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def template_fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0]
            for _, name, _, _ in Formatter().parse(template) if name}


class CodeGenerator:
    def __init__(self, template: str, prefix: str, counter: Counter | None = None) -> None:
        self.template = template
        self.prefix = prefix
        self.counter = counter
        if "counter" in template_fields(template) and counter is None:
            raise ValueError("a template with {counter} needs a counter file")

    def check(self, **fields: object) -> str:
        """A sample code (counter 1, today), or CodeError/ValueError explaining why the
        template cannot make valid codes."""
        return self._make(1, **fields)

    def next(self, **fields: object) -> str:
        uses_counter = "counter" in template_fields(self.template)
        n = self.counter.reserve() if uses_counter and self.counter is not None else 0
        return self._make(n, **fields)

    def _make(self, n: int, **fields: object) -> str:
        try:
            text = self.template.format(prefix=self.prefix, date=dt.datetime.now(),
                                        counter=n, **fields)
        except KeyError as exc:
            raise ValueError(f"template {self.template!r} uses {{{exc.args[0]}}}, which is "
                             f"not one of prefix, date, counter, {', '.join(fields)}") from None
        except (ValueError, IndexError) as exc:
            raise ValueError(f"template {self.template!r}: {exc}") from None
        try:
            return normalise(text)
        except CodeError as exc:
            raise CodeError(f"template {self.template!r} makes an invalid code: {exc}") from None
