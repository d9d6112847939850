"""The durable registration queue: codes to register at the secondary node.

A table ``idreg`` in the gateway's spool database (the same SQLite file as the telemetry
store; WAL lets both connections work side by side), so a code seen while the node or the
5G link is down survives restarts and crashes until it is registered. The handle is the
primary key: submitting a code twice is a no-op, so every code is registered once.

A registered code whose data changes later (a product's record at a machine, sent when
the product leaves it, and again if it resumes) has its values replaced with the node's
update call: table ``idupd``, one row per code with the newest values, sent once the
code itself is registered (``idreg`` done). An update the node refuses (its template
lacks the record's indexes) is kept as refused; the registration stands.

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

_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    handle TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    added REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
"""
#: registrations (idreg) and updates of registered codes' data (idupd): the same columns
_SCHEMA = (_TABLE.format(name="idreg") + _TABLE.format(name="idupd")
           + "CREATE INDEX IF NOT EXISTS idreg_due ON idreg (state, next_try);\n")
_COLUMNS = "handle, kind, record, state, attempts, next_try, last_error, added"


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

    def due(self, limit: int, now: float | None = None) -> list[Entry]:
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} "
                "FROM idreg WHERE state IN ('pending', 'unknown') AND next_try <= ? "
                "ORDER BY added LIMIT ?", (now, limit)).fetchall()
        return [_entry(r) for r in rows]

    def entries(self, states: tuple[str, ...] = ("pending", "unknown", "failed")) -> list[Entry]:
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM idreg WHERE state IN ({marks}) ORDER BY added",
                states).fetchall()
        return [_entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute(
                "SELECT state, count(*) FROM idreg GROUP BY state").fetchall())

    def done(self, handle: str) -> None:
        self._set(handle, "done", None, 0.0)

    # -- updates of registered codes (table idupd) -------------------------------------------
    def put_update(self, kind: str, record: Record) -> None:
        """The code's data is now ``record``: replace whatever update was queued."""
        with self._lock:
            self._db.execute(
                "INSERT INTO idupd (handle, kind, record, added) VALUES (?,?,?,?) "
                "ON CONFLICT(handle) DO UPDATE SET kind = excluded.kind, "
                "record = excluded.record, state = 'pending', attempts = 0, next_try = 0, "
                "last_error = NULL", (record.handle, kind, _doc(record), time.time()))

    def updates_due(self, limit: int, now: float | None = None) -> list[Entry]:
        """Updates to send: pending, due, and of codes the node has (registered)."""
        now = time.time() if now is None else now
        cols = ", ".join(f"u.{c.strip()}" for c in _COLUMNS.split(","))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {cols} FROM idupd u JOIN idreg r ON r.handle = u.handle "
                "WHERE u.state = 'pending' AND u.next_try <= ? AND r.state = 'done' "
                "ORDER BY u.added LIMIT ?", (now, limit)).fetchall()
        return [_entry(r) for r in rows]

    def update_done(self, sent: Record) -> None:
        """Sent: done, unless newer values were queued meanwhile (they go next)."""
        with self._lock:
            self._db.execute(
                "UPDATE idupd SET state = 'done', last_error = NULL, attempts = attempts + 1 "
                "WHERE handle = ? AND record = ?", (sent.handle, _doc(sent)))

    def update_failed(self, handle: str, reason: str) -> None:
        self._set(handle, "failed", reason, 0.0, "idupd")

    def update_retry(self, handle: str, reason: str, at: float) -> None:
        self._set(handle, "pending", reason, at, "idupd")

    def update_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute(
                "SELECT state, count(*) FROM idupd GROUP BY state").fetchall())

    def failed(self, handle: str, reason: str) -> None:
        self._set(handle, "failed", reason, 0.0)

    def retry(self, handle: str, reason: str, at: float, unknown: bool = False) -> None:
        self._set(handle, "unknown" if unknown else "pending", reason, at)

    def _set(self, handle: str, state: str, reason: str | None, at: float,
             table: str = "idreg") -> None:
        with self._lock:
            self._db.execute(
                f"UPDATE {table} SET state = ?, last_error = ?, next_try = ?, "
                "attempts = attempts + 1 WHERE handle = ?", (state, reason, at, handle))


def _doc(record: Record) -> str:
    return json.dumps({"v": record.template_version,
                       "values": [[v.index, v.type, v.value] for v in record.values]},
                      ensure_ascii=False)


def _entry(row: tuple[object, ...]) -> Entry:
    handle, kind, raw, state, attempts, next_try, last_error, added = row
    doc = json.loads(str(raw))
    rec = Record(str(handle), str(doc["v"]),
                 tuple(Value(int(i), str(t), str(v)) for i, t, v in doc["values"]))
    return Entry(str(handle), str(kind), rec, str(state), int(attempts),  # type: ignore[call-overload]
                 float(next_try), None if last_error is None else str(last_error),  # type: ignore[arg-type]
                 float(added))  # type: ignore[arg-type]
