"""Durable spool: SQLite in WAL mode.

Why SQLite and not an append-only segment log (measured; see docs/architecture.md):
one committed insert plus one delete cost about 14 us of CPU on the reference machine
when this was chosen (93-108 us on 2026-12-04, a slow day: ``bench.spool_sql``; with the
live path's two SELECTs the spool is 18-23 % of the gateway's CPU per poll, see
bench/README.md), and SQLite brings what a segment log would have to build: atomic
commits, a write-ahead log whose torn tail is discarded by checksum on recovery,
out-of-order acknowledgement as a plain delete, and reuse of freed space.

Durability: ``append`` returns once its batch is committed, so a crash of the process
(SIGKILL, OOM kill) loses nothing that was stored. The batches appended in one turn of
the event loop (the devices of a poll slot answer together) are committed together, in
one transaction: a commit writes each page it changed once, so a slot of 25 devices
writes a few pages instead of 25 transactions of their own (bench/README.md, issue 20);
each append waits for that commit. Commits do
not fsync (``synchronous=NORMAL``); a background thread checkpoints the WAL every
``sync_interval`` seconds, which fsyncs it, so a power cut loses at most that window.
``sync_interval: 0`` fsyncs every commit instead (``synchronous=FULL``; slow on SD cards).

Acknowledged batches leave the file together: up to ``DELETE_MAX`` of them, at most
``DELETE_EVERY`` seconds after the first, in one statement (a transaction per ack cost as
much as the insert: WAL frames, locks; bench/README.md, issue 20), and always before the
table is read (a new session's backlog, dropping the oldest, expiry) or closed. A crash in
between sends those again after the restart; the backend drops them as duplicates
(gateway, seq), as it does for anything sent twice.

Disk full: a reserve file of ``RESERVE_BYTES`` lies beside the spool. When the disk is
full it is released, so that acknowledged batches can still be deleted (SQLite writes to
its WAL to delete) and the spool opened after a restart; it is made again once there is
room. New batches that find no room are dropped and counted (``disk_full``), the oldest
first under the ``drop-oldest`` policy, and the store writes again as soon as acks or
the reserve free space.

Recovery: on open the file is checked (``PRAGMA quick_check``). A file that is not a
database or is damaged is renamed to ``<name>.corrupt-<time>``, every row that can still
be read is copied into a new spool, and the gateway starts: it never crash-loops on a bad
spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.crypto.spool import OVERHEAD, SealError, SpoolCipher, is_sealed
from gateway.errors import SpoolUnavailable, StoreError
from gateway.store.base import BoundedStore, Encoder, Entry, Limits, StoreFull, initial_seq

log = logging.getLogger("edgegw.store")
T = TypeVar("T")

#: 2: the ``bulk`` column (a spool of schema 1 gets it, 0 for its rows, when opened)
SCHEMA = 2
_CREATE = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    ts INTEGER NOT NULL,
    points INTEGER NOT NULL,
    bulk INTEGER NOT NULL DEFAULT 0
);
"""
#: a batch's size as counted in the stats: its payload, without the encryption overhead
_LEN = f"(length(payload) - CASE WHEN substr(payload, 1, 1) = x'01' THEN {OVERHEAD} ELSE 0 END)"
_OUT_OF_SPACE = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN)
#: bytes kept in reserve beside the spool, released when the disk is full
RESERVE_BYTES = 4 * 1024 * 1024


class Reserve:
    """A preallocated file beside the spool: space that a full disk gives back."""

    RETRY = 10.0  # s between attempts to make it again

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ok = False  # in place (as far as we know)
        self._next_try = 0.0

    def ensure(self) -> bool:
        """Make the reserve when missing and there is room for it twice over (at most
        every RETRY s); True when it is in place."""
        if self.path.exists():
            self.ok = True
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + self.RETRY
        try:
            if shutil.disk_usage(self.path.parent).free < 2 * RESERVE_BYTES:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                self.path.unlink()
            return False
        self.ok = True
        return True

    def retry(self, attempt: Callable[[], T], errors: tuple[type[Exception], ...]) -> T:
        """``attempt()``; when it fails with one of ``errors`` and there is a reserve to
        release (the disk may be full), once more after releasing it."""
        try:
            return attempt()
        except errors:
            if not self.release():
                raise
        return attempt()

    def release(self) -> bool:
        """Give the space back; True when there was a reserve to release."""
        self.ok = False
        try:
            self.path.unlink()
        except OSError:
            return False
        log.warning("store: disk full: released the spool's %d MiB reserve (%s) so that "
                    "acknowledged batches can be deleted", RESERVE_BYTES >> 20, self.path)
        return True


def _connect(path: Path, sync_interval: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if sync_interval == 0 else 'NORMAL'}")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
    db.execute("PRAGMA busy_timeout=2000")
    return db


def _create(db: sqlite3.Connection) -> None:
    """The table, in the current schema (a spool written by an older version is
    upgraded in place: its rows stay)."""
    db.execute(_CREATE)
    columns = {row[1] for row in db.execute("PRAGMA table_info(spool)")}
    if "bulk" not in columns:
        db.execute("ALTER TABLE spool ADD COLUMN bulk INTEGER NOT NULL DEFAULT 0")
    db.execute(f"PRAGMA user_version={SCHEMA}")


def _is_ok(path: Path) -> str | None:
    """None if the file is a healthy spool, else what is wrong with it."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                return "; ".join(str(r[0]) for r in rows[:3])
            _create(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if _out_of_space(exc):  # not damage: the disk is full (the caller frees space)
            raise
        return str(exc)
    return None


def _out_of_space(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None) or 0  # extended: the low byte is primary
    return code & 0xFF in _OUT_OF_SPACE or "full" in str(exc) or "unable to open" in str(exc)


def _salvage(src: Path, dst: sqlite3.Connection) -> int:
    """Copy every readable row of a damaged spool. A damaged page makes the scan fail
    where it starts; the scan goes on after it: the next lower bound that reads is found
    by doubling the step past the failure, then bisecting back towards it."""
    try:
        old = sqlite3.connect(f"file:{src}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.DatabaseError:
        return 0
    copied = 0
    after = -(1 << 62)  # seq > after
    floor = after  # the next search starts at least here

    def readable(bound: int) -> bool:
        try:
            old.execute("SELECT * FROM spool WHERE seq > ? ORDER BY seq LIMIT 1",
                        (bound,)).fetchall()
        except sqlite3.DatabaseError:
            return False
        return True

    try:
        while True:
            try:
                cur = old.execute("SELECT * FROM spool WHERE seq > ? ORDER BY seq", (after,))
                for found in cur:
                    row = (*found, 0) if len(found) == 5 else found  # schema 1: no bulk
                    dst.execute("INSERT OR IGNORE INTO spool VALUES (?,?,?,?,?,?)", row[:6])
                    copied += 1
                    after = int(row[0])
                return copied
            except sqlite3.DatabaseError:
                pass
            # the scan failed past `after`: find the next bound that reads (and one past
            # the last one found, when that one failed with no row read)
            after = max(after, floor)
            step = 1
            while not readable(after + step):
                step *= 2
                if step > 1 << 62:
                    return copied  # nothing after it reads
            lo, hi = after + step // 2, after + step  # lo fails (or is after), hi reads
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if readable(mid) else (mid, hi)
            after, floor = hi, hi + 1
    except sqlite3.DatabaseError:
        return copied
    finally:
        old.close()


class SqliteStore(BoundedStore):
    #: the live cursor reads what was just appended from memory, not back from the file
    #: (two SELECTs per batch; up to 256 entries, ~300 KB of JSON batches)
    TAIL = 256
    #: acknowledged entries deleted together: at most this many, this long after the first
    DELETE_MAX = 512
    DELETE_EVERY = 1.0

    def __init__(self, path: str | Path, encode: Encoder, limits: Limits,
                 sync_interval: float = 1.0, cipher: SpoolCipher | None = None) -> None:
        super().__init__(encode, limits)
        self.path = Path(path)
        self.stats.durable = True
        self._cipher = cipher
        self.reserve = Reserve(self.path.with_name(self.path.name + ".reserve"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self.reserve.retry(lambda: self._open(sync_interval),
                                          (OSError, sqlite3.Error))
            self._check_sealed()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolUnavailable(f"cannot open the spool {self.path}: {exc}") from exc
        if not self.reserve.ensure():
            log.warning("store: no room for the spool's %d MiB reserve beside %s: a full "
                        "disk may keep acknowledged batches from being deleted",
                        RESERVE_BYTES >> 20, self.path)
        count, nbytes, last = self._db.execute(
            f"SELECT count(*), coalesce(sum({_LEN}), 0), coalesce(max(seq), 0) "
            "FROM spool").fetchone()
        seq_row = self._db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
        self._seq = initial_seq(max(last, seq_row[0] if seq_row else 0))
        self._last_inserted = last
        self.stats.entries, self.stats.bytes = count, nbytes
        if count:
            log.info("store: %s holds %d batch(es), %d bytes, from before the restart: "
                     "they are sent first", self.path, count, nbytes)
        self._stop = threading.Event()
        self._sync_interval = sync_interval
        self._checkpointer: threading.Thread | None = None
        if sync_interval > 0:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="spool-checkpoint", daemon=True)
            self._checkpointer.start()
        self._space_warned = False
        #: acknowledged, deleted at the next _flush_acked()
        self._acked: set[int] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
        #: appended in this turn of the event loop, committed together (_commit)
        self._pending: list[tuple[Entry, int, bool, asyncio.Future[None]]] = []

    def _open(self, sync_interval: float) -> sqlite3.Connection:
        if self.path.exists() and (problem := _is_ok(self.path)) is not None:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            bad = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.replace(Path(str(bad) + suffix))
            db = _connect(self.path, sync_interval)
            _create(db)
            saved = _salvage(bad, db)
            log.error("store: spool %s was damaged (%s); moved to %s, %d readable batch(es) "
                      "copied into a new spool", self.path, problem, bad.name, saved)
            return db
        db = _connect(self.path, sync_interval)
        _create(db)
        return db

    def _check_sealed(self) -> None:
        """Refuse to start on encrypted batches that this key cannot open (no key, or
        another key): sending would fail row by row and the data would be lost."""
        row = self._db.execute(
            "SELECT seq, topic, payload FROM spool WHERE substr(payload, 1, 1) = x'01' "
            "ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return
        if self._cipher is None:
            self._db.close()
            raise StoreError(f"the spool {self.path} holds encrypted batches: set "
                             "store.encryption_key_file to the key they were written with")
        try:
            self._cipher.open(row[0], row[1], row[2])
        except SealError:
            self._db.close()
            raise StoreError(f"the spool {self.path} holds batches encrypted with another "
                             "key than store.encryption_key_file: give the key they were "
                             "written with (nothing was changed)") from None

    def _checkpoint_loop(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=1000")
        try:
            while not self._stop.wait(self._sync_interval):
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    # -- group commit --------------------------------------------------------------------
    async def _keep(self, entry: Entry, points: int, urgent: bool) -> None:
        if self.stats.degraded not in (None, self.fallback):
            self._keep_now(entry, points, urgent)  # a full disk: one at a time
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._commit)
        self._pending.append((entry, points, urgent, done))
        await done

    def _commit(self) -> None:
        """Commit the entries appended since the last commit, in one transaction; when
        the disk is full, one at a time under the disk-full policy."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        seal = self._cipher.seal if self._cipher is not None else None
        rows = [(e.seq, e.topic, e.payload if seal is None else seal(e.seq, e.topic, e.payload),
                 e.ts_ms, points, e.bulk) for e, points, _, _ in pending]
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany("INSERT INTO spool VALUES (?,?,?,?,?,?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if not (isinstance(exc, sqlite3.OperationalError) and _out_of_space(exc)):
                for _, _, _, done in pending:
                    if not done.done():
                        done.set_exception(exc)
                return
            for e, points, urgent, done in pending:  # the disk-full path, one by one
                self._keep_now(e, points, urgent)
                if not done.done():
                    done.set_result(None)
            return
        self._writing()
        if not self.reserve.ok:  # released on a full disk: make it again when there is room
            self.reserve.ensure()
        for e, _, urgent, done in pending:
            self._kept(e, urgent)
            if not done.done():
                done.set_result(None)

    # -- backend primitives --------------------------------------------------------------
    def _insert(self, seq: int, topic: str, payload: bytes, ts_ms: int, points: int,
                bulk: bool) -> None:
        if self._cipher is not None:
            payload = self._cipher.seal(seq, topic, payload)
        row = (seq, topic, payload, ts_ms, points, bulk)
        try:
            self._db.execute("INSERT INTO spool VALUES (?,?,?,?,?,?)", row)
        except sqlite3.OperationalError as exc:
            if not _out_of_space(exc):
                raise
            if not self._acked:
                raise StoreFull(str(exc)) from exc
            self._flush_acked()  # acknowledged batches give their space back first
            try:
                self._db.execute("INSERT INTO spool VALUES (?,?,?,?,?,?)", row)
            except sqlite3.OperationalError as again:
                if _out_of_space(again):
                    raise StoreFull(str(again)) from again
                raise
        if not self.reserve.ok:  # released on a full disk: make it again when there is room
            self.reserve.ensure()

    def _delete_later(self, seq: int) -> bool:
        if self.stats.degraded is not None and self.stats.degraded != self.fallback:
            return False  # a full disk: space back at once
        acked = self._acked
        acked.add(seq)
        if len(acked) >= self.DELETE_MAX:
            self._flush_acked()
        elif self._flush_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # (no event loop: a tool) at once
                self._flush_acked()
            else:
                self._flush_timer = loop.call_later(self.DELETE_EVERY, self._flush_acked)
        return True

    def _flush_acked(self) -> None:
        """Delete the acknowledged entries, in one statement."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._acked:
            return
        seqs = sorted(self._acked)
        self._acked.clear()
        sql = f"DELETE FROM spool WHERE seq IN ({','.join('?' * len(seqs))})"
        try:
            self.reserve.retry(lambda: self._db.execute(sql, seqs),
                               (sqlite3.OperationalError,))
        except sqlite3.OperationalError as exc:
            # out of space even for the delete, no reserve left: they stay and are sent
            # again later (the ingest drops the duplicates); counted as stored again
            self._not_deleted(exc, seqs)

    def _not_deleted(self, exc: sqlite3.OperationalError, seqs: list[int]) -> None:
        if not self._space_warned:
            self._space_warned = True
            log.error("store: cannot delete acknowledged batches (%s)", exc)
        marks = ",".join("?" * len(seqs))
        with contextlib.suppress(sqlite3.Error):
            n, nbytes = self._db.execute(
                f"SELECT count(*), coalesce(sum({_LEN}), 0) FROM spool WHERE seq IN ({marks})",
                seqs).fetchone()
            self.stats.entries += n
            self.stats.bytes += nbytes
            self.stats.acked -= n

    def _oldest(self, n: int) -> list[tuple[int, int, int]]:
        self._flush_acked()
        rows = self._db.execute(
            f"SELECT seq, {_LEN}, points FROM spool ORDER BY seq LIMIT ?", (n,))
        return [(int(a), int(b), int(c)) for a, b, c in rows]

    def _delete(self, seq: int) -> tuple[int, int] | None:
        if seq in self._acked:  # acknowledged already, deleted soon
            return None
        sql = f"DELETE FROM spool WHERE seq = ? RETURNING {_LEN}, points"
        try:
            row = self.reserve.retry(lambda: self._db.execute(sql, (seq,)).fetchone(),
                                     (sqlite3.OperationalError,))
        except sqlite3.OperationalError as exc:
            # out of space even for the delete, no reserve left: the entry stays and is
            # sent again later (the ingest drops the duplicate)
            if not self._space_warned:
                self._space_warned = True
                log.error("store: cannot delete acknowledged batches (%s)", exc)
            return None
        return None if row is None else (int(row[0]), int(row[1]))

    def _select(self, n: int, after: int, before: int | None) -> list[Entry]:
        self._flush_acked()
        if before is None:
            rows = self._db.execute(
                "SELECT seq, topic, payload, ts, bulk FROM spool WHERE seq > ? "
                "ORDER BY seq LIMIT ?", (after, n))
        else:
            rows = self._db.execute(
                "SELECT seq, topic, payload, ts, bulk FROM spool WHERE seq > ? AND seq < ? "
                "ORDER BY seq LIMIT ?", (after, before, n))
        if self._cipher is None:
            return [Entry(seq, topic, payload, ts, bool(bulk))
                    for seq, topic, payload, ts, bulk in rows]
        out = []
        for seq, topic, blob, ts, bulk in rows:
            try:
                payload = self._cipher.open(seq, topic, blob) if is_sealed(blob) else blob
            except SealError:
                self._unreadable(seq)
                continue
            out.append(Entry(seq, topic, payload, ts, bool(bulk)))
        return out

    def _unreadable(self, seq: int) -> None:
        """A sealed row that does not open with the key that opened the others: damaged
        on disk. It can never be sent: it is dropped, counted and logged."""
        if self._drop(seq, "unreadable"):
            log.error("store: batch %d does not decrypt (damaged on disk); dropped", seq)

    def _expire(self, cutoff_ms: int) -> tuple[int, int, int]:
        self._flush_acked()
        n = nbytes = points = 0
        while True:
            rows = self._db.execute(
                f"SELECT seq, {_LEN}, points FROM spool WHERE ts < ? "
                "AND seq <= (SELECT min(seq) + 255 FROM spool) ORDER BY seq", (cutoff_ms,)
            ).fetchall()
            if not rows:
                return n, nbytes, points
            self._db.execute("DELETE FROM spool WHERE seq <= ? AND ts < ?",
                             (rows[-1][0], cutoff_ms))
            n += len(rows)
            nbytes += sum(r[1] for r in rows)
            points += sum(r[2] for r in rows)

    async def close(self) -> None:
        self._commit()
        self._flush_acked()
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
