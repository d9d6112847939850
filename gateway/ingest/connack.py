"""What a broker's CONNACK refusal means, and whether trying again can help.

paho reports a refusal as an MQTT v5 reason code also for 3.1.1 brokers (their return
codes 1-5 map to 132, 133, 136, 134, 135); a bare 3.1.1 return code is mapped the same
way here.
"""

from __future__ import annotations

from typing import Any

UNSUPPORTED_PROTOCOL = 132
#: MQTT 3.1.1 CONNACK return code -> the MQTT v5 reason code with the same meaning
_V3 = {1: 132, 2: 133, 3: 136, 4: 134, 5: 135}
#: v5 reason code -> (meaning, permanent: the same CONNECT will be refused again)
_MEANING: dict[int, tuple[str, bool]] = {
    128: ("unspecified error", False),
    129: ("malformed CONNECT", True),
    130: ("protocol error", True),
    131: ("implementation specific error", False),
    132: ("the broker does not speak this MQTT version", True),
    133: ("client identifier not valid (mqtt.client_id)", True),
    134: ("bad user name or password (mqtt.username, mqtt.password_file)", True),
    135: ("not authorized: a wrong user name or password (mqtt.username, "
          "mqtt.password_file), or the broker's ACL", True),
    136: ("server unavailable", False),
    137: ("server busy", False),
    138: ("banned", True),
    140: ("bad authentication method", True),
    149: ("packet too large", True),
    151: ("quota exceeded", False),
    153: ("payload format invalid", True),
    154: ("retain not supported", True),
    155: ("QoS not supported", True),
    156: ("use another server", True),
    157: ("server moved", True),
    159: ("connection rate exceeded", False),
}


def code_of(rc: Any) -> int | None:
    """The v5 reason code of a refusal (a paho ReasonCode, or a 3.1.1 return code)."""
    value = getattr(rc, "value", rc)
    if not isinstance(value, int):
        return None
    return _V3.get(value, value) if value < 128 else value


def meaning(rc: Any) -> tuple[str, bool]:
    """(what it means, permanent) for a CONNACK refusal."""
    code = code_of(rc)
    if code is None:
        return str(rc), False
    text, permanent = _MEANING.get(code, (f"reason code {code}", False))
    return f"CONNACK {code}: {text}", permanent
