"""The durable registration queue: codes to register at the secondary node.

A table ``idreg`` in the gateway's spool database (the same SQLite file as the telemetry
store; WAL lets both connections work side by side), so a code seen while the node or the
5G link is down survives restarts and crashes until it is registered. The handle is the
primary key: submitting a code twice is a no-op, so every code is registered once.

A code whose values change after it was registered (a product's record, a verdict
added later) is queued again with ``op`` ``update``: the node's update call replaces its
values (:meth:`RegistrationQueue.upsert`).

States: ``pending`` (to send; ``next_try`` says when), ``unknown`` (the last attempt
timed out: query the node before sending again), ``done`` (registered, or "already
exists"), ``failed`` (refused by the node's rules; kept with the reason, not retried).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.identifiers.client import Record, Value

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idreg (
    handle TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    added REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS idreg_due ON idreg (state, next_try);
"""


#: the op of a code queued with values that must end up at the node (a product record):
#: registered, and updated if the node has the code already
UPSERT = "upsert"


@dataclass(frozen=True, slots=True)
class Entry:
    handle: str
    kind: str
    record: Record
    state: str
    attempts: int
    next_try: float
    last_error: str | None
    added: float
    #: "create" (once: values as first seen), "upsert" (these values: register, or
    #: update if it exists) or "update" (registered: replace its values)
    op: str = "create"


class RegistrationQueue:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(idreg)")}
            if "op" not in cols:  # a queue made before updates existed
                self._db.execute("ALTER TABLE idreg ADD COLUMN op TEXT NOT NULL "
                                 "DEFAULT 'create'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def submit(self, kind: str, record: Record) -> bool:
        """Queue a code once; True when it was new."""
        doc = _doc(record)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO idreg (handle, kind, record, added) VALUES (?,?,?,?)",
                (record.handle, kind, doc, time.time()))
            return cur.rowcount == 1

    def upsert(self, kind: str, record: Record) -> str:
        """Queue a code with these values, whatever was queued for it before: one not
        registered yet is registered with them (``"upsert"``: updated if the node has
        it already); one registered already is updated at the node (``"update"``)."""
        doc = _doc(record)
        with self._lock, self._db:
            row = self._db.execute("SELECT state, op FROM idreg WHERE handle = ?",
                                   (record.handle,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO idreg (handle, kind, record, added, op) "
                                 "VALUES (?,?,?,?,?)",
                                 (record.handle, kind, doc, time.time(), UPSERT))
                return UPSERT
            op = "update" if row[0] == "done" or row[1] == "update" else UPSERT
            # an attempt in doubt ('unknown') stays so: the node is asked first
            state = "unknown" if row[0] == "unknown" else "pending"
            self._db.execute(
                "UPDATE idreg SET kind = ?, record = ?, op = ?, state = ?, next_try = 0, "
                "attempts = 0, last_error = NULL WHERE handle = ?",
                (kind, doc, op, state, record.handle))
            return op

    def due(self, limit: int, now: float | None = None) -> list[Entry]:
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT handle, kind, record, state, attempts, next_try, last_error, added, op "
                "FROM idreg WHERE state IN ('pending', 'unknown') AND next_try <= ? "
                "ORDER BY added LIMIT ?", (now, limit)).fetchall()
        return [_entry(r) for r in rows]

    def entries(self, states: tuple[str, ...] = ("pending", "unknown", "failed")) -> list[Entry]:
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                "SELECT handle, kind, record, state, attempts, next_try, last_error, added, op "
                f"FROM idreg WHERE state IN ({marks}) ORDER BY added", states).fetchall()
        return [_entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute(
                "SELECT state, count(*) FROM idreg GROUP BY state").fetchall())

    def done(self, handle: str, sent: Record | None = None) -> None:
        """Registered (or updated). With ``sent``: only if the queued values are still
        those sent (new values queued meanwhile by :meth:`upsert` are sent next)."""
        if sent is None:
            self._set(handle, "done", None, 0.0)
            return
        with self._lock:
            self._db.execute(
                "UPDATE idreg SET state = 'done', last_error = NULL, next_try = 0, "
                "attempts = attempts + 1 WHERE handle = ? AND record = ?",
                (handle, _doc(sent)))

    def failed(self, handle: str, reason: str) -> None:
        self._set(handle, "failed", reason, 0.0)

    def create_instead(self, handle: str) -> None:
        """An update the node answered 'not registered': register it instead."""
        self._op(handle, UPSERT)

    def update_instead(self, handle: str) -> None:
        """A registration (with values that must be there) the node answered 'exists':
        it may hold other values (an earlier attempt's): update it."""
        self._op(handle, "update")

    def _op(self, handle: str, op: str) -> None:
        with self._lock:
            self._db.execute("UPDATE idreg SET op = ?, state = 'pending', next_try = 0 "
                             "WHERE handle = ?", (op, handle))

    def retry(self, handle: str, reason: str, at: float, unknown: bool = False) -> None:
        self._set(handle, "unknown" if unknown else "pending", reason, at)

    def _set(self, handle: str, state: str, reason: str | None, at: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE idreg SET state = ?, last_error = ?, next_try = ?, "
                "attempts = attempts + 1 WHERE handle = ?", (state, reason, at, handle))


def _doc(record: Record) -> str:
    return json.dumps({"v": record.template_version,
                       "values": [[v.index, v.type, v.value] for v in record.values]},
                      ensure_ascii=False)


def _entry(row: tuple[object, ...]) -> Entry:
    handle, kind, raw, state, attempts, next_try, last_error, added, op = row
    doc = json.loads(str(raw))
    rec = Record(str(handle), str(doc["v"]),
                 tuple(Value(int(i), str(t), str(v)) for i, t, v in doc["values"]))
    return Entry(str(handle), str(kind), rec, str(state), int(attempts),  # type: ignore[call-overload]
                 float(next_try), None if last_error is None else str(last_error),  # type: ignore[arg-type]
                 float(added), str(op))  # type: ignore[arg-type]
