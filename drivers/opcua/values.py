"""OPC UA values <-> edgegw values: StatusCode to quality, Variant to value, writes
checked against the node's DataType."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from asyncua import ua
from asyncua.ua import status_codes

from gateway.errors import WriteRejected
from gateway.model import Quality, Scalar, Value

_GOOD_MASK = 0xC0000000


def quality_of(code: int) -> tuple[Quality, str] | None:
    """None for Good (the common case, kept cheap); else (quality, StatusCode name).

    The top two bits of a StatusCode give its severity: 00 Good, 01 Uncertain, 1x Bad.
    """
    if not code & _GOOD_MASK:
        return None
    name = status_codes.get_name_and_doc(code)[0]
    if code & 0x80000000:
        return Quality.BAD, name
    return Quality.UNCERTAIN, name


def _scalar(v: Any) -> Scalar:
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(v, ua.LocalizedText):
        return str(v.Text)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, ua.NodeId | ua.QualifiedName):
        return str(v.to_string())
    if isinstance(v, ua.StatusCode):
        return str(v.name)
    if isinstance(v, list):
        raise TypeError("a multi-dimensional array (edgegw reads scalars and one-dimensional "
                        "arrays)")
    if isinstance(v, ua.ExtensionObject) or dataclasses.is_dataclass(v):
        raise TypeError(f"{_kind(v)}: structures are not supported (edgegw reads scalars and "
                        "one-dimensional arrays)")
    raise TypeError(f"unsupported value type {_kind(v)}")


def _kind(v: Any) -> str:
    """What a value the driver cannot use is, in OPC UA terms."""
    if isinstance(v, ua.ExtensionObject):
        return f"a structure (an ExtensionObject of encoding {v.TypeId.to_string()})"
    if isinstance(v, ua.Variant):
        return "a Variant inside a Variant"
    if dataclasses.is_dataclass(v):
        # asyncua decodes the structures it knows into classes named after their DataType
        return f"a structure (DataType {type(v).__name__})"
    return f"a {type(v).__name__}"


def to_value(v: Any) -> Value:
    """A Variant's Python value as an edgegw value: a scalar, or a tuple for a
    one-dimensional array; raises TypeError (saying what it is) when unsupported."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return tuple(_scalar(x) for x in v)
    return _scalar(v)


def epoch(t: dt.datetime | None) -> float | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


#: DataType NodeIds of namespace 0 for the built-in scalar types: i=1..12 match the
#: VariantType numbers (Boolean=1 ... String=12)
_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1), ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1), ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1), ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1), ua.VariantType.UInt64: (0, 2**64 - 1),
}


def variant_type_of(datatype: ua.NodeId) -> ua.VariantType:
    """The VariantType of a built-in scalar DataType; WriteRejected otherwise."""
    if datatype.NamespaceIndex == 0 and isinstance(datatype.Identifier, int) \
            and 1 <= datatype.Identifier <= 12:
        return ua.VariantType(datatype.Identifier)
    raise WriteRejected(f"node DataType {datatype.to_string()} is not a built-in scalar type")


def to_variant(name: str, value: Value, vtype: ua.VariantType) -> ua.Variant:
    """Check ``value`` against the node's type; WriteRejected with the reason."""
    def reject(why: str) -> WriteRejected:
        return WriteRejected(f"{name}: node has DataType {vtype.name}; {why}")

    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool) or value in (0, 1):
            return ua.Variant(bool(value), vtype)
        raise reject(f"expected true/false, got {value!r}")
    if vtype in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise reject(f"expected an integer, got {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise reject(f"expected an integer, got {value!r}")
            value = int(value)
        lo, hi = _INT_RANGES[vtype]
        if not lo <= value <= hi:
            raise reject(f"{value} is outside {lo}..{hi}")
        return ua.Variant(value, vtype)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise reject(f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise reject("not a finite number")
        return ua.Variant(float(value), vtype)
    if vtype is ua.VariantType.String:
        if not isinstance(value, str):
            raise reject(f"expected a string, got {value!r}")
        return ua.Variant(value, vtype)
    raise reject("writes of this type are not supported")
