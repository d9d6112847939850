"""Client of an identifier-resolution secondary node's REST API (SNMS).

Blocking (urllib3), meant to run in a worker thread; every call has a timeout and no
hidden retries: the registration queue decides what to retry. Errors are
:class:`NodeError` with a ``kind``:

==============  ====================================================  ===========
kind            meaning                                               retry?
==============  ====================================================  ===========
``auth``        the node refused the login                            no (config)
``rejected``    the node refused the record (rule, template, ...)     no
``rate_limit``  HTTP 429 (``retry_after`` seconds)                    yes
``server``      HTTP 5xx other than 504                               yes
``unknown``     HTTP 504 or no answer in time: it may have been done  query first
``down``        connection refused / network unreachable              yes
==============  ====================================================  ===========

Every reply is untrusted: its body is read in bounded chunks up to ``MAX_REPLY`` bytes
and within ``timeout`` seconds in all (a slow drip is cut off, not waited for), JSON
nested deeper than ``MAX_DEPTH`` is refused before it is parsed, and every field used is
type-checked; a reply that breaks any of these is a ``server`` error (retried), never an
exception of another kind.

A 401 on a data call means the token expired: the client logs in again once and
repeats the call. The password is read when logging in (from a file or the environment,
through the callable given) and never logged or kept in the exception texts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import urllib3

from gateway.errors import EdgegwError
from gateway.identifiers.codes import parse
from gateway.identifiers.passwords import v1_password

MAX_BATCH = 2000
MAX_VALUE = 255
TEMPLATE_INDEX = 1001
FIRST_USER_INDEX = 2000
MAX_REPLY = 4 * 1024 * 1024  # bytes: a batch answer for 2000 codes is ~200 kB
MAX_DEPTH = 32  # nesting of the node's JSON answers: 4 at most
EXISTS_MARK = "已存在"  # "标识已存在": the node's answer for a code that is registered
MISSING_MARK = "标识不存在"  # the node's answer for a code it does not have


class NodeError(EdgegwError):
    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limit", "server", "unknown", "down")


@dataclass(frozen=True, slots=True)
class Value:
    index: int
    type: str
    value: str


@dataclass(frozen=True, slots=True)
class Record:
    """What is registered for one code: its template version and user values."""

    handle: str
    template_version: str
    values: tuple[Value, ...] = field(default_factory=tuple)

    def check(self) -> None:
        """The node's rules, checked before sending (NodeError kind ``rejected``)."""
        parse(self.handle)
        for v in self.values:
            if v.index == TEMPLATE_INDEX:
                raise NodeError("rejected", f"{self.handle}: index {TEMPLATE_INDEX} is "
                                "reserved for the template version")
            if v.index < FIRST_USER_INDEX:
                raise NodeError("rejected", f"{self.handle}: user data uses indexes >= "
                                f"{FIRST_USER_INDEX}, not {v.index}")
            if len(v.value) > MAX_VALUE:
                raise NodeError("rejected", f"{self.handle}: value of index {v.index} has "
                                f"{len(v.value)} characters; at most {MAX_VALUE}")

    def to_json(self) -> dict[str, Any]:
        return {"handle": self.handle, "templateVersion": self.template_version,
                "value": [{"index": v.index, "type": v.type, "auth": "",
                           "data": {"format": "string", "value": v.value}}
                          for v in self.values]}


class NodeClient:
    def __init__(self, url: str, username: str, password: Callable[[], str], *,
                 login: str = "v1", timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.login_kind = login
        self.timeout = timeout
        self._http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(
            connect=min(timeout, 5.0), read=timeout))
        self._token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NodeClient({self.url!r}, user={self.username!r})"

    # -- transport -----------------------------------------------------------------------
    def _send(self, method: str, path: str, body: Any = None,
              token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None \
            else None
        deadline = time.monotonic() + self.timeout
        try:
            resp = self._http.request(method, self.url + path, body=data, headers=headers,
                                      preload_content=False)
            try:
                raw = self._body(resp, method, path, deadline)
            except BaseException:
                resp.close()  # a part-read reply: the connection is not reused
                raise
            resp.release_conn()
        except urllib3.exceptions.ReadTimeoutError:
            raise NodeError("unknown", f"{method} {path}: no answer within "
                            f"{self.timeout:g} s") from None
        except urllib3.exceptions.HTTPError as exc:
            raise NodeError("down", f"{method} {path}: {self.url} unreachable "
                            f"({type(exc).__name__})") from None
        status = resp.status
        doc = _json(raw)
        if status == 429:
            after = resp.headers.get("Retry-After")
            raise NodeError("rate_limit", f"{method} {path}: rate limited (HTTP 429)",
                            float(after) if after and after.isdigit() else None)
        if status == 504:
            raise NodeError("unknown", f"{method} {path}: gateway timeout (HTTP 504); the "
                            "outcome is unknown")
        if status >= 500:
            raise NodeError("server", f"{method} {path}: HTTP {status}")
        return status, doc

    def _body(self, resp: urllib3.BaseHTTPResponse, method: str, path: str,
              deadline: float) -> bytes:
        """The reply's body, at most MAX_REPLY bytes, complete before ``deadline``."""
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > MAX_REPLY:
            raise NodeError("server", f"{method} {path}: reply of {int(length)} bytes "
                            f"refused (at most {MAX_REPLY})")
        chunks: list[bytes] = []
        size = 0
        # read1: one socket read at a time, so a slow drip meets the deadline check
        read = getattr(resp, "read1", None) or resp.read
        while True:
            chunk = read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_REPLY:
                raise NodeError("server", f"{method} {path}: reply longer than {MAX_REPLY} "
                                "bytes refused")
            if time.monotonic() > deadline:
                raise NodeError("unknown", f"{method} {path}: reply not complete within "
                                f"{self.timeout:g} s")
            chunks.append(chunk)

    def login(self) -> str:
        password = self._password()
        path = "/identity/token/v1" if self.login_kind == "v1" else "/identity/token"
        sent = v1_password(password) if self.login_kind == "v1" else password
        status, doc = self._send("POST", path, {"username": self.username, "password": sent})
        token = (doc or {}).get("data", {}) if isinstance(doc, dict) else {}
        token = token.get("token") if isinstance(token, dict) else None
        if status != 200 or not isinstance(token, str | int) or not token:
            msg = str(doc.get("message"))[:MAX_VALUE] if isinstance(doc, dict) else None
            raise NodeError("auth", f"login as {self.username!r} refused by {self.url} "
                            f"(HTTP {status}{': ' + msg if msg else ''})")
        self._token = str(token)
        return self._token

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """A data call with the token; one fresh login when the token has expired."""
        with self._lock:
            token = self._token or self.login()
        status, doc = self._send(method, path, body, token)
        if status == 401:
            with self._lock:
                token = self.login()
            status, doc = self._send(method, path, body, token)
        if status == 401:
            raise NodeError("auth", f"{method} {path}: the node refuses the new token")
        if status != 200 or not isinstance(doc, dict):
            raise NodeError("server", f"{method} {path}: unexpected answer (HTTP {status})")
        return doc

    # -- the API -------------------------------------------------------------------------
    def register(self, rec: Record) -> str:
        """``"created"`` or ``"exists"`` (both mean: the code is registered)."""
        rec.check()
        doc = self._call("POST", "/identityv2/data", rec.to_json())
        if doc.get("status") == 1:
            return "created"
        msg = str(doc.get("message", ""))[:MAX_VALUE]
        if EXISTS_MARK in msg:
            return "exists"
        raise NodeError("rejected", f"{rec.handle}: refused by the node: {msg}")

    def update(self, rec: Record) -> str:
        """Replace a registered code's values (``PUT /identityv2/data``, the same body as
        registering): ``"updated"``, or ``"missing"`` when the node does not have it."""
        rec.check()
        doc = self._call("PUT", "/identityv2/data", rec.to_json())
        if doc.get("status") == 1:
            return "updated"
        msg = str(doc.get("message", ""))[:MAX_VALUE]
        if MISSING_MARK in msg:
            return "missing"
        raise NodeError("rejected", f"{rec.handle}: update refused by the node: {msg}")

    def batch_create(self, recs: Iterable[Record]) -> dict[str, str]:
        """Handle -> ``"created"``, ``"exists"`` or the node's reason; chunks of 2000."""
        records = list(recs)
        for r in records:
            r.check()
        out: dict[str, str] = {}
        for i in range(0, len(records), MAX_BATCH):
            chunk = records[i : i + MAX_BATCH]
            doc = self._call("POST", "/identityv2/data/batchCreate",
                             [r.to_json() for r in chunk])
            if doc.get("status") != 1 or not isinstance(doc.get("data"), list):
                raise NodeError("rejected",
                                f"batch refused: {str(doc.get('message'))[:MAX_VALUE]}")
            for item in doc["data"]:
                if not isinstance(item, dict) or not isinstance(item.get("handle"), str):
                    raise NodeError("server", "batch answer malformed: an item is not "
                                    "{handle, msg}")
                msg = str(item.get("msg", ""))[:MAX_VALUE]
                out[item["handle"]] = "created" if msg == "success" else \
                    "exists" if EXISTS_MARK in msg else msg
        return out

    def detail(self, handle: str) -> dict[str, Any] | None:
        """The registered record, or None when the code is not registered."""
        doc = self._call("GET", "/identityv2/data/detail?handle=" + quote(handle, safe="/."))
        if doc.get("status") == 1 and isinstance(doc.get("data"), dict):
            return dict(doc["data"])
        return None

    def resolve(self, code: str) -> dict[str, Any] | None:
        """Handle REST resolution (no login): ``{handle, values: [...]}`` or None."""
        c = parse(code)
        status, doc = self._send("GET", f"/api/handles/{c.prefix}/{quote(c.suffix)}")
        if status == 404 or (isinstance(doc, dict) and doc.get("responseCode") == 100):
            return None
        if status != 200 or not isinstance(doc, dict) or doc.get("responseCode") != 1 \
                or not isinstance(doc.get("values", []), list):
            raise NodeError("server", f"resolve {code}: unexpected answer (HTTP {status})")
        return doc


def _depth_ok(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when no JSON array/object in ``raw`` nests deeper than ``limit`` (brackets
    inside strings are skipped), checked before parsing: the parser recurses."""
    depth = 0
    in_str = esc = False
    for b in raw:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:  # backslash
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif b in (0x5D, 0x7D):
            depth -= 1
    return True


def _json(raw: bytes) -> Any:
    """The parsed reply, or None when it is empty, not JSON or nested too deep."""
    if not raw or not _depth_ok(raw):
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
