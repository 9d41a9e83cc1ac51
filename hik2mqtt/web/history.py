"""The history of reads behind the page: SQLite in a folder, or the last 1,000 in memory.

``add_published()`` is called on the bridge's own thread with a read's published JSON
(the dict and its bytes, as sent to MQTT) and never waits for the disk: the read goes into
a bounded queue (when it is full the oldest waiting read is dropped and counted) that one
writer thread empties in batches, storing the published JSON as it is, beside the columns
searches filter on. No :class:`ReadRecord` is built for a read until someone asks for it
(a search, a picture, an open page). Searches and erasures run on the web server's
threads. Both share one connection under a lock; SQLite serialises writes anyway.

Plate searches compare plates as the lists do (``plates.normalize``, then the pairs
cameras confuse folded: 0/O, 1/I, 8/B, 5/S, 2/Z), optionally within an edit distance of
1 or 2: rows are narrowed by length and by a piece of the plate that must survive the
edits intact (pigeonhole), then checked with ``plates.distance``.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hik2mqtt.backoff import reconnect_delay
from hik2mqtt.events import PICTURE_KIND_NAMES
from hik2mqtt.images import FILE_PART_LIMIT
from hik2mqtt.plates import CONFUSABLE, distance, normalize
from hik2mqtt.supervise import start_thread
from hik2mqtt.web.backend import ReadRecord, picture_files, search_fields

log = logging.getLogger(__name__)
# The writer yields to the cameras: it writes the reads waiting once reads pause for QUIET
# seconds, or once BATCH_ROWS wait, or once the oldest has waited MAX_WAIT. So a burst of
# reads is published without the history's SQLite work beside it, and is written in one
# transaction after (a transaction writes each index page it touched, and the plate index
# is touched at random: big ones write far fewer pages per read). A read is searchable up
# to MAX_WAIT after it arrives; the live feed and the read's own URL (``get``) do not wait.
QUIET = 0.2
MAX_WAIT = 2.0
BATCH_ROWS = 2000

MEMORY_READS = 1_000
QUEUE_SIZE = 10_000
MAX_LIMIT = 200
MAX_TOLERANCE = 2
MAX_NEAR = 500  # distinct plates a tolerant search looks for at most
PRUNE_EVERY = 3600.0
DB_NAME = "history.sqlite3"
# A picture file's name (hik2mqtt.images.picture_path): <HHMMSS-mmm>_<plate>_<kind>.jpg,
# the kind one of PICTURE_KIND_NAMES, numbered _2.._16 (so the split is never ambiguous).
_KINDS = "|".join(map(re.escape, PICTURE_KIND_NAMES))
_PICTURE_NAME = re.compile(r"\d{6}-\d{3}_(.+)_(?:" + _KINDS + r")(?:_\d{1,2})?\.jpg")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reads (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    camera TEXT NOT NULL,
    plate TEXT,
    folded TEXT,
    list TEXT,
    duplicate INTEGER NOT NULL,
    retransmitted INTEGER NOT NULL,
    gate INTEGER,
    data TEXT NOT NULL,  -- the read's JSON as published on <prefix>/<camera>/plate
    gate_reason TEXT
);
CREATE INDEX IF NOT EXISTS reads_folded ON reads (folded, id);
CREATE INDEX IF NOT EXISTS reads_ts ON reads (ts);
CREATE INDEX IF NOT EXISTS reads_camera ON reads (camera, id);
"""

_SELECT = "SELECT id, ts, gate, gate_reason, data FROM reads"
_ABSENT = object()
_INSERT = "INSERT INTO reads VALUES "
_ROW = "(?,?,?,?,?,?,?,?,?,?,?)"
INSERT_ROWS = 500  # rows per INSERT: 5,500 values, well under SQLite's 32,766

# 0.2.0 kept the published JSON inside its own document (under "payload", with the gate's
# reason beside it): moved to the columns of today, once, when such a file is opened.
_MIGRATE_0_2_0 = """
ALTER TABLE reads ADD COLUMN gate_reason TEXT;
UPDATE reads SET gate_reason = json_extract(data, '$.gate_reason'),
                 data = json_extract(data, '$.payload')
 WHERE json_valid(data) AND json_type(data, '$.payload') = 'object';
"""

CSV_COLUMNS = (
    "id",
    "received",
    "camera",
    "plate",
    "normalized",
    "time",
    "confidence",
    "direction",
    "match",
    "duplicate",
    "retransmitted",
    "gate_open",
    "gate_reason",
    "event_id",
)


# Errors that blame the rows, not the disk: each read is then tried alone.
_ROW_FAULTS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    OverflowError,
    ValueError,
    TypeError,
)


class _RowsRefused(Exception):
    """The database refused a batch's rows themselves (its cause says how)."""


def fold(plate: str | None) -> str | None:
    """A plate as the history compares it: normalised, confusable pairs folded."""
    normalized = normalize(plate)
    return normalized.translate(CONFUSABLE) if normalized else None


@dataclass(slots=True)
class _Waiting:
    """A read handed to the history: its published JSON (the dict, and the same as text
    when the bridge has it) and the gate's decision."""

    id: int
    doc: dict[str, Any]
    text: bytes | str | None
    gate_open: bool | None
    gate_reason: str | None

    def record(self) -> ReadRecord:
        return ReadRecord.from_payload(
            self.doc,
            received=_received(self.doc, None),
            gate_open=self.gate_open,
            gate_reason=self.gate_reason,
            id=self.id,
        )

    def row(self) -> tuple[Any, ...]:
        camera, plate, match, duplicate, retransmitted = search_fields(self.doc)
        # The bridge's JSON carries the plate normalised as the lists compare it: folding
        # that is a fifth of the cost of normalising again (on the writer, holding the GIL).
        normalized = self.doc.get("normalized", _ABSENT)
        if normalized is None or isinstance(normalized, str):
            folded = normalized.translate(CONFUSABLE) if normalized else None
        else:
            folded = fold(plate)
        if isinstance(self.text, bytes):
            data = self.text.decode(errors="replace")
        elif self.text:
            data = self.text
        else:
            data = json.dumps(self.doc, ensure_ascii=False, separators=(",", ":"))
        return (
            self.id,
            _received(self.doc, None).timestamp(),
            camera,
            plate,
            folded,
            match,
            int(duplicate),
            int(retransmitted),
            None if self.gate_open is None else int(self.gate_open),
            data,
            self.gate_reason,
        )


@dataclass(frozen=True, slots=True)
class Query:
    """A search: every filter optional; ``cursor`` is the ``next_cursor`` of the page before."""

    plate: str | None = None
    tolerance: int = 0
    camera: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    list: str | None = None  # a list's name, or "" for reads on no list
    duplicate: bool | None = None
    retransmitted: bool | None = None
    gate: bool | None = None  # True: opened, False: stayed shut (reads without a rule: neither)
    limit: int = 50
    cursor: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    records: list[ReadRecord]
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class Erased:
    reads: int
    pictures: int
    # Cameras whose last read was one of those erased, with that read's picture kinds:
    # the last pictures held for them (in memory, retained on the broker) must go too.
    latest: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _within(a: str | None, b: str, limit: int) -> bool:
    return a is not None and distance(a, b, limit=limit) <= limit


def _pieces(text: str, count: int) -> list[str]:
    """``text`` cut in ``count`` pieces as equal as can be (pigeonhole for edit distance)."""
    size, extra = divmod(len(text), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return [p for p in out if p]


class History:
    """The reads the page shows and searches. ``start()`` the writer, ``close()`` at the end."""

    def __init__(
        self,
        folder: Path | None,
        *,
        keep_days: float = 30.0,
        images_dir: Path | None = None,
        memory_reads: int = MEMORY_READS,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
        backoff: Callable[[int], float] = reconnect_delay,
    ) -> None:
        self.folder = folder
        self.keep_days = keep_days
        self.images_dir = images_dir.resolve() if images_dir is not None else None
        self.memory_reads = memory_reads
        self.clock = clock
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            target = str(folder / DB_NAME)
        else:
            target = ":memory:"
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        # Deleted rows (an erased plate) are overwritten with zeros, not left in free pages.
        self._db.execute("PRAGMA secure_delete=ON")
        if folder is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        if "gate_reason" not in {row[1] for row in self._db.execute("PRAGMA table_info(reads)")}:
            self._db.executescript(f"BEGIN; {_MIGRATE_0_2_0} COMMIT;")
            log.info("history: %s moved to this version's layout", target)
        self._db_lock = threading.Lock()
        last = self._db.execute("SELECT max(id) FROM reads").fetchone()[0]
        self._next_id = int(last or 0) + 1
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: collections.deque[_Waiting] = collections.deque(maxlen=queue_size)
        self._recent: collections.OrderedDict[int, _Waiting] = collections.OrderedDict()
        self._latest: dict[str, int] = {}
        self._pending = 0
        self._last_add = 0.0  # time.monotonic() of the last read added
        self._pending_flush = 0  # callers of flush() waiting: write at once
        self.queue_size = queue_size
        self.dropped = 0  # reads dropped from a full queue (the writer behind or failing)
        self.refused = 0  # reads the database refused (never retried)
        self.write_errors = 0  # batches that failed (and were queued again)
        self.restarts = 0
        self._failure: str | None = None  # why the writer failed last, until it writes again
        self._backoff = backoff
        self._stop = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0

    # -- the bridge's side ---------------------------------------------------------------

    def add_published(
        self,
        doc: dict[str, Any],
        text: bytes | str | None = None,
        gate_open: bool | None = None,
        gate_reason: str | None = None,
    ) -> int:
        """Queue a read for writing: ``doc`` is its JSON as published on MQTT (not to be
        changed afterwards), ``text`` the same as sent (stored as it is; encoded from
        ``doc`` when None). Returns the read's id. Never blocks on the disk."""
        camera = str(doc.get("camera", ""))  # as ReadRecord.from_payload reads it
        with self._lock:
            waiting = _Waiting(self._next_id, doc, text, gate_open, gate_reason)
            self._next_id += 1
            if len(self._queue) == self._queue.maxlen:
                self._count_dropped(1)
            self._queue.append(waiting)
            self._last_add = time.monotonic()
            self._pending += 1
            self._recent[waiting.id] = waiting
            if len(self._recent) > MEMORY_READS:
                self._recent.popitem(last=False)
            self._latest[camera] = waiting.id
            if len(self._queue) in (1, BATCH_ROWS):  # the writer waits for these two
                self._wake.notify_all()  # (flush() callers wait on the same condition)
        return waiting.id

    def add(self, record: ReadRecord) -> ReadRecord:
        """Queue a read made elsewhere (the demo, tests); returns it with its id."""
        doc = record.as_payload()
        return record.with_id(self.add_published(doc, None, record.gate_open, record.gate_reason))

    def is_latest(self, record: ReadRecord) -> bool:
        """True when ``record`` is the last read seen from its camera."""
        with self._lock:
            return self._latest.get(record.camera) == record.id

    # -- the writer thread ----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer, supervised like every thread of the bridge (supervise.py): a
        failure (a full or read-only disk, a bug) is logged, the reads it was writing go
        back to the queue, ``problem`` says so, and the writer starts again after a
        capped backoff."""
        self._thread = start_thread(
            self._run,
            name="history-writer",
            stop=self._stopping,
            on_crash=self._crashed,
            backoff=self._backoff,
        )

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def problem(self) -> str | None:
        """Why reads are not being written now (None: the writer is fine), for health."""
        failure = self._failure
        if failure is not None:
            return f"the history writer failed ({failure}); restarting it"
        if self._thread is not None and not self._thread.is_alive() and not self._stop:
            return "the history writer has stopped"
        return None

    def _crashed(self) -> None:
        self.restarts += 1
        if self._failure is None:
            self._failure = "an unexpected error"

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the writer, close the database."""
        with self._lock:
            self._stop = True
            self._wake.notify()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            left = [] if self.alive else list(self._queue)
            self._queue.clear()
        if left:  # stopped while waiting to retry: one last try, so a healed disk keeps them
            try:
                self._write(self._rows(left))
            except Exception as exc:
                log.error("history: %d reads not written at the stop: %s", len(left), exc)
        with self._db_lock:
            self._db.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every added read is written (tests, benchmarks); False at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._pending_flush += 1
            self._wake.notify_all()
        try:
            return self._wait_written(deadline)
        finally:
            with self._lock:
                self._pending_flush -= 1

    def _wait_written(self, deadline: float) -> bool:
        with self._lock:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._wake.wait(timeout=60.0)
                    if self.clock() >= self._next_prune:
                        break
                # Wait for a pause in the reads (see QUIET).
                latest = time.monotonic() + MAX_WAIT
                while (
                    self._queue
                    and len(self._queue) < BATCH_ROWS
                    and not self._stop
                    and self._pending_flush == 0
                    and (left := min(self._last_add + QUIET, latest) - time.monotonic()) > 0
                ):
                    self._wake.wait(left)
                batch = list(self._queue)
                self._queue.clear()
                stopping = self._stop
            if batch:
                self._store(batch)
            if self.clock() >= self._next_prune:
                try:
                    self.prune()
                except sqlite3.Error as exc:  # tried again in an hour; reads still written
                    log.error("history: cannot delete old reads: %s", exc)
            if stopping:
                return

    def _store(self, batch: list[_Waiting]) -> None:
        """Write ``batch``; when the database fails (a full, read-only or vanished disk),
        the reads not written go back to the front of the queue (the oldest dropped and
        counted if it overflows) and the writer fails, to be restarted by its supervisor
        after a backoff. A read the database refuses for itself is left out and counted."""
        rows = self._rows(batch)
        handled = written = 0  # rows[:handled] are written or refused for good
        try:
            try:
                written = self._write(rows)
                handled = len(rows)
            except _RowsRefused:
                for pair in rows:  # one at a time, to find the rows at fault
                    try:
                        written += self._write([pair])
                    except _RowsRefused as exc:
                        with self._lock:
                            self._count_refused(1)
                        log.error("history: read %d refused: %s", pair[0].id, exc.__cause__)
                    handled += 1
        except Exception as exc:
            self._failure = f"{type(exc).__name__}: {exc}"[:200]
            self.write_errors += 1
            with self._lock:
                self._pending -= written
                waiting = [w for w, _ in rows[handled:]] + list(self._queue)
                over = max(0, len(waiting) - self.queue_size)
                if over:
                    self._count_dropped(over)
                self._queue.clear()
                self._queue.extend(waiting[over:])
                self._wake.notify_all()
            raise
        with self._lock:
            self._pending -= written
            self._wake.notify_all()
        if self._failure is not None:
            log.info("history: writing again (%d reads written)", written)
            self._failure = None

    def _count_dropped(self, count: int) -> None:
        """``count`` waiting reads will never be written (called holding the lock)."""
        before = self.dropped
        self.dropped += count
        self._pending -= count
        if before == 0 or before // 1000 != self.dropped // 1000:
            log.warning("history: writer behind, %d reads dropped so far", self.dropped)

    def _count_refused(self, count: int) -> None:
        """``count`` reads that can't be stored, never retried (called holding the lock)."""
        self.refused += count
        self._pending -= count

    def _rows(self, batch: list[_Waiting]) -> list[tuple[_Waiting, tuple[Any, ...]]]:
        """Each read of ``batch`` with its row; a read whose row can't be made (a bug, a
        document no read has) is left out and counted, so it can't stop the others."""
        rows = []
        for waiting in batch:
            try:
                rows.append((waiting, waiting.row()))
            except Exception as exc:
                with self._lock:
                    self._count_refused(1)
                log.error("history: read %d can't be stored: %r", waiting.id, exc)
        return rows

    def _write(self, rows: list[tuple[_Waiting, tuple[Any, ...]]]) -> int:
        """Write ``rows`` in one transaction; how many were written. _RowsRefused when a
        row itself is at fault (so each is then tried alone)."""
        if not rows:
            return 0
        values = [row for _, row in rows]
        with self._db_lock:
            self._db.execute("BEGIN")
            try:
                # One statement per INSERT_ROWS rows, not executemany's one per row: the
                # sqlite3 module lets go of the GIL for each step and must win it back from
                # busy camera threads every time, up to 5 ms each (bench/bench_web.py:
                # 2,000 rows beside a busy thread took 10 s one by one, 0.1 s this way).
                for start in range(0, len(values), INSERT_ROWS):
                    chunk = values[start : start + INSERT_ROWS]
                    self._db.execute(
                        _INSERT + ",".join([_ROW] * len(chunk)),
                        [value for row in chunk for value in row],
                    )
                if self.folder is None:
                    self._db.execute(
                        "DELETE FROM reads WHERE id <= ?", (rows[-1][0].id - self.memory_reads,)
                    )
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, _ROW_FAULTS):
                    raise _RowsRefused from exc
                raise
        return len(rows)

    def prune(self) -> int:
        """Delete reads older than ``keep_days``; how many went."""
        self._next_prune = self.clock() + PRUNE_EVERY
        cutoff = self.clock() - self.keep_days * 86400
        with self._db_lock:
            gone = self._db.execute("DELETE FROM reads WHERE ts < ?", (cutoff,)).rowcount
        with self._lock:
            for key, waiting in list(self._recent.items()):
                if _received(waiting.doc, None).timestamp() < cutoff:
                    del self._recent[key]
        if gone:
            log.info("history: %d reads older than %g days deleted", gone, self.keep_days)
        return int(gone)

    # -- the page's side --------------------------------------------------------------------

    def get(self, read_id: int) -> ReadRecord | None:
        """One read by id (also one still waiting to be written)."""
        with self._lock:
            found = self._recent.get(read_id)
        if found is not None:
            return found.record()
        with self._db_lock:
            row = self._db.execute(f"{_SELECT} WHERE id = ?", (read_id,)).fetchone()
        return _record(row) if row else None

    def search(self, query: Query) -> Page:
        """One page of reads matching ``query``, newest first."""
        where, args = _where(query, self._near(query))
        limit = max(1, min(query.limit, MAX_LIMIT))
        # The WHERE clause is made of fixed fragments; every value is bound.
        sql = f"{_SELECT} WHERE {where} ORDER BY id DESC LIMIT ?"
        with self._db_lock:
            rows = self._db.execute(sql, (*args, limit + 1)).fetchall()
        records = [_record(row) for row in rows[:limit]]
        cursor = records[-1].id if len(rows) > limit else None
        return Page(records, cursor)

    def _near(self, query: Query) -> list[str] | None:
        """For a tolerant plate search, the stored plates within the tolerance.

        The narrowing runs on the (folded, id) index alone, without touching the rows:
        plates of a fitting length that hold one of the query's pieces intact
        (pigeonhole: k edits leave one of k + 1 pieces untouched), then the distance.
        """
        folded = fold(query.plate) if query.plate else None
        tolerance = max(0, min(query.tolerance, MAX_TOLERANCE))
        if folded is None or tolerance == 0:
            return None
        clauses = ["folded IS NOT NULL", "length(folded) BETWEEN ? AND ?"]
        args: list[Any] = [max(1, len(folded) - tolerance), len(folded) + tolerance]
        pieces = _pieces(folded, tolerance + 1)
        if len(pieces) == tolerance + 1:
            clauses.append("(" + " OR ".join("instr(folded, ?) > 0" for _ in pieces) + ")")
            args += pieces
        sql = f"SELECT DISTINCT folded FROM reads WHERE {' AND '.join(clauses)}"  # noqa: S608
        with self._db_lock:
            rows = self._db.execute(sql, args).fetchall()
        near = [row[0] for row in rows if _within(row[0], folded, tolerance)]
        return near[:MAX_NEAR]

    def count(self) -> int:
        with self._db_lock:
            return int(self._db.execute("SELECT count(*) FROM reads").fetchone()[0])

    def erase(self, plate: str) -> Erased:
        """Delete every read of ``plate`` (compared as searches compare) and its pictures:
        the files its reads name, and any other picture file of that plate in the picture
        folder (kept longer than the history, or never in it). The database is left
        without a trace of it (secure_delete, and the WAL emptied). Never logs the plate."""
        folded = fold(plate)
        if folded is None:
            return Erased(0, 0)
        self.flush()
        with self._lock:
            latest_known = dict(self._latest)
        with self._db_lock:
            rows = self._db.execute(
                "SELECT id, camera, data FROM reads WHERE folded = ?", (folded,)
            ).fetchall()
            last = {
                camera: latest_known.get(camera)
                or self._db.execute(
                    "SELECT max(id) FROM reads WHERE camera = ?", (camera,)
                ).fetchone()[0]
                for camera in {row[1] for row in rows}
            }
            self._db.execute("DELETE FROM reads WHERE folded = ?", (folded,))
            with self._lock:  # found after a restart: kept, so the next erasure knows it
                for camera, read_id in last.items():
                    self._latest.setdefault(camera, read_id)
            if self.folder is not None:
                busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if busy:
                    log.warning("history: the log of the erased reads could not be emptied yet")
        files: list[str] = []
        latest: dict[str, tuple[str, ...]] = {}
        for rid, camera, data in rows:
            doc = _doc(data)
            files.extend(_files(doc))
            if last.get(camera) == rid:
                images = doc.get("images")
                latest[camera] = tuple(images) if isinstance(images, dict) else ()
        with self._lock:
            for key, waiting in list(self._recent.items()):
                if fold(search_fields(waiting.doc)[1]) == folded:
                    files.extend(_files(waiting.doc))
                    del self._recent[key]
        pictures = sum(self._unlink(Path(f)) for f in set(files))
        pictures += self._erase_picture_files(folded)
        log.info(
            "history: erased %d reads of one plate and %d pictures (%d cameras' last read)",
            len(rows),
            pictures,
            len(latest),
        )
        return Erased(len(rows), pictures, latest)

    def _erase_picture_files(self, folded: str) -> int:
        """Delete the picture files in the picture folder named for ``folded``: a walk
        that never follows a symlink (a linked folder is not entered, a linked file is
        neither deleted nor followed) and holds one folder's matches at a time."""
        if self.images_dir is None or not self.images_dir.is_dir():  # none written yet
            return 0
        deleted = 0
        folders = [self.images_dir]
        while folders:
            folder = folders.pop()
            matches: list[str] = []
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False) and _names_plate(
                            entry.name, folded
                        ):
                            matches.append(entry.path)
            except OSError as exc:  # the folder's name is a camera's and a date: no plate
                log.warning("history: cannot look for pictures in %s: %s", folder, exc.strerror)
                continue
            for path in matches:
                try:
                    os.unlink(path)  # a symlink put here since would go itself, not its target
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    log.warning("history: cannot delete a picture in %s: %s", folder, exc.strerror)
                    continue
                deleted += 1
        return deleted

    def picture_file(self, record: ReadRecord, kind: str) -> Path | None:
        """The picture file of a read, only when it lies inside the picture folder."""
        path = record.pictures.get(kind)
        if path is None or self.images_dir is None:
            return None
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.images_dir) or not resolved.is_file():
            return None
        return resolved

    def _unlink(self, path: Path) -> int:
        resolved = path.resolve()
        if self.images_dir is None or not resolved.is_relative_to(self.images_dir):
            return 0
        try:
            resolved.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:  # the file's name holds the plate: not logged
            log.warning("history: cannot delete a picture in %s: %s", resolved.parent, exc.strerror)
            return 0
        return 1

    def csv_rows(self, query: Query) -> Iterator[str]:
        """The search as CSV text, a chunk per page (for a streaming response)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        yield out.getvalue()
        cursor = query.cursor
        while True:
            page = self.search(_replace_page(query, cursor))
            out.seek(0)
            out.truncate()
            for r in page.records:
                writer.writerow([_cell(v) for v in _csv_values(r)])
            yield out.getvalue()
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


def _replace_page(query: Query, cursor: int | None) -> Query:
    fields = {name: getattr(query, name) for name in Query.__slots__}
    fields.update(limit=MAX_LIMIT, cursor=cursor)
    return Query(**fields)


def _csv_values(r: ReadRecord) -> list[Any]:
    return [
        r.id,
        r.received.isoformat(timespec="milliseconds"),
        r.camera,
        r.plate,
        r.normalized,
        r.time,
        r.confidence,
        r.direction,
        r.match,
        r.duplicate,
        r.retransmitted,
        r.gate_open,
        r.gate_reason,
        r.event_id,
    ]


def _cell(value: Any) -> Any:
    """Camera text can't become a spreadsheet formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _doc(data: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _files(doc: dict[str, Any]) -> list[str]:
    images = doc.get("images")
    return [f for f in picture_files(images).values() if f] if isinstance(images, dict) else []


def _names_plate(name: str, folded: str) -> bool:
    """True when ``name`` is a picture file's name (``picture_path``) for the plate
    ``folded``. A plate part cut at the name's limit matches the plates it begins."""
    found = _PICTURE_NAME.fullmatch(name)
    if found is None:
        return False
    part = fold(found[1])
    if part == folded:
        return True
    return part is not None and len(found[1]) == FILE_PART_LIMIT and folded.startswith(part)


def _received(doc: dict[str, Any], ts: float | None) -> datetime:
    """When the bridge received a read: its JSON's ``received``, else the stored time."""
    text = doc.get("received")
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text)
            when.timestamp()  # one a timestamp can hold (not year 1 in the local zone)
        except (ValueError, OverflowError, OSError):
            pass
        else:
            return when
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC)


def _record(row: tuple[Any, ...]) -> ReadRecord:
    rid, ts, gate, gate_reason, data = row
    doc = _doc(data)
    return ReadRecord.from_payload(
        doc,
        received=_received(doc, ts),
        gate_open=None if gate is None else bool(gate),
        gate_reason=gate_reason,
        id=rid,
    )


def _where(q: Query, near: list[str] | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if q.plate is not None and q.plate.strip():
        folded = fold(q.plate)
        if folded is None:
            clauses.append("folded IS NULL")
        elif near is None:
            clauses.append("folded = ?")
            args.append(folded)
        else:
            clauses.append(f"folded IN ({','.join('?' * len(near)) or 'NULL'})")
            args += near
    if q.camera:
        clauses.append("camera = ?")
        args.append(q.camera)
    if q.since is not None:
        clauses.append("ts >= ?")
        args.append(q.since.timestamp())
    if q.until is not None:
        clauses.append("ts < ?")
        args.append(q.until.timestamp())
    if q.list is not None:
        if q.list == "":
            clauses.append("list IS NULL")
        else:
            clauses.append("list = ?")
            args.append(q.list)
    for column, wanted in (("duplicate", q.duplicate), ("retransmitted", q.retransmitted)):
        if wanted is not None:
            clauses.append(f"{column} = ?")
            args.append(int(wanted))
    if q.gate is not None:
        clauses.append("gate = ?")
        args.append(int(q.gate))
    if q.cursor is not None:
        clauses.append("id < ?")
        args.append(q.cursor)
    return (" AND ".join(clauses) or "1"), args
