"""YAML loading and pydantic error formatting shared by config and profile files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.errors import ConfigError

# libyaml's C loader when PyYAML was built with it (about 10x faster on big profiles)
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file; errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([(str(path), f"not UTF-8 text: byte {exc.object[exc.start]:#04x} "
                            f"at offset {exc.start}")]) from None
    try:
        # aliases (*name) are refused before anything is built: nine nested ones
        # expand a 1 KB file into a billion nodes (an alias bomb hung check-config)
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                m = event.start_mark
                at = f"{path}:{m.line + 1}:{m.column + 1}" if m is not None else str(path)
                raise ConfigError([(at,
                                    "YAML aliases (*name) are not allowed: write the value "
                                    "out")])
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([(where, f"invalid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "expected a mapping at the top level")])
    return data


#: fields holding a tagged union: pydantic puts the tag (``modbus-tcp``) in the location
TAGGED_UNION_FIELDS = frozenset({"connection"})
#: tags of list items that are unions (profile points): ``points[3].modbus.address``
ITEM_TAGS = frozenset({"modbus", "opcua", "serial"})


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('devices', 3, 'connection', 'port')`` -> ``devices[3].connection.port``."""
    out = ""
    prev: int | str | None = None
    for part in loc:
        skip_tag = prev in TAGGED_UNION_FIELDS or (isinstance(prev, int) and part in ITEM_TAGS)
        prev = part
        if skip_tag:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in (
            "constrained-str", "float", "int", "str", "bool", "list", "dict",
        ):
            continue  # pydantic union branch names add noise, not location
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def validation_problems(
    file: str, exc: ValueError, prefix: str = ""
) -> list[tuple[str, str]]:
    """Every error of a pydantic ValidationError as ``(file: prefix.location, message)``."""
    if not isinstance(exc, ValidationError):
        return [(f"{file}: {prefix}" if prefix else file, str(exc))]
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the config reference in README.md)"
        elif err["type"] == "literal_error":
            msg = f"{msg}, got {err.get('input')!r}"
        loc = format_loc(tuple(err["loc"]))
        full = f"{prefix}.{loc}" if prefix and loc != "(top level)" else (prefix or loc)
        problems.append((f"{file}: {full}", msg))
    return problems


M = TypeVar("M", bound=BaseModel)


def beside(model: M, base: Path) -> M:
    """``model`` with every relative path in it (at any depth: nested models, lists,
    dicts) made absolute against ``base``, the config file's directory. Done once when a
    config is loaded, so every reader (the uplink's TLS files, password files, OPC UA
    certificates, the ingest's sink token) finds the same file whatever the working
    directory is; systemd starts services in ``/``."""

    def fix(v: object) -> object:
        if isinstance(v, Path):
            return v if v.is_absolute() else base / v
        if isinstance(v, BaseModel):
            return beside(v, base)
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, tuple):
            return tuple(fix(x) for x in v)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    changes: dict[str, object] = {}
    for name in type(model).model_fields:
        old = getattr(model, name)
        new = fix(old)
        if new is not old and new != old:
            changes[name] = new
    return model.model_copy(update=changes) if changes else model
