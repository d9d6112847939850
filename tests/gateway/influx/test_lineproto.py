from __future__ import annotations

import pytest

from gateway.influx.lineproto import PayloadError, batch_lines

DOC = {"v": 1, "gw": "gw1", "dev": "cnc-01", "prof": "acme/cnc-vmc850@1.2", "seq": 7,
       "ts": 1795450000123, "state": "running", "ids": {"device": "88.118.8/CNC 01"},
       "p": {"speed": 8000, "temp": 41.5, "door": True, "prog": 'O1 "x"', "bad": None},
       "q": {"bad": ["bad", "modbus exception 2 (illegal data address)"]}}


def test_lines_with_tags_typed_fields_and_quality() -> None:
    main, quality = batch_lines(DOC)
    assert main == ('acme/cnc-vmc850,gateway=gw1,device=cnc-01,profile_version=1.2,'
                    'id_device=88.118.8/CNC\\ 01 speed=8000i,temp=41.5,door=true,'
                    'prog="O1 \\"x\\"",state="running" 1795450000123')
    assert quality == ('edgegw_quality,gateway=gw1,device=cnc-01,point=bad '
                       'reason="modbus exception 2 (illegal data address)" 1795450000123')


def test_float_that_looks_integral_stays_float() -> None:
    (line,) = batch_lines({**DOC, "p": {"temp": 21.0}, "q": {}})
    assert "temp=21.0," in line


def test_offline_batch_writes_state_and_reason() -> None:
    (line,) = batch_lines({**DOC, "p": {}, "q": {}, "state": "offline", "err": "no response"})
    assert line.endswith(' state="offline",err="no response" 1795450000123')


@pytest.mark.parametrize(("change", "says"), [
    ({"ts": "yesterday"}, "ts must be"),
    ({"p": [1, 2]}, "p must be an object"),
    ({"gw": 5}, "must be strings"),
    ({"p": {"x": [[1]]}}, "an array inside an array"),
    ({"p": {"x": {"a": 1}}}, "unsupported value type dict"),
    ({"st": [1]}, "st must be an object"),
    ({"st": {"speed": "noon"}}, "st.speed must be"),
])
def test_malformed_payloads(change: dict[str, object], says: str) -> None:
    with pytest.raises(PayloadError, match=says):
        batch_lines({**DOC, **change})


def test_missing_fields() -> None:
    doc = dict(DOC)
    del doc["dev"]
    with pytest.raises(PayloadError, match="missing field 'dev'"):
        batch_lines(doc)


def test_points_with_their_own_source_timestamp_get_their_own_line() -> None:
    main, own, _ = batch_lines({**DOC, "p": {"speed": 8000, "temp": 41.5, "door": True},
                                "st": {"temp": 1795449999000, "door": 1795449999000}})
    assert main.endswith(' speed=8000i,state="running" 1795450000123')
    assert own.endswith(" temp=41.5,door=true 1795449999000")


def test_an_array_is_one_field_per_element() -> None:
    from gateway.influx.lineproto import batch_lines

    doc = {"gw": "gw1", "dev": "imm", "prof": "moldtech/imm-ua-e77@1.1", "ts": 1795450000123,
           "p": {"curve": [1.5, 2.0, None, 4.25], "valves": [True, False], "mode": "SETUP"},
           "st": {"valves": 1795450000100}}
    lines = batch_lines(doc)
    assert lines[0].endswith(' curve[0]=1.5,curve[1]=2.0,curve[3]=4.25,mode="SETUP" '
                             '1795450000123')
    assert lines[1].endswith(" valves[0]=true,valves[1]=false 1795450000100")
