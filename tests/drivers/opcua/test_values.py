"""StatusCode -> quality and value/DataType mapping (unit)."""

from __future__ import annotations

import datetime as dt

import pytest
from asyncua import ua

from drivers.opcua.values import epoch, quality_of, to_value, to_variant, variant_type_of
from gateway.errors import WriteRejected
from gateway.model import Quality

S = ua.StatusCodes


@pytest.mark.parametrize(("code", "expected"), [
    (S.Good, None),
    (S.GoodClamped, None),
    (S.UncertainLastUsableValue, (Quality.UNCERTAIN, "UncertainLastUsableValue")),
    (S.UncertainSensorNotAccurate, (Quality.UNCERTAIN, "UncertainSensorNotAccurate")),
    (S.BadSensorFailure, (Quality.BAD, "BadSensorFailure")),
    (S.BadNodeIdUnknown, (Quality.BAD, "BadNodeIdUnknown")),
    (S.BadCommunicationError, (Quality.BAD, "BadCommunicationError")),
    (S.BadWaitingForInitialData, (Quality.BAD, "BadWaitingForInitialData")),
])
def test_status_code_to_quality(code: int, expected: object) -> None:
    assert quality_of(code) == expected


def test_unknown_bad_code_is_still_bad() -> None:
    q = quality_of(0x80FF0000)
    assert q is not None and q[0] is Quality.BAD


@pytest.mark.parametrize(("raw", "value"), [
    (True, True), (7, 7), (2.5, 2.5), ("O4711", "O4711"), (None, None),
    (ua.LocalizedText("auto"), "auto"), (b"\x01\xff", "01ff"),
    (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2026-01-02T03:04:05+00:00"),
])
def test_values(raw: object, value: object) -> None:
    assert to_value(raw) == value


def test_arrays_are_tuples_and_structures_unsupported() -> None:
    assert to_value([1, 2, 3]) == (1, 2, 3)
    with pytest.raises(TypeError, match=r"a structure \(DataType EUInformation\)"):
        to_value(ua.EUInformation())


def test_epoch_of_naive_and_aware_times() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert epoch(t) == epoch(t.replace(tzinfo=None)) == t.timestamp()
    assert epoch(None) is None


@pytest.mark.parametrize(("ident", "vtype"), [
    (1, ua.VariantType.Boolean), (5, ua.VariantType.UInt16), (10, ua.VariantType.Float),
    (11, ua.VariantType.Double), (12, ua.VariantType.String),
])
def test_builtin_data_types(ident: int, vtype: ua.VariantType) -> None:
    assert variant_type_of(ua.NodeId(ident, 0)) is vtype


def test_structured_data_type_is_refused() -> None:
    with pytest.raises(WriteRejected, match="not a built-in scalar"):
        variant_type_of(ua.NodeId(884, 0))  # Range


@pytest.mark.parametrize(("value", "vtype", "ok"), [
    (80, ua.VariantType.UInt16, 80),
    (80.0, ua.VariantType.UInt16, 80),
    (True, ua.VariantType.Boolean, True),
    (1, ua.VariantType.Boolean, True),
    (21.5, ua.VariantType.Double, 21.5),
    (3, ua.VariantType.Float, 3.0),
    ("JOB-7", ua.VariantType.String, "JOB-7"),
])
def test_write_values_accepted(value: object, vtype: ua.VariantType, ok: object) -> None:
    v = to_variant("p", value, vtype)  # type: ignore[arg-type]
    assert v.Value == ok and v.VariantType is vtype


@pytest.mark.parametrize(("value", "vtype", "says"), [
    (70000, ua.VariantType.UInt16, "outside 0..65535"),
    (-1, ua.VariantType.UInt32, "outside"),
    (1.5, ua.VariantType.Int32, "expected an integer"),
    ("80", ua.VariantType.UInt16, "expected an integer"),
    (True, ua.VariantType.Int16, "expected an integer"),
    (2, ua.VariantType.Boolean, "true/false"),
    (float("nan"), ua.VariantType.Double, "finite"),
    (5, ua.VariantType.String, "expected a string"),
])
def test_write_values_refused(value: object, vtype: ua.VariantType, says: str) -> None:
    with pytest.raises(WriteRejected, match=says) as ei:
        to_variant("spindle_override", value, vtype)  # type: ignore[arg-type]
    assert "spindle_override" in str(ei.value) and vtype.name in str(ei.value)
