"""Device profiles: versioned YAML that describes one kind of device.

A profile lives at ``profiles/<vendor>/<model>.yaml`` and is named ``<vendor>/<model>``.
It lists points (table, address, data type, byte/word order, scale, unit, access, poll
group, deadband), named protocol ``workarounds`` and machine-state rules. The optional
``simulation`` section and per-point ``sim`` hints are read only by the firmware
simulator.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from gateway.durations import Duration
from gateway.errors import ConfigError
from gateway.production.spec import ProductionSpec
from gateway.trace.spec import TraceSpec
from gateway.yamlfile import load_yaml, validation_problems

SCHEMA_VERSION = 1

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "bool", "string", "bitfield",
]
Order = Literal["big", "little"]

#: registers taken by each fixed-size register type
REGISTER_SIZE: dict[str, int] = {
    "int16": 1, "uint16": 1, "bitfield": 1, "bool": 1,
    "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}
NUMERIC_TYPES = frozenset(
    {"int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bitfield"}
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deadband(_Strict):
    """Report a value only when it moved more than this since the last report."""

    absolute: float | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_kind(self) -> Deadband:
        if (self.absolute is None) == (self.percent is None):
            raise ValueError("give exactly one of 'absolute' or 'percent'")
        return self


class PointSim(_Strict):
    """How the firmware simulator produces this point's value (ignored by the gateway)."""

    kind: Literal[
        "constant", "state_code", "follow", "counter", "alarm", "clock", "random_walk", "code"
    ]
    value: float | int | str | bool | None = None
    levels: dict[str, float] = Field(default_factory=dict)
    noise: float = 0.0
    tau: Duration = 0.0
    rate: float = 0.0
    when: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    map: dict[str, int] = Field(default_factory=dict)
    size: int = Field(default=16, ge=1, le=4096, description="elements of an array point")
    names: list[str] = Field(
        default_factory=list, description="an enumeration point's names (value 0, 1, ...), "
        "served as the DataType's names")
    enum_via: Literal["EnumStrings", "EnumValues", "definition"] = Field(
        default="EnumStrings", description="how the simulated server publishes the names: the "
        "EnumStrings or EnumValues property, or only the DataTypeDefinition (OPC UA 1.04)")


class Point(_Strict):
    """What every point has, whatever the protocol: the pipeline works on these fields."""

    name: str = Field(
        description="letters, digits and _; dots separate parts (a bitfield's bits: name.label)")
    type: DataType | None = Field(default=None, description="the value's data type")
    scale: float = Field(
        default=1.0, description="value = raw x scale + offset (a scaled value is always a float)")
    offset: float = Field(default=0.0, description="added after scaling")
    unit: str | None = Field(
        default=None, description="engineering unit, sent with the first sample and heartbeats")
    access: Literal["r", "rw"] = Field(
        default="r", description="r, or rw for points that may be written (writes.enabled)")
    poll_group: str | None = Field(
        default=None, description="one of the profile's poll_groups (default: default_poll_group, "
        "else the first)")
    deadband: Deadband | None = Field(
        default=None, description="report a change only beyond this (report by exception)")
    description: str = Field(default="", description="free text")
    sim: PointSim | None = Field(
        default=None, description="how the firmware simulator produces the value (ignored by the "
        "gateway)")
    priority: Literal["alarm", "state", "process", "bulk"] = Field(
        default="process", description="uplink priority: a batch in which an alarm or state point "
        "changed (or the machine state changed) goes out before everything else, without waiting "
        "for the pack delay or the bandwidth budget")
    context: Literal["product", "batch"] | None = Field(
        default=None, description="this point's value (a code read by a scanner, or a PLC's string "
        "register) is the current product (or batch) code of the devices named in the device "
        "config's context_for")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("point names use letters, digits and '_' (dots separate parts)")
        return v

    @model_validator(mode="after")
    def _context(self) -> Point:
        if self.context is not None and self.type != "string":
            raise ValueError("a context point (product/batch code) has type 'string'")
        return self

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0

    @property
    def numeric(self) -> bool:
        return self.type is None or self.type in NUMERIC_TYPES


class BitSpec(_Strict):
    """One labelled bit of a bitfield, with its own priority (an alarm bit of a status
    word) or description."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$", description="the label: the point is "
                      "<field>.<name>")
    priority: Literal["alarm", "state", "process", "bulk"] | None = Field(
        default=None, description="default: the bitfield's priority")
    description: str = ""


class ModbusPoint(Point):
    """A point in a Modbus register map: table, address, data type and word/byte order."""

    table: Table = Field(description="holding or input (registers), coil or discrete (bits)")
    address: int = Field(
        ge=0, le=65535, description="as the device numbers it (0-based unless one_based_addresses)")
    type: DataType = Field(
        default="uint16", description="register data type; bool is a bit of a register (with bit) "
        "or a coil/discrete input")
    count: int | None = Field(default=None, ge=1, le=125, description="registers of a string")
    bit: int | None = Field(
        default=None, ge=0, le=15, description="a bool inside a register: bit 0-15 (never 10.3 "
        "floats)")
    bits: dict[int, str | BitSpec] = Field(
        default_factory=dict, description="a bitfield's bits (0-15): a label, or {name, "
        "priority, description}; each is a bool point <field>.<label>, usable in state "
        "rules like any point, with the field's priority and poll group unless it gives "
        "its own priority")
    byte_order: Order | None = Field(
        default=None, description="bytes in a register: big (default of the profile) or little")
    word_order: Order | None = Field(
        default=None, description="registers of a 32/64-bit value: big (high word first) or little")

    @model_validator(mode="after")
    def _shape(self) -> ModbusPoint:
        bit_table = self.table in ("coil", "discrete")
        if bit_table and self.type != "bool":
            raise ValueError(f"points in table '{self.table}' must have type 'bool'")
        if not bit_table and self.type == "bool" and self.bit is None:
            raise ValueError("a bool point in a register table needs 'bit' (0..15)")
        if self.bit is not None and (bit_table or self.type != "bool"):
            raise ValueError("'bit' is only for bool points in holding/input registers")
        if self.type == "string" and self.count is None:
            raise ValueError("a string point needs 'count' (registers, 2 characters each)")
        if self.type != "string" and self.count is not None:
            raise ValueError("'count' is only for string points")
        if self.bits and self.type != "bitfield":
            raise ValueError("'bits' is only for bitfield points")
        for b, spec in self.bits.items():
            label = spec if isinstance(spec, str) else spec.name
            if not 0 <= b <= 15:
                raise ValueError(f"bits: {b} is not a bit of a register (0-15)")
            if not re.fullmatch(r"[A-Za-z0-9_]+", label):
                raise ValueError(f"bits: {label!r}: labels use letters, digits and '_'")
        if self.access == "rw" and self.table in ("input", "discrete"):
            raise ValueError(f"table '{self.table}' is read-only; access must be 'r'")
        if self.deadband is not None and self.type not in NUMERIC_TYPES:
            raise ValueError("a deadband needs a numeric type")
        if self.address + self.size > 65536:
            raise ValueError("point extends past address 65535")
        return self

    @property
    def size(self) -> int:
        """Registers (or bits, for coil/discrete tables) this point spans."""
        if self.table in ("coil", "discrete"):
            return 1
        if self.type == "string":
            return self.count or 1
        return REGISTER_SIZE[self.type]


OpcuaType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]


class OpcuaPoint(Point):
    """A variable of an OPC UA server, addressed by NodeId or by browse path.

    ``node`` is a NodeId string (``ns=2;s=Spindle.Speed``, or ``nsu=<uri>;s=...`` which
    survives a change of namespace index). ``path`` is a browse path from the profile's
    ``opcua.root``: segments separated by ``/``, each ``<alias>:<BrowseName>`` with an
    alias from ``opcua.namespaces`` (unprefixed segments use the first alias).
    ``type`` is optional: values keep the server's type, and a write is checked against
    the node's DataType read from the server.
    """

    type: OpcuaType | None = Field(
        default=None, description="optional: checked against the node's DataType at connect")
    node: str | None = Field(
        default=None, description="a NodeId: ns=2;s=Spindle.Speed or nsu=<namespace URI>;s=...")
    path: str | None = Field(
        default=None, description="a browse path from opcua.root: Machine/Spindle/Speed, segments "
        "<alias>:<BrowseName>")
    sampling: Duration | None = Field(
        default=None, description="subscription sampling interval (default: the poll period)")
    queue_size: int | None = Field(default=None, ge=1, le=10000)
    array: bool = Field(
        default=False, description="the node holds a one-dimensional array of 'type' (ValueRank "
        "1): the value is a list; scale, offset and deadband apply to each element; InfluxDB "
        "gets one field per element, name[0], name[1], ...")
    enum: bool | dict[int, str] | None = Field(
        default=None, description="an enumeration: true maps values to names from the server "
        "(the DataType's EnumStrings or EnumValues, read at connect); a map {0: Stopped, 1: "
        "Running} gives the names here. The value is the name (a string, usable in state "
        "rules: eq: Running); a number without a name is sent as its digits, quality "
        "uncertain")

    @model_validator(mode="after")
    def _shape(self) -> OpcuaPoint:
        if (self.node is None) == (self.path is None):
            raise ValueError("give exactly one of 'node' (a NodeId) or 'path' (a browse path)")
        if self.path is not None and (not self.path.strip("/") or "//" in self.path):
            raise ValueError("a browse path looks like 'Machine/Spindle/Speed'")
        if self.deadband is not None and not self.numeric:
            raise ValueError("a deadband needs a numeric type")
        if self.enum is not None and self.enum is not False:
            if self.array:
                raise ValueError("an enumeration point is a scalar (array: false)")
            if self.scaled or self.deadband is not None:
                raise ValueError("an enumeration has names, not a scale or deadband")
            if self.type not in (None, "string"):
                raise ValueError("an enumeration's value is its name: type string (or leave "
                                 "type out)")
        return self

    @property
    def enumerated(self) -> bool:
        return self.enum is not None and self.enum is not False


def modbus_points(points: Iterable[Point]) -> list[ModbusPoint]:
    """The points as Modbus points (a Modbus driver given an OPC UA point is a bug)."""
    given = list(points)
    out = [p for p in given if isinstance(p, ModbusPoint)]
    if len(out) != len(given):
        raise TypeError("a Modbus driver was given points that are not Modbus points")
    return out


#: protocol of the profile being validated: the kind of a point that has no address yet
_PROTOCOL: ContextVar[str] = ContextVar("profile_protocol", default="modbus")


SerialType = Literal[
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]
#: struct codes of the fixed-size binary types
BINARY_CODES: dict[str, str] = {
    "bool": "?", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i",
    "uint32": "I", "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}


class SerialPoint(Point):
    """A value in a serial frame: a named group of the profile's regex (``group``,
    default the point's name), or the value ``at`` a byte position of a binary payload."""

    type: SerialType = Field(  # type: ignore[assignment]
        default="float64", description="value type")
    group: str | None = Field(
        default=None, description="regex parser: the named group (default: the point's name, dots "
        "as _)")
    at: int | None = Field(default=None, ge=0, le=65535, description="binary: byte position")
    length: int | None = Field(default=None, ge=1, le=255, description="bytes of a binary string")
    byte_order: Order = Field(default="big", description="binary parser: byte order")
    map: dict[str, float | int | bool | str] = Field(
        default_factory=dict, description="text -> value, e.g. {ST: true, US: false}")

    @model_validator(mode="after")
    def _shape(self) -> SerialPoint:
        if self.at is not None and self.group is not None:
            raise ValueError("give 'group' (regex parser) or 'at' (binary), not both")
        if self.type == "string" and self.at is not None and self.length is None:
            raise ValueError("a binary string point needs 'length' (bytes)")
        if self.deadband is not None and self.type in ("bool", "string"):
            raise ValueError("a deadband needs a numeric type")
        return self

    @property
    def regex_group(self) -> str:
        return self.group or self.name.replace(".", "_")


class Checksum(_Strict):
    """Frame checksum, over every byte between the start delimiter (or the line's start)
    and the checksum itself: ``lrc`` (two's complement of the byte sum, as Modbus
    ASCII), ``xor``, ``sum`` (byte sum mod 256), ``crc16`` (Modbus CRC-16)."""

    kind: Literal["lrc", "xor", "sum", "crc16"]
    encoding: Literal["binary", "hex"] = Field(
        default="binary", description="binary: 1 byte (crc16: 2, low byte first); hex: ASCII hex "
        "digits (2, crc16: 4, high first)")
    separator: str = Field(default="", description="text before a hex checksum, e.g. '*'")


class Framing(_Strict):
    kind: Literal["line", "fixed", "delimited"]
    terminator: Literal["CR", "LF", "CRLF"] = "CRLF"
    length: int | None = Field(default=None, ge=1, le=4096, description="fixed: frame bytes")
    start: int | None = Field(default=None, ge=0, le=255, description="delimited: e.g. 0x02")
    end: int | None = Field(default=None, ge=0, le=255, description="delimited: e.g. 0x03")
    length_byte: bool = Field(
        default=False, description="delimited: the byte after start gives the payload length")
    checksum: Checksum | None = None
    max_length: int = Field(default=512, ge=4, le=65536, description="longer frames are dropped")

    @model_validator(mode="after")
    def _shape(self) -> Framing:
        if self.kind == "fixed" and self.length is None:
            raise ValueError("fixed framing needs 'length'")
        if self.kind == "delimited" and self.start is None:
            raise ValueError("delimited framing needs 'start' (e.g. 0x02)")
        if self.kind == "delimited" and self.end is None and not self.length_byte:
            raise ValueError("delimited framing needs 'end' (e.g. 0x03) or 'length_byte'")
        return self


class SerialSettings(_Strict):
    """How a serial device frames and encodes its data, and whether it pushes (listen)
    or answers a query sent every poll period (request)."""

    framing: Framing
    parser: Literal["regex", "binary"]
    pattern: str | None = Field(default=None, description="regex with named groups")
    encoding: str = "ascii"
    mode: Literal["listen", "request"] = "listen"
    request: str | None = Field(
        default=None, description="query sent each poll period; escapes \\r \\n \\xNN")
    timeout: Duration = Field(default=1.0, description="request mode: wait for the answer")
    silence: Duration | None = Field(
        default=None, description="listen mode: no frame for this long = device offline (unset for "
        "devices that are silent for long, like barcode scanners)")

    @model_validator(mode="after")
    def _shape(self) -> SerialSettings:
        if self.parser == "regex":
            if not self.pattern:
                raise ValueError("the regex parser needs 'pattern'")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: {exc}") from None
        if self.mode == "request" and not self.request:
            raise ValueError("request mode needs 'request' (the query to send)")
        return self

    def request_bytes(self) -> bytes:
        assert self.request is not None
        return self.request.encode("latin-1").decode("unicode_escape").encode("latin-1")


class ModemPoint(Point):
    """A link property the modem monitor reads (drivers/modem/parse.py LinkSample):
    ``field`` is its name there (``rsrp_dbm``, ``tech``, ``registered``, ``imei`` ...,
    or ``extra.<key>``)."""

    field: str = Field(
        pattern=r"^[a-z_]+(\.[a-z_]+)?$", description="a LinkSample field (rsrp_dbm, tech, "
        "registered, imei, ...) or extra.<key>")


def _point_kind(v: object) -> str:
    if isinstance(v, dict):
        if "field" in v:
            return "modem"
        if "node" in v or "path" in v:
            return "opcua"
        if "table" in v or "address" in v:
            return "modbus"
        return _PROTOCOL.get()
    if isinstance(v, OpcuaPoint):
        return "opcua"
    if isinstance(v, ModemPoint):
        return "modem"
    return "serial" if isinstance(v, SerialPoint) else "modbus"


AnyPoint = Annotated[
    Annotated[ModbusPoint, Tag("modbus")] | Annotated[OpcuaPoint, Tag("opcua")]
    | Annotated[SerialPoint, Tag("serial")] | Annotated[ModemPoint, Tag("modem")],
    Discriminator(_point_kind),
]


class OpcuaSettings(_Strict):
    """Profile-level OPC UA addressing: namespace aliases and the browse-path root."""

    namespaces: dict[str, str] = Field(
        default_factory=dict, description="alias -> namespace URI, used by browse paths")
    root: str = Field(default="i=85", description="NodeId browse paths start from (Objects)")


class Workarounds(_Strict):
    """Named protocol quirks, so device oddities are config rather than code branches."""

    max_registers_per_read: int = Field(
        default=125, ge=1, le=125, description="registers per read request (the protocol allows "
        "125); the driver also learns a smaller limit a device refuses")
    max_bits_per_read: int = Field(
        default=2000, ge=1, le=2000, description="coils / discrete inputs per read request")
    max_gap: int = Field(
        default=16, ge=0, le=124, description="unread registers bridged when coalescing points "
        "into one read (x16 for bits); a read the device refuses over unmapped registers is split "
        "and learned (drivers/modbus/README.md)")
    no_gap_filling: bool = Field(
        default=False, description="true: only touching or overlapping points share a read "
        "(max_gap 0)")
    one_based_addresses: bool = Field(
        default=False, description="true: the manual numbers registers from 1 (every request is "
        "sent at address - 1)")
    inter_request_delay: Duration = Field(
        default=0.0, description="pause after every request, inside the bus lock (slow serial "
        "devices)")
    unit_id: int | None = Field(
        default=None, ge=0, le=255, description="force this unit id (TCP-to-RTU gateways that need "
        "255 or 0)")


class Condition(_Strict):
    """One test on a point, or a combination with ``all`` / ``any``."""

    point: str | None = None
    eq: float | int | bool | str | None = None
    ne: float | int | bool | str | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    in_: list[float | int | str | bool] | None = Field(default=None, alias="in")
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        combos = (self.all is not None) + (self.any is not None)
        tests = [
            k for k in ("eq", "ne", "gt", "ge", "lt", "le", "in_")
            if k in self.model_fields_set
        ]
        if combos and (self.point is not None or tests):
            raise ValueError("use either 'all'/'any' or 'point' with a test, not both")
        if combos > 1:
            raise ValueError("use only one of 'all' and 'any' per condition")
        if not combos and (self.point is None or len(tests) != 1):
            raise ValueError("a condition needs 'point' and exactly one of eq/ne/gt/ge/lt/le/in")
        return self

    def points(self) -> set[str]:
        if self.point is not None:
            return {self.point}
        out: set[str] = set()
        for c in self.all or self.any or []:
            out |= c.points()
        return out


class StateRule(_Strict):
    state: str
    when: Condition


class StateSpec(_Strict):
    """Machine state derivation: the first rule whose condition holds wins."""

    default: str = Field(default="idle", description="the state when no rule holds")
    rules: list[StateRule] = Field(
        default_factory=list, description="tried in order; the first whose condition holds wins")

    def points(self) -> set[str]:
        """Every point a rule reads."""
        out: set[str] = set()
        for rule in self.rules:
            out |= rule.when.points()
        return out


class SimState(_Strict):
    dwell: tuple[Duration, Duration] = (5.0, 20.0)
    next: dict[str, float] = Field(default_factory=dict)


class SimRange(_Strict):
    """Registers (or bits) of one table: ``start`` and ``count``."""

    table: Table
    start: int = Field(ge=0, le=65535)
    count: int = Field(default=1, ge=1, le=65536)

    @property
    def end(self) -> int:
        return self.start + self.count


class SlowReads(_Strict):
    over: int = Field(
        ge=1, le=2000, description="a read of more registers (bits) than this is answered late")
    delay: Duration = Field(
        description="how late, e.g. 2s (longer than the gateway's timeout: the read times out)")


class ModbusQuirks(_Strict):
    """How the simulated Modbus server is as flawed as real devices are. Real meters and
    PLCs answer exception 2 to a read that touches an unmapped register, limit the
    registers per request below the protocol's 125, refuse reads that start or end
    inside a multi-register value, answer long reads slowly, and ignore unit ids they
    do not have."""

    unmapped: list[SimRange] = Field(
        default_factory=list, description="exception 2 (illegal data address) for any read or "
        "write that touches these")
    max_registers: int | None = Field(
        default=None, ge=1, le=125, description="registers per request the device accepts; a "
        "longer read gets exception too_long_exception")
    max_bits: int | None = Field(
        default=None, ge=1, le=2000, description="coils/discrete inputs per request")
    too_long_exception: Literal[2, 3] = Field(
        default=3, description="what a too-long request gets: 3 (illegal data value, as the spec "
        "says) or 2 (as some devices do)")
    whole_values: bool = Field(
        default=False, description="a read that starts or ends inside a multi-register value of "
        "the profile (the second word of a float32) gets exception 2")
    slow_reads: SlowReads | None = None
    silent_units: list[int] = Field(
        default_factory=list, description="unit ids that never answer (a TCP device answers every "
        "other unit id)")


class Simulation(_Strict):
    """Machine behaviour for the firmware simulator (ignored by the gateway)."""

    initial: str = "idle"
    states: dict[str, SimState] = Field(default_factory=dict)
    strict_map: bool = Field(
        default=False, description="reject reads over unmapped registers: every register no point "
        "of the profile covers")
    modbus: ModbusQuirks = ModbusQuirks()
    template: str | None = Field(
        default=None, description="serial: a frame's text, a Python format string over the point "
        "(or regex group) names; a point with a 'map' is written as its map's key")
    every: Duration = Field(
        default=1.0, description="serial listen devices: a frame this often; 0 = only when a value "
        "changes (a barcode scanner)")


class Profile(_Strict):
    schema_: Annotated[int, Field(alias="schema")] = SCHEMA_VERSION
    vendor: str = Field(description="the maker")
    model: str = Field(description="the model; the profile's name is vendor/model")
    version: str = Field(
        default="1", description="the profile's own version, sent in every batch (prof)")
    protocol: Literal["modbus", "opcua", "serial", "modem"] = Field(
        default="modbus", description="modbus, opcua, serial or modem: the kind of every point")
    description: str = Field(default="", description="free text")
    byte_order: Order = Field(default="big", description="Modbus: every point's default "
                              "byte order")
    word_order: Order = Field(default="big", description="Modbus: every point's default "
                              "word order")
    poll_groups: dict[str, Duration] = Field(
        default_factory=lambda: {"default": 1.0}, description="group name -> period; each group is "
        "polled on its own schedule")
    default_poll_group: str | None = Field(
        default=None, description="the group of points that name none (default: the first)")
    workarounds: Workarounds = Field(
        default=Workarounds(), description="Modbus: named quirks of the device, never code "
        "branches")
    opcua: OpcuaSettings | None = Field(
        default=None, description="OPC UA: namespace aliases and the browse root")
    serial: SerialSettings | None = Field(
        default=None, description="serial: framing, parser, listen or request")
    state: StateSpec | None = Field(default=None, description="machine state derivation")
    production: ProductionSpec | None = Field(
        default=None, description="production facts: part counters, ideal cycle, order and "
        "product points, planned stops, downtime reasons (docs/production.md)")
    trace: TraceSpec | None = Field(
        default=None, description="each product's record at this machine: its code, when it "
        "is in process, the process values summarised, limits (docs/traceability.md)")
    simulation: Simulation | None = Field(
        default=None, description="how the firmware simulator behaves (ignored by the gateway)")
    points: list[AnyPoint] = Field(min_length=1, description="the device's points")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _protocol(cls, data: object) -> object:
        if isinstance(data, dict):
            _PROTOCOL.set(str(data.get("protocol", "modbus")))
        return data

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"this edgegw reads profile schema {SCHEMA_VERSION}, not {v}")
        return v

    @field_validator("poll_groups")
    @classmethod
    def _groups(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("define at least one poll group")
        for name, period in v.items():
            if period < 0.01:
                raise ValueError(f"poll group '{name}': period must be at least 10ms")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        seen: set[str] = set()
        want = {"opcua": OpcuaPoint, "serial": SerialPoint,
                "modem": ModemPoint}.get(self.protocol, ModbusPoint)
        for i, p in enumerate(self.points):
            if not isinstance(p, want):
                how = {OpcuaPoint: "by 'node' or 'path'", SerialPoint: "by regex 'group' or "
                       "binary 'at'", ModemPoint: "by 'field'"}.get(
                           want, "by 'table' and 'address'")
                raise ValueError(
                    f"points[{i}] ({p.name}): a {self.protocol} profile addresses points {how}")
            bit_names = [f"{p.name}.{b if isinstance(b, str) else b.name}"
                         for b in p.bits.values()] if isinstance(p, ModbusPoint) else []
            for name in (p.name, *bit_names):
                if name in seen:
                    raise ValueError(f"points[{i}]: duplicate point name '{name}'")
                seen.add(name)
            if p.poll_group is not None and p.poll_group not in self.poll_groups:
                raise ValueError(
                    f"points[{i}] ({p.name}): poll_group '{p.poll_group}' is not one of "
                    f"{sorted(self.poll_groups)}"
                )
        if self.opcua is not None and self.protocol != "opcua":
            raise ValueError("the 'opcua' section is only for profiles with protocol: opcua")
        if (self.serial is not None) != (self.protocol == "serial"):
            raise ValueError("a profile with protocol: serial needs the 'serial' section "
                             "(framing, parser), and only such a profile has one")
        if self.serial is not None:
            self._check_serial(self.serial)
        if self.default_poll_group is not None and self.default_poll_group not in self.poll_groups:
            raise ValueError(f"default_poll_group '{self.default_poll_group}' is not defined")
        if self.state is not None:
            for j, rule in enumerate(self.state.rules):
                missing = rule.when.points() - seen
                if missing:
                    raise ValueError(
                        f"state.rules[{j}] ({rule.state}): unknown point(s) {sorted(missing)}"
                    )
        if self.production is not None:
            self._check_production(self.production, seen)
        if self.trace is not None:
            self._check_trace(self.trace, seen)
        return self

    def _check_trace(self, tr: TraceSpec, seen: set[str]) -> None:
        missing = tr.points() - seen
        if missing:
            raise ValueError(f"trace: unknown point(s) {sorted(missing)}")
        types = {p.name: getattr(p, "type", None) for p in self.expanded_points()}
        for s in tr.summaries:
            if types.get(s.point) in ("string", "bool", "bitfield"):
                raise ValueError(f"trace.summaries: {s.point} is a {types[s.point]}, not a "
                                 "number")
        if tr.active_point is None:
            if self.state is None:
                raise ValueError("trace: needs the 'state' section (its 'states' say when a "
                                 "product is in process) or an 'active_point'")
            states = {r.state for r in self.state.rules} | {self.state.default}
            unknown = sorted(set(tr.states) - states)
            if unknown:
                raise ValueError(f"trace.states: {unknown} are not states of this profile "
                                 f"({sorted(states)})")

    def _check_production(self, pr: ProductionSpec, seen: set[str]) -> None:
        missing = pr.points() - seen
        if missing:
            raise ValueError(f"production: unknown point(s) {sorted(missing)}")
        if self.state is None:
            raise ValueError("production: needs the 'state' section (which states run, "
                             "which stop)")
        states = {r.state for r in self.state.rules} | {self.state.default}
        for what, names in (("running", pr.running), ("planned_stops", pr.planned_stops)):
            unknown = sorted(set(names) - states)
            if unknown:
                raise ValueError(f"production.{what}: {unknown} are not states of this "
                                 f"profile ({sorted(states)})")

    def _check_serial(self, ss: SerialSettings) -> None:
        points = [p for p in self.points if isinstance(p, SerialPoint)]
        if ss.parser == "regex":
            assert ss.pattern is not None
            groups = set(re.compile(ss.pattern).groupindex)
            for p in points:
                if p.at is not None:
                    raise ValueError(f"point {p.name}: 'at' is for the binary parser")
                if p.regex_group not in groups:
                    raise ValueError(f"point {p.name}: the pattern has no group "
                                     f"(?P<{p.regex_group}>...); it has {sorted(groups)}")
        else:
            for p in points:
                if p.at is None:
                    raise ValueError(f"point {p.name}: the binary parser needs 'at' "
                                     "(byte position in the payload)")
                if p.map:
                    raise ValueError(f"point {p.name}: 'map' is for the regex parser")

    # ---- derived, used by drivers and the pipeline ---------------------------------
    def group_of(self, point: Point) -> str:
        return point.poll_group or self.default_poll_group or next(iter(self.poll_groups))

    def byte_order_of(self, point: ModbusPoint) -> str:
        return point.byte_order or self.byte_order

    def word_order_of(self, point: ModbusPoint) -> str:
        return point.word_order or self.word_order

    def expanded_points(self) -> list[Point]:
        """Points plus one bool point per labelled bit of each Modbus bitfield."""
        out: list[Point] = []
        for p in self.points:
            out.append(p)
            if not isinstance(p, ModbusPoint):
                continue
            for bit, spec in sorted(p.bits.items()):
                label = spec if isinstance(spec, str) else spec.name
                own = None if isinstance(spec, str) else spec
                out.append(
                    ModbusPoint(
                        name=f"{p.name}.{label}", table=p.table, address=p.address,
                        type="bool", bit=bit, byte_order=p.byte_order,
                        word_order=p.word_order, poll_group=p.poll_group,
                        priority=(own.priority if own and own.priority else p.priority),
                        description=(own.description if own and own.description
                                     else f"bit {bit} of {p.name}"),
                    )
                )
        return out


def default_profile_dirs() -> list[Path]:
    """The profiles shipped with edgegw: the repository's ``profiles/`` (a source tree or
    an editable install), else the ``edgegw_profiles`` package data of an installed
    wheel."""
    repo = Path(__file__).resolve().parent.parent / "profiles"
    if repo.is_dir():
        return [repo]
    spec = importlib.util.find_spec("edgegw_profiles")
    if spec is not None and spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    return [repo]


def find_profile(name: str, search: list[Path]) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", name) or ".." in name:
        raise ConfigError([(name, "profile names look like 'vendor/model'")])
    for d in search:
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
    where = ", ".join(str(d) for d in search)
    raise ConfigError([(name, f"profile not found (looked in: {where})")])


def load_profile_file(path: Path) -> Profile:
    data = load_yaml(path)
    try:
        return Profile.model_validate(data)
    except ValueError as exc:
        raise ConfigError(validation_problems(str(path), exc)) from None


def load_profile(name: str, search: list[Path]) -> Profile:
    return load_profile_file(find_profile(name, search))


def list_profiles(search: list[Path]) -> list[str]:
    names: set[str] = set()
    for d in search:
        if d.is_dir():
            names.update(str(p.relative_to(d).with_suffix("")) for p in d.rglob("*.yaml"))
    return sorted(names)


