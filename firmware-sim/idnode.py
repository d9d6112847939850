"""A fake identifier-resolution secondary node (tests and the demo).

Implements the secondary node's REST API as published (SNMS "标识操作接口" and
"身份认证接口"), with in-memory storage:

========================================  ================================================
``POST /identity/token``                  ``{username, password}`` -> ``data.token``
``POST /identity/token/v1``               password = sha256hex(sha256hex(pw) + yyyy-MM-dd)
``GET /identityv2/data/detail?handle=``   the record, or status -2 "标识不存在"
``POST /identityv2/data``                 register one; status -2 "标识已存在" if it exists
``POST /identityv2/data/batchCreate``     a list, at most 2000; per handle ``msg``
``PUT /identityv2/data``                  update (the register body): the code's values
                                          replaced; status -2 "标识不存在" if it is not there
``GET /api/handles/{prefix}/{suffix}``    Handle REST form: ``responseCode`` 1 / 100
========================================  ================================================

Answers are ``{"status": 1 | -2, "message": ..., "data": ...}``; a missing or expired
token is HTTP 401. The rules of the node are enforced: values have index >= 2000 (1001
is the template version, reserved), string values of at most 255 characters, format
``string``, a valid code; with ``templates`` set, a known template version whose indexes
and types the values use.

Faults (``FakeIdNode.fault``): ``authfail`` (every login refused), ``ratelimit`` (HTTP
429 with Retry-After), ``error`` (HTTP 500), ``timeout`` (the registration is stored,
then HTTP 504: the outcome is unknown to the client), ``hang`` (no answer for
``hang_s`` seconds), ``down`` (connection refused: the server socket is closed).
Hostile answers to every data call (logins still work), as a broken or compromised node
gives: ``nested`` (JSON nested 100,000 deep), ``items`` (a batch answer whose ``data``
items are not objects), ``huge`` (a 64 MB answer with no Content-Length), ``drip`` (the
answer one byte every ``drip_s`` seconds).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from gateway.identifiers.codes import CodeError, parse
from gateway.identifiers.passwords import NODE_TZ, v1_password

MAX_BATCH = 2000
HOSTILE = ("nested", "items", "huge", "drip")
EXISTS = "标识已存在"
NOT_FOUND = "标识不存在"
BAD_LOGIN = "用户名/密码错误\uff01"  # the node's own message (full-width punctuation)


class FakeIdNode:
    def __init__(self, users: dict[str, str] | None = None, token_ttl: float = 3600.0,
                 host: str = "127.0.0.1", port: int = 0,
                 templates: dict[str, dict[int, str]] | None = None) -> None:
        self.users = users or {"edgegw": "123456"}
        #: data templates: version -> {index: type}; a record must use a known version
        #: and only its indexes and types (None: any version, any index >= 2000)
        self.templates = templates
        self.token_ttl = token_ttl
        self.records: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.fault = "none"
        self.hang_s = 5.0
        self.drip_s = 0.2
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request
        self.registrations: dict[str, int] = {}  # handle -> times it was stored (once!)
        self.updates: dict[str, int] = {}  # handle -> times its values were replaced
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeIdNode:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-id-node")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeIdNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # -- the API -------------------------------------------------------------------------
    def _login(self, body: Any, v1: bool) -> tuple[int, dict[str, Any]]:
        if self.fault == "authfail" or not isinstance(body, dict):
            return 401, _err(BAD_LOGIN)
        user, given = body.get("username"), body.get("password")
        pw = self.users.get(str(user))
        if pw is None:
            return 401, _err(BAD_LOGIN)
        if v1:
            today = dt.datetime.now(NODE_TZ).date()
            days = (today - dt.timedelta(days=1), today, today + dt.timedelta(days=1))
            ok = given in {v1_password(pw, d) for d in days}
        else:
            ok = given == pw
        if not ok:
            return 401, _err(BAD_LOGIN)
        token = uuid.uuid4().hex
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
        return 200, _ok({"token": token})

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expiry = self.tokens.get(header[7:].strip())
        return expiry is not None and expiry > time.monotonic()

    def _check(self, rec: Any) -> str | None:
        """Why a registration record is refused, or None."""
        if not isinstance(rec, dict):
            return "请求体格式错误"
        try:
            parse(str(rec.get("handle", "")))
        except CodeError as exc:
            return f"标识格式错误: {exc}"
        if not rec.get("templateVersion"):
            return "缺少模板版本 templateVersion"
        values = rec.get("value")
        if not isinstance(values, list):
            return "缺少标识属性 value"
        template = None
        if self.templates is not None:
            template = self.templates.get(str(rec["templateVersion"]))
            if template is None:
                return f"数据模板{rec['templateVersion']}不存在"
        for v in values:
            if not isinstance(v, dict) or not isinstance(v.get("data"), dict):
                return "标识属性格式错误"
            idx = v.get("index")
            if idx == 1001:
                return "索引1001为预留索引"
            if not isinstance(idx, int) or idx < 2000 or (
                    template is not None and template.get(idx) != v.get("type")):
                return f"非法操作\uff0c索引{idx}在模板中不存在"
            if v["data"].get("format") != "string":
                return "标识属性内容格式暂时只支持string"
            if len(str(v["data"].get("value", ""))) > 255:
                return "标识属性内容值超过255个字符"
        return None

    def _store(self, rec: dict[str, Any]) -> str:
        handle = str(parse(rec["handle"]))
        with self._lock:
            if handle in self.records:
                return EXISTS
            self.records[handle] = {"prefix": handle.split("/", maxsplit=1)[0],
                                    "handle": handle, **_data(rec)}
            self.registrations[handle] = self.registrations.get(handle, 0) + 1
        return "success"

    def _replace(self, rec: dict[str, Any]) -> str:
        """Update: the code's values replaced by the request's (it must exist)."""
        handle = str(parse(rec["handle"]))
        with self._lock:
            old = self.records.get(handle)
            if old is None:
                return NOT_FOUND
            old.update(_data(rec))
            self.updates[handle] = self.updates.get(handle, 0) + 1
        return "success"

    def handle(self, method: str, raw_path: str, headers: dict[str, str],  # noqa: C901 - the fake node's request router, one branch per published API call
               body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        url = urlparse(raw_path)
        path = url.path
        self.calls.append((method, path))
        if self.fault == "ratelimit":
            return 429, _err("请求过于频繁\uff0c请稍后再试"), {"Retry-After": "1"}
        if self.fault == "error":
            return 500, _err("服务器内部错误"), {}
        if method == "POST" and path in ("/identity/token", "/identity/token/v1"):
            code, doc = self._login(body, path.endswith("/v1"))
            return code, doc, {}
        if path.startswith("/api/handles/"):
            handle = unquote(path[len("/api/handles/"):])
            rec = self.records.get(handle.lower().split("/")[0] + "/" + handle.split("/", 1)[-1])
            if rec is None:
                return 404, {"responseCode": 100, "handle": handle}, {}
            values = [{"index": v["index"], "type": v["type"], "data": v["data"], "ttl": 86400,
                       "timestamp": rec["timestamp"]} for v in rec["value"]]
            return 200, {"responseCode": 1, "handle": rec["handle"], "values": values}, {}
        if not self._authorised(headers.get("authorization")):
            return 401, _err("token无效或已过期"), {}
        if method == "GET" and path == "/identityv2/data/detail":
            handle = (parse_qs(url.query).get("handle") or [""])[0]
            if not handle:
                return 200, _err("缺少必要的请求参数: handle"), {}
            try:
                key = str(parse(handle))
            except CodeError:
                return 200, _err(NOT_FOUND), {}
            rec = self.records.get(key)
            return 200, (_ok({k: rec[k] for k in ("prefix", "handle", "templateVersion",
                                                  "value")}) if rec else _err(NOT_FOUND)), {}
        if method in ("POST", "PUT") and path == "/identityv2/data":  # register, update
            why = self._check(body)
            if why:
                return 200, _err(why), {}
            result = self._store(body) if method == "POST" else self._replace(body)
            if self.fault == "timeout":
                return 504, {"message": "Gateway Time-out"}, {}
            return 200, (_ok(True) if result == "success" else _err(result)), {}
        if method == "POST" and path == "/identityv2/data/batchCreate":
            if not isinstance(body, list):
                return 200, _err("请求体应为数组"), {}
            if len(body) > MAX_BATCH:
                return 200, _err(f"批量注册最大支持{MAX_BATCH}条"), {}
            out = []
            for rec in body:
                why = self._check(rec)
                out.append({"handle": rec.get("handle") if isinstance(rec, dict) else None,
                            "msg": why or self._store(rec)})
            if self.fault == "timeout":
                return 504, {"message": "Gateway Time-out"}, {}
            return 200, _ok(out), {}
        return 404, _err(f"no such endpoint: {method} {path}"), {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:  # noqa: C901 - one small method per HTTP verb and fault
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                if node.fault == "hang":
                    time.sleep(node.hang_s)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                code, doc, extra = node.handle(method, self.path, headers, body)
                if node.fault in HOSTILE and "/token" not in self.path:
                    self._hostile(node.fault)
                    return
                data = json.dumps(doc, ensure_ascii=False).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _hostile(self, fault: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.close_connection = True
                if fault == "nested":
                    data = b'{"status":1,"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
                elif fault == "items":
                    data = b'{"status":1,"message":"success","data":[1,"x",null,[]]}'
                elif fault == "huge":
                    self.end_headers()
                    block = b" " * 65536
                    with contextlib.suppress(OSError):
                        for _ in range(1024):
                            self.wfile.write(block)
                    return
                else:  # drip
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for b in b'{"status":1,"message":"success","data":true}' * 100:
                            self.wfile.write(bytes([b]))
                            self.wfile.flush()
                            time.sleep(node.drip_s)
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler


def _data(rec: dict[str, Any]) -> dict[str, Any]:
    """What the node stores of a register or update body: the template version (also as
    the reserved value 1001), the values, when."""
    return {"templateVersion": rec["templateVersion"],
            "value": [{"index": 1001, "type": "TEMPLATE", "auth": "1",
                       "data": {"format": "string", "value": rec["templateVersion"]}},
                      *rec["value"]],
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _ok(data: Any) -> dict[str, Any]:
    return {"status": 1, "message": "success", "data": data}


def _err(message: str) -> dict[str, Any]:
    return {"status": -2, "message": message, "data": None}
