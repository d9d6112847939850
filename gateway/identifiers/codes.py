"""Parse, validate and normalise identifier codes.

A code is ``<prefix>/<suffix>``. The prefix is the national root, the secondary node's
segment(s) and the enterprise segment, digits separated by dots (``88.118.8``); prefixes
are compared case-insensitively, so the normal form lower-cases the prefix. The suffix
is the enterprise's own name for the object, case-sensitive, made of ``A-Z a-z 0-9 - _
.`` and neither starting nor ending with a dot. At most 64 characters of prefix and 128
in all. Every rule has its own error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import DataError

MAX_CODE = 128
MAX_PREFIX = 64
_SEGMENT = re.compile(r"^[0-9]+$")
_SUFFIX = re.compile(r"^[A-Za-z0-9._-]+$")


class CodeError(DataError):
    """A code that breaks a rule; the message names the rule and the code."""


@dataclass(frozen=True, slots=True)
class Code:
    prefix: str
    suffix: str

    def __str__(self) -> str:
        return f"{self.prefix}/{self.suffix}"

    @property
    def root(self) -> str:
        return self.prefix.split(".", 1)[0]


def parse(text: str) -> Code:
    """The normalised code, or CodeError with the first rule it breaks."""
    if not isinstance(text, str):
        raise CodeError(f"a code is text, got {type(text).__name__}")
    code = text.strip()
    shown = code if len(code) <= 40 else code[:37] + "..."
    if not code:
        raise CodeError("empty code")
    if len(code) > MAX_CODE:
        raise CodeError(f"{shown!r}: {len(code)} characters; a code has at most {MAX_CODE}")
    if code.count("/") != 1:
        raise CodeError(f"{shown!r}: a code has exactly one '/' between prefix and suffix "
                        f"(found {code.count('/')})")
    prefix, suffix = code.split("/")
    if not prefix:
        raise CodeError(f"{shown!r}: the prefix before '/' is empty")
    if len(prefix) > MAX_PREFIX:
        raise CodeError(f"{shown!r}: prefix of {len(prefix)} characters; at most {MAX_PREFIX}")
    segments = prefix.split(".")
    if any(not s for s in segments):
        raise CodeError(f"{shown!r}: empty segment in prefix {prefix!r} (two dots, or a dot "
                        "at its start or end)")
    bad = [s for s in segments if not _SEGMENT.match(s)]
    if bad:
        raise CodeError(f"{shown!r}: prefix segments are digits; {bad[0]!r} is not")
    if len(segments) < 2:
        raise CodeError(f"{shown!r}: a prefix has the root and at least the enterprise "
                        f"segment, like 88.118.8")
    if not suffix:
        raise CodeError(f"{shown!r}: the suffix after '/' is empty")
    if not _SUFFIX.match(suffix):
        ch = next(c for c in suffix if not _SUFFIX.match(c))
        raise CodeError(f"{shown!r}: character {ch!r} is not allowed in a suffix "
                        "(A-Z a-z 0-9 - _ .)")
    if suffix.startswith(".") or suffix.endswith("."):
        raise CodeError(f"{shown!r}: a suffix does not start or end with '.'")
    return Code(prefix.lower(), suffix)


def normalise(text: str) -> str:
    return str(parse(text))


def is_code(text: str) -> bool:
    try:
        parse(text)
    except CodeError:
        return False
    return True
