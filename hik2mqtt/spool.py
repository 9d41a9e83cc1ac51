"""Where reads wait while the broker is away: in memory, or on disk (stdlib sqlite3).

A spool is a FIFO of (topic, payload) rows. Rows are removed only once the broker has
acknowledged them, so a bridge restarted during an outage (with a spool folder) still
delivers every read it had. It is bounded: past ``max_rows`` the oldest row is dropped
and an error logged (a read that old is the least use to anyone).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

Row = tuple[int, str, bytes]  # (row id, topic, payload)
MAX_CURSOR_DIGITS = 25  # a picName


class Spool(Protocol):
    def append(self, topic: str, payload: bytes) -> int: ...
    def prepend(self, items: list[tuple[str, bytes]]) -> None: ...
    def peek(self, limit: int, *, exclude: set[int]) -> list[Row]: ...
    def delete(self, row_id: int) -> None: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


def open_spool(folder: Path | None, *, max_rows: int) -> Spool:
    """The spool in ``folder`` (sqlite, survives restarts), or in memory without one."""
    if folder is None:
        return MemorySpool(max_rows=max_rows)
    return SqliteSpool(folder, max_rows=max_rows)


class MemorySpool:
    """A bounded in-memory spool (lost with the process)."""

    def __init__(self, *, max_rows: int) -> None:
        self.max_rows = max_rows
        self._rows: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self._next = 0
        self._first = 0
        self._lock = threading.Lock()

    def append(self, topic: str, payload: bytes) -> int:
        """Add a row at the end; return its row id."""
        with self._lock:
            self._next += 1
            self._rows[self._next] = (topic, payload)
            self._trim()
            return self._next

    def prepend(self, items: list[tuple[str, bytes]]) -> None:
        with self._lock:
            for topic, payload in reversed(items):
                self._first -= 1
                self._rows[self._first] = (topic, payload)
                self._rows.move_to_end(self._first, last=False)
            self._trim()

    def _trim(self) -> None:
        while len(self._rows) > self.max_rows:
            _, (topic, _payload) = self._rows.popitem(last=False)
            log.error("spool full (%d reads): dropped the oldest, for %s", self.max_rows, topic)

    def peek(self, limit: int, *, exclude: set[int]) -> list[Row]:
        with self._lock:
            out: list[Row] = []
            for row_id, (topic, payload) in self._rows.items():
                if row_id not in exclude:
                    out.append((row_id, topic, payload))
                    if len(out) >= limit:
                        break
            return out

    def delete(self, row_id: int) -> None:
        with self._lock:
            self._rows.pop(row_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def close(self) -> None:
        pass


class SqliteSpool:
    """A bounded spool in ``<folder>/hik2mqtt-spool.sqlite3``; it survives restarts."""

    FILE = "hik2mqtt-spool.sqlite3"

    def __init__(self, folder: Path, *, max_rows: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.FILE
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL)"
        )
        self._count = int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])
        if self._count:
            log.info("spool %s holds %d reads from before; they go first", self.path, self._count)

    def append(self, topic: str, payload: bytes) -> int:
        """Add a row at the end; return its row id."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO spool (topic, payload) VALUES (?, ?)", (topic, payload)
            )
            self._count += 1
            self._trim()
            return int(cursor.lastrowid or 0)

    def prepend(self, items: list[tuple[str, bytes]]) -> None:
        if not items:
            return
        with self._lock:
            first = self._db.execute("SELECT coalesce(min(seq), 1) FROM spool").fetchone()[0]
            rows = [(first - len(items) + i, t, p) for i, (t, p) in enumerate(items)]
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO spool (seq, topic, payload) VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
            self._count += len(items)
            self._trim()

    def _trim(self) -> None:
        excess = self._count - self.max_rows
        if excess > 0:
            self._db.execute(
                "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)",
                (excess,),
            )
            self._count -= excess
            log.error("spool full (%d reads): dropped the %d oldest", self.max_rows, excess)

    def peek(self, limit: int, *, exclude: set[int]) -> list[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM spool ORDER BY seq LIMIT ?",
                (limit + len(exclude),),
            ).fetchall()
        return [(int(s), str(t), bytes(p)) for s, t, p in rows if s not in exclude][:limit]

    def delete(self, row_id: int) -> None:
        with self._lock:
            cursor = self._db.execute("DELETE FROM spool WHERE seq = ?", (row_id,))
            self._count -= cursor.rowcount

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CursorStore:
    """Where each poll camera's cursor (the last picName handed on) survives a restart.

    ``<folder>/hik2mqtt-cursors.sqlite3``, one row per camera. Each call opens and closes
    its own connection: it is called once per poll batch, and so nothing is left open
    whoever stops the worker. A disk error is logged and the poll goes on without it.
    """

    FILE = "hik2mqtt-cursors.sqlite3"

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.FILE
        with self._connect() as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS cursors (camera TEXT PRIMARY KEY, cursor TEXT NOT NULL)"
            )

    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        return contextlib.closing(sqlite3.connect(self.path, timeout=5))

    def get(self, camera: str) -> str | None:
        """The camera's saved cursor, or None (none saved, or the store cannot be read)."""
        try:
            with self._connect() as db:
                row = db.execute(
                    "SELECT cursor FROM cursors WHERE camera = ?", (camera,)
                ).fetchone()
        except sqlite3.Error as exc:
            log.error("poll cursors %s: cannot read camera %s's cursor: %s", self.path, camera, exc)
            return None
        if row is None:
            return None
        cursor = str(row[0])
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= MAX_CURSOR_DIGITS):
            log.error(
                "poll cursors %s: camera %s's cursor is not a picName; ignored", self.path, camera
            )
            return None
        return cursor

    def set(self, camera: str, cursor: str) -> None:
        try:
            with self._connect() as db, db:
                db.execute(
                    "INSERT INTO cursors (camera, cursor) VALUES (?, ?) "
                    "ON CONFLICT(camera) DO UPDATE SET cursor = excluded.cursor",
                    (camera, cursor),
                )
        except sqlite3.Error as exc:
            log.error("poll cursors %s: cannot save camera %s's cursor: %s", self.path, camera, exc)
