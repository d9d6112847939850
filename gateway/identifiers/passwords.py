"""The secondary node's v1 login sends ``sha256hex(sha256hex(password) + "yyyy-MM-dd")``,
so the password itself never travels; the date is the node's (UTC+8) local date."""

from __future__ import annotations

import datetime as dt
import hashlib

NODE_TZ = dt.timezone(dt.timedelta(hours=8))


def _sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def v1_password(password: str, day: dt.date | None = None) -> str:
    day = day or dt.datetime.now(NODE_TZ).date()
    return _sha256hex(_sha256hex(password) + day.strftime("%Y-%m-%d"))
