"""The Read and Publish fast paths (drivers/opcua/fastwire.py) against asyncua's own codec:
requests encode to the bytes asyncua's encoder makes, responses asyncua encodes decode to
the values asyncua decodes, and every other shape is handed back (unit)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary
from hypothesis import given
from hypothesis import strategies as st

from drivers.opcua import fastdecode, fastwire

T = dt.datetime(2026, 12, 7, 1, 0, 0, 125000, tzinfo=dt.UTC)
V = ua.VariantType


def _nodes(n: int) -> list[ua.ReadValueId]:
    out = []
    for i in range(n):
        rv = ua.ReadValueId()
        rv.NodeId = ua.NodeId(f"Bench/v{i:03d}", 2) if i % 2 else ua.NodeId(5000 + i, 3)
        rv.AttributeId = ua.AttributeIds.Value
        out.append(rv)
    return out


def _header(r: Any, token: ua.NodeId) -> None:
    """What asyncua's client sets in every request header (UASocketProtocol)."""
    r.RequestHeader.AuthenticationToken = token
    r.RequestHeader.RequestHandle = 42
    r.RequestHeader.TimeoutHint = 2500


def _same_request(mine: Any, theirs: Any, token: ua.NodeId) -> None:
    """Byte for byte, but for the time stamp (now, in each)."""
    for r in (mine, theirs):
        _header(r, token)
    a, b = ua_binary.struct_to_binary(mine), ua_binary.struct_to_binary(theirs)
    at = 4 + len(ua_binary.nodeid_to_binary(token))  # TypeId, token, then the time stamp
    assert len(a) == len(b) and a[:at] == b[:at] and a[at + 8:] == b[at + 8:]
    stamp = int.from_bytes(a[at:at + 8], "little")
    assert abs(stamp / 1e7 - 11_644_473_600 - dt.datetime.now(dt.UTC).timestamp()) < 5


TOKENS = [ua.NodeId(), ua.NodeId(1_000_042, 0), ua.NodeId(b"\x01session\xff", 1,
                                                           ua.NodeIdType.ByteString)]


@pytest.mark.parametrize("token", TOKENS)
def test_a_precoded_read_is_the_request_asyncua_would_send(token: ua.NodeId) -> None:
    nodes = _nodes(7)
    params = ua.ReadParameters()
    params.TimestampsToReturn = ua.TimestampsToReturn.Source
    params.NodesToRead = nodes
    mine = fastwire.request(ua.ObjectIds.ReadRequest_Encoding_DefaultBinary,
                            fastwire.read_body(nodes))
    theirs = ua.ReadRequest()
    theirs.Parameters = params
    _same_request(mine, theirs, token)


@pytest.mark.parametrize("token", TOKENS)
def test_a_precoded_publish_is_the_request_asyncua_would_send(token: ua.NodeId) -> None:
    mine = fastwire.request(ua.ObjectIds.PublishRequest_Encoding_DefaultBinary,
                            fastwire.publish_body([(7, 11), (8, 3)]))
    theirs = ua.PublishRequest()
    theirs.Parameters.SubscriptionAcknowledgements = [
        ua.SubscriptionAcknowledgement(SubscriptionId=7, SequenceNumber=11),
        ua.SubscriptionAcknowledgement(SubscriptionId=8, SequenceNumber=3)]
    _same_request(mine, theirs, token)


def _dv(v: Any, vt: ua.VariantType, status: int = 0, ts: dt.datetime | None = T,
        server: bool = False) -> ua.DataValue:
    return ua.DataValue(ua.Variant(v, vt) if vt is not V.Null else None,
                        StatusCode=ua.StatusCode(status) if status else None,
                        SourceTimestamp=ts, ServerTimestamp=ts if server else None)


def _read_response(values: list[ua.DataValue], result: int = 0) -> bytes:
    resp = ua.ReadResponse()
    resp.ResponseHeader.Timestamp = T
    resp.ResponseHeader.ServiceResult = ua.StatusCode(result)
    resp.Results = values
    return ua_binary.struct_to_binary(resp)


def _same(fast: fastdecode.Value, dv: ua.DataValue) -> None:
    v, code, ts, vtype = fast
    var = dv.Value
    assert v == (var.Value if var is not None else None)
    assert vtype == (var.VariantType.value if var is not None else 0)
    assert code == (dv.StatusCode.value if dv.StatusCode is not None else 0)
    want = dv.SourceTimestamp.timestamp() if dv.SourceTimestamp else None
    assert ts == pytest.approx(want, abs=1e-6) if want else ts is None


def test_read_response_scalars_status_and_times() -> None:
    dvs = [_dv(True, V.Boolean), _dv(-7, V.Int16), _dv(2**32 - 1, V.UInt32),
           _dv(-(2**40), V.Int64), _dv(8000.25, V.Double), _dv("O4711 ü", V.String),
           _dv(None, V.Null, status=ua.StatusCodes.BadSensorFailure),
           _dv(3, V.Byte, status=ua.StatusCodes.UncertainLastUsableValue, server=True),
           _dv(12, V.UInt16, ts=None)]
    decoded = fastwire.decode_read(_read_response(dvs))
    assert decoded is not None
    result, values = decoded
    assert result == 0 and isinstance(values, list) and len(values) == len(dvs)
    _all_same(values, dvs)


@pytest.mark.parametrize("dv", [
    _dv([1, 2, 3], V.Int32),  # array
    _dv(ua.LocalizedText("x"), V.LocalizedText),
    _dv(ua.NodeId(5, 2), V.NodeId),
])
def test_read_response_other_shapes_are_handed_back(dv: ua.DataValue) -> None:
    assert fastwire.decode_read(_read_response([_dv(1, V.UInt32), dv])) is None


def test_read_response_bad_service_result() -> None:
    decoded = fastwire.decode_read(_read_response([], ua.StatusCodes.BadTooManyOperations))
    assert decoded == (ua.StatusCodes.BadTooManyOperations, [])


def test_read_response_with_diagnostics_is_handed_back() -> None:
    resp = ua.ReadResponse()
    resp.ResponseHeader.StringTable = ["why"]
    resp.Results = [_dv(1, V.UInt32)]
    assert fastwire.decode_read(ua_binary.struct_to_binary(resp)) is None


def _publish(values: list[tuple[object, ua.VariantType]], sub: int = 9, seq: int = 31,
             status_change: bool = False) -> bytes:
    n = ua.DataChangeNotification()
    for i, (v, vt) in enumerate(values):
        item = ua.MonitoredItemNotification()
        item.ClientHandle = 1000 + i
        item.Value = _dv(v, vt)
        n.MonitoredItems.append(item)
    resp = ua.PublishResponse()
    resp.ResponseHeader.Timestamp = T
    p = resp.Parameters
    p.SubscriptionId = sub
    p.AvailableSequenceNumbers = [seq - 1, seq]
    p.NotificationMessage.SequenceNumber = seq
    p.NotificationMessage.PublishTime = T
    p.NotificationMessage.NotificationData = [n] if values else []
    if status_change:
        sc = ua.StatusChangeNotification()
        sc.Status = ua.StatusCode(ua.StatusCodes.BadTimeout)
        p.NotificationMessage.NotificationData.append(sc)
    p.Results = [ua.StatusCode(0)]
    return ua_binary.struct_to_binary(resp)


def test_publish_response_data_changes() -> None:
    raw = _publish([(5, V.UInt32), (1.5, V.Float), ("x", V.String)])
    pub = fastwire.decode_publish(raw)
    assert pub is not None
    assert (pub.service_result, pub.subscription, pub.sequence) == (0, 9, 31)
    (notif,) = pub.notifications
    assert isinstance(notif, fastdecode.FastDataChange)
    assert [(h, v) for h, v, *_ in notif.items] == [(1000, 5), (1001, 1.5), (1002, "x")]
    slow = fastwire.published_by_asyncua(raw)
    assert (slow.subscription, slow.sequence) == (9, 31)
    # (asyncua's own decoder gives fastdecode's result once the driver installed it)
    assert isinstance(slow.notifications[0],
                      ua.DataChangeNotification | fastdecode.FastDataChange)


def test_publish_response_keepalive_and_status_change() -> None:
    keepalive = fastwire.decode_publish(_publish([]))
    assert keepalive is not None and keepalive.notifications == []
    pub = fastwire.decode_publish(_publish([(1, V.UInt32)], status_change=True))
    assert pub is not None
    assert isinstance(pub.notifications[1], ua.StatusChangeNotification)
    assert pub.notifications[1].Status.value == ua.StatusCodes.BadTimeout


def test_publish_response_with_an_array_decodes_that_notification_by_asyncua() -> None:
    pub = fastwire.decode_publish(_publish([([1, 2], V.Int32)]))
    assert pub is not None
    assert isinstance(pub.notifications[0], ua.DataChangeNotification)
    assert pub.notifications[0].MonitoredItems[0].Value.Value.Value == [1, 2]


_scalar = st.one_of(
    st.tuples(st.booleans(), st.just(V.Boolean)),
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.just(V.Int32)),
    st.tuples(st.integers(0, 2**64 - 1), st.just(V.UInt64)),
    st.tuples(st.floats(allow_nan=False), st.just(V.Double)),
    st.tuples(st.text(max_size=20), st.just(V.String)),
)


@given(st.lists(st.tuples(_scalar, st.sampled_from([0, ua.StatusCodes.BadSensorFailure,
                                                     ua.StatusCodes.UncertainLastUsableValue]),
                          st.booleans()), max_size=30))
def test_any_read_response_of_scalars_decodes_as_asyncua_does(
        items: list[tuple[tuple[object, ua.VariantType], int, bool]]) -> None:
    dvs = [_dv(v, vt, status, T if with_ts else None) for (v, vt), status, with_ts in items]
    raw = _read_response(dvs)
    decoded = fastwire.decode_read(raw)
    assert decoded is not None
    theirs = ua_binary.struct_from_binary(ua.ReadResponse, Buffer(raw)).Results
    _all_same(decoded[1], theirs)


def _all_same(got: list[fastdecode.Value] | fastdecode.Columns, dvs: list[ua.DataValue]) -> None:
    if isinstance(got, fastdecode.Columns):
        _columns_equal(got, dvs)
    else:
        for fast, dv in zip(got, dvs, strict=True):
            _same(fast, dv)


@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    fastwire.decode_read(data)
    fastwire.decode_publish(data)


# -- runs of one shape: decoded column by column ---------------------------------------
def _columns_equal(cols: fastdecode.Columns, dvs: list[ua.DataValue]) -> None:
    assert len(cols.values) == len(dvs)
    for j, dv in enumerate(dvs):
        ts = cols.times(-1.0)[j]
        code = cols.status[j] if cols.status is not None else 0
        _same((cols.values[j], code, None if ts == -1.0 else ts, cols.vtype), dv)


def test_a_read_of_like_nodes_is_decoded_as_columns() -> None:
    dvs = [_dv(4000 + i, V.UInt32) for i in range(50)]
    decoded = fastwire.decode_read(_read_response(dvs))
    assert decoded is not None and isinstance(decoded[1], fastdecode.Columns)
    _columns_equal(decoded[1], dvs)
    # one bad value among them (a StatusCode encoded for every one: still one shape)
    dvs = [_dv(7, V.Int16, status=ua.StatusCodes.BadSensorFailure if i == 3 else
               ua.StatusCodes.UncertainLastUsableValue) for i in range(5)]
    decoded = fastwire.decode_read(_read_response(dvs))
    assert decoded is not None and isinstance(decoded[1], fastdecode.Columns)
    _columns_equal(decoded[1], dvs)


def test_mixed_shapes_are_decoded_value_by_value() -> None:
    dvs = [_dv(1, V.UInt32), _dv(2, V.UInt32, status=ua.StatusCodes.BadSensorFailure),
           _dv(3.5, V.Double)]
    decoded = fastwire.decode_read(_read_response(dvs))
    assert decoded is not None and isinstance(decoded[1], list)
    for fast, dv in zip(decoded[1], dvs, strict=True):
        _same(fast, dv)


def test_a_notification_of_like_items_is_decoded_as_columns() -> None:
    raw = _publish([(i, V.UInt32) for i in range(20)])
    pub = fastwire.decode_publish(raw)
    assert pub is not None
    (notif,) = pub.notifications
    assert isinstance(notif, fastdecode.FastDataChange) and notif.columns is not None
    assert notif.columns.handles == tuple(range(1000, 1020))
    assert notif.columns.values == list(range(20))


_like = st.sampled_from([(st.booleans(), V.Boolean), (st.integers(-128, 127), V.SByte),
                         (st.integers(0, 2**16 - 1), V.UInt16),
                         (st.integers(-(2**63), 2**63 - 1), V.Int64),
                         (st.floats(allow_nan=False, width=32), V.Float),
                         (st.floats(allow_nan=False), V.Double)])


@given(st.data())
def test_any_run_of_like_values_decodes_as_asyncua_does(data: st.DataObject) -> None:
    strategy, vt = data.draw(_like)
    n = data.draw(st.integers(2, 40))
    with_status = data.draw(st.booleans())
    ts = data.draw(st.sampled_from([T, None]))
    server = data.draw(st.booleans())
    dvs = []
    for _ in range(n):
        status = data.draw(st.sampled_from([ua.StatusCodes.Good, ua.StatusCodes.BadSensorFailure,
                                            ua.StatusCodes.UncertainLastUsableValue]))
        dv = _dv(data.draw(strategy), vt, ts=ts, server=server)
        if with_status:
            dv.StatusCode = ua.StatusCode(status)
        dvs.append(dv)
    raw = _read_response(dvs)
    decoded = fastwire.decode_read(raw)
    assert decoded is not None
    theirs = ua_binary.struct_from_binary(ua.ReadResponse, Buffer(raw)).Results
    _all_same(decoded[1], theirs)
