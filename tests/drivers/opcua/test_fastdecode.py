"""The DataChangeNotification fast path decodes exactly what asyncua encodes, and hands
every other shape back to asyncua's decoder (unit)."""

from __future__ import annotations

import datetime as dt

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary
from hypothesis import given
from hypothesis import strategies as st

from drivers.opcua import fastdecode

T = dt.datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=dt.UTC)


def _notif(*values: tuple[object, ua.VariantType], status: int = 0,
           ts: dt.datetime | None = T) -> bytes:
    n = ua.DataChangeNotification()
    for i, (v, vt) in enumerate(values):
        item = ua.MonitoredItemNotification()
        item.ClientHandle = 1000 + i
        item.Value = ua.DataValue(ua.Variant(v, vt), StatusCode=ua.StatusCode(status),
                                  SourceTimestamp=ts, ServerTimestamp=ts)
        n.MonitoredItems.append(item)
    return ua_binary.struct_to_binary(n)


def test_scalars_status_and_source_time() -> None:
    V = ua.VariantType
    raw = _notif((True, V.Boolean), (-7, V.Int16), (65535, V.UInt16), (2**40, V.Int64),
                 (1.5, V.Float), (8000.25, V.Double), ("O4711 ü", V.String), (None, V.Null),
                 status=ua.StatusCodes.UncertainLastUsableValue)
    fast = fastdecode.decode(raw)
    assert fast is not None
    assert [i[1] for i in fast.items] == [True, -7, 65535, 2**40, 1.5, 8000.25, "O4711 ü", None]
    assert {i[0] for i in fast.items} == set(range(1000, 1008))
    assert all(i[2] == ua.StatusCodes.UncertainLastUsableValue for i in fast.items)
    assert fast.items[0][3] == pytest.approx(T.timestamp(), abs=1e-6)
    assert [i[4] for i in fast.items][:2] == [1, 4]


def test_no_timestamp_and_good_status() -> None:
    fast = fastdecode.decode(_notif((3, ua.VariantType.UInt32), ts=None))
    assert fast is not None and fast.items == [(1000, 3, 0, None, 7)]


@pytest.mark.parametrize("value", [
    ([1, 2, 3], ua.VariantType.Int32),  # array
    (ua.LocalizedText("x"), ua.VariantType.LocalizedText),
])
def test_other_shapes_fall_back_to_asyncua(value: tuple[object, ua.VariantType]) -> None:
    raw = _notif(value)
    assert fastdecode.decode(raw) is None
    decoded = fastdecode._Decoder.unpack(Buffer(raw))
    assert isinstance(decoded, ua.DataChangeNotification)
    assert decoded.MonitoredItems[0].Value.Value.Value == value[0]


@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    fastdecode.decode(data)


def test_installed_for_the_driver() -> None:
    import drivers.opcua.driver  # noqa: F401  (installs the fast path)

    assert fastdecode.EdgegwDataChangeNotification in ua.extension_objects_by_typeid.values()
    assert ua.DataChangeNotification not in ua.extension_objects_by_typeid.values()
