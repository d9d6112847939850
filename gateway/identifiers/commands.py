"""``edgegw id``: identifier codes from the command line (parse, new, pending, register,
resolve)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from gateway.config import LoadedConfig, load_config
from gateway.errors import ConfigError
from gateway.identifiers.codes import CodeError, parse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               with_config: Callable[[argparse.ArgumentParser], None]) -> None:
    idp = sub.add_parser("id", help="identifier codes: parse, register, resolve, pending")
    idsub = idp.add_subparsers(dest="idcmd", required=True)
    ip = idsub.add_parser("parse", help="check a code against the grammar and normalise it")
    ip.add_argument("code")
    ir = idsub.add_parser("register", help="register a code at the node (config: identifiers)")
    with_config(ir)
    ir.add_argument("code")
    ir.add_argument("--value", action="append", default=[], metavar="INDEX:TYPE:VALUE",
                    help="a value to register, e.g. 2000:model:PCR-205 (repeatable)")
    ires = idsub.add_parser("resolve", help="resolve a code at the node; print its values")
    with_config(ires)
    ires.add_argument("code")
    ipen = idsub.add_parser("pending", help="the registration queue (waiting and refused)")
    with_config(ipen)
    inew = idsub.add_parser("new", help="make codes from a template (identifiers.prefix; "
                            "the counter never repeats)")
    with_config(inew)
    inew.add_argument("template", help="e.g. '{prefix}/{date:%%Y%%m%%d}-{counter:06d}'")
    inew.add_argument("--count", type=int, default=1)
    inew.add_argument("--field", action="append", default=[], metavar="NAME=VALUE",
                      help="a template field, e.g. device_kind=CNC (repeatable)")


def run(args: argparse.Namespace) -> int:
    if args.idcmd == "parse":
        return _parse(args.code)
    loaded = load_config(args.config)
    if args.idcmd == "new":
        return _new(loaded, args.template, args.count, args.field)
    if args.idcmd == "pending":
        return _pending(loaded)
    return _at_node(loaded, args)


def _parse(text: str) -> int:
    try:
        c = parse(text)
    except CodeError as exc:
        print(f"edgegw id: {exc}", file=sys.stderr)
        return 1
    print(f"{c}\n  prefix  {c.prefix}\n  suffix  {c.suffix}")
    return 0


def _new(loaded: LoadedConfig, template: str, count: int, field_args: list[str]) -> int:
    from gateway.identifiers.generate import CodeGenerator, Counter

    prefix = loaded.config.identifiers.prefix
    if prefix is None:
        raise ConfigError([(str(loaded.path), "identifiers.prefix is not set "
                            "(e.g. prefix: 88.118.8)")])
    fields = dict(f.split("=", 1) for f in field_args if "=" in f)
    gen = CodeGenerator(template, prefix, Counter(loaded.state_dir / "id-counter"))
    try:
        gen.check(**fields)
        for _ in range(count):
            print(gen.next(**fields))
    except (CodeError, ValueError) as exc:
        print(f"edgegw id: {exc}", file=sys.stderr)
        return 1
    return 0


def _pending(loaded: LoadedConfig) -> int:
    from gateway.identifiers.queue import RegistrationQueue

    path = loaded.store_path
    if not path.is_file():
        print(f"no spool at {path}: nothing queued")
        return 0
    q = RegistrationQueue(path)
    try:
        entries = q.entries()
        counts = q.counts()
    finally:
        q.close()
    print(f"registrations: {counts.get('done', 0)} done, {counts.get('pending', 0)} "
          f"pending, {counts.get('unknown', 0)} to check, {counts.get('failed', 0)} refused")
    for e in entries:
        when = time.strftime("%H:%M:%S", time.localtime(e.next_try)) if e.next_try else "now"
        print(f"  {e.state:8} {e.handle:40} {e.kind:8} tries {e.attempts:<3} next {when}  "
              f"{e.last_error or ''}".rstrip())
    return 0


def _at_node(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    """``register`` and ``resolve``: at the secondary node of ``identifiers.node``."""
    from gateway.identifiers.client import NodeError, Record, Value
    from gateway.identifiers.service import node_client

    client = node_client(loaded.config.identifiers)
    if client is None:
        raise ConfigError([(str(loaded.path), "identifiers.node is not configured")])
    try:
        code = str(parse(args.code))
        if args.idcmd == "register":
            values = []
            for spec in args.value:
                index, _, rest = spec.partition(":")
                vtype, _, value = rest.partition(":")
                if not index.isdigit() or not vtype:
                    raise ConfigError([("--value", f"{spec!r}: use INDEX:TYPE:VALUE")])
                values.append(Value(int(index), vtype, value))
            result = client.register(Record(code, loaded.config.identifiers.template_version,
                                            tuple(values)))
            print(f"{code}: {'registered' if result == 'created' else 'already registered'}")
            return 0
        doc = client.resolve(code)
    except (CodeError, NodeError) as exc:
        print(f"edgegw id: {exc}", file=sys.stderr)
        return 2
    if doc is None:
        print(f"{code}: not registered")
        return 1
    print(f"{doc.get('handle', code)}")
    print(f"  {'index':>6}  {'type':20} {'value':40} {'ttl':>6}  timestamp")
    for v in doc.get("values", []):
        data = v.get("data") or {}
        print(f"  {v.get('index', ''):>6}  {v.get('type', '')!s:20} "
              f"{data.get('value', '')!s:40} {v.get('ttl', ''):>6}  {v.get('timestamp', '')}")
    return 0
