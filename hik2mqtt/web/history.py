"""The history of reads behind the page: SQLite in a folder, or the last 1,000 in memory.

``add()`` is called on the bridge's own thread and never waits for the disk: records go
into a bounded queue (when it is full the oldest waiting record is dropped and counted)
that one writer thread empties in batches. Searches and erasures run on the web
server's threads. Both share one connection under a lock; SQLite serialises writes anyway.

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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hik2mqtt.plates import CONFUSABLE, distance, normalize
from hik2mqtt.web.backend import ReadRecord

log = logging.getLogger(__name__)
BATCH_DELAY = 0.2  # seconds the writer gathers a burst of reads into one transaction
BATCH_ROWS = 500  # or until this many wait

MEMORY_READS = 1_000
QUEUE_SIZE = 10_000
MAX_LIMIT = 200
MAX_TOLERANCE = 2
MAX_NEAR = 500  # distinct plates a tolerant search looks for at most
PRUNE_EVERY = 3600.0
DB_NAME = "history.sqlite3"

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
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reads_folded ON reads (folded, id);
CREATE INDEX IF NOT EXISTS reads_ts ON reads (ts);
CREATE INDEX IF NOT EXISTS reads_camera ON reads (camera, id);
"""

_SELECT = "SELECT id, ts, camera, plate, list, duplicate, retransmitted, gate, data FROM reads"

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


def fold(plate: str | None) -> str | None:
    """A plate as the history compares it: normalised, confusable pairs folded."""
    normalized = normalize(plate)
    return normalized.translate(CONFUSABLE) if normalized else None


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
        if folder is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db_lock = threading.Lock()
        last = self._db.execute("SELECT max(id) FROM reads").fetchone()[0]
        self._next_id = int(last or 0) + 1
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: collections.deque[ReadRecord] = collections.deque(maxlen=queue_size)
        self._recent: collections.OrderedDict[int, ReadRecord] = collections.OrderedDict()
        self._latest: dict[str, int] = {}
        self._pending = 0
        self._pending_flush = 0  # callers of flush() waiting: write at once
        self.dropped = 0
        self.write_errors = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0

    # -- the bridge's side ---------------------------------------------------------------

    def add(self, record: ReadRecord) -> ReadRecord:
        """Queue a read for writing; returns it with its id. Never blocks on the disk."""
        with self._lock:
            record = record.with_id(self._next_id)
            self._next_id += 1
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                self._pending -= 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("history: writer behind, %d reads dropped so far", self.dropped)
            self._queue.append(record)
            self._pending += 1
            self._recent[record.id] = record
            while len(self._recent) > MEMORY_READS:
                self._recent.popitem(last=False)
            self._latest[record.camera] = record.id
            if len(self._queue) in (1, BATCH_ROWS):  # the writer waits for these two
                self._wake.notify_all()  # (flush() callers wait on the same condition)
        return record

    def is_latest(self, record: ReadRecord) -> bool:
        """True when ``record`` is the last read seen from its camera."""
        with self._lock:
            return self._latest.get(record.camera) == record.id

    # -- the writer thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the writer, close the database."""
        with self._lock:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
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
                # Gather a burst into one transaction: far fewer commits and wake-ups for
                # the camera threads to compete with (a read is searchable BATCH_DELAY later;
                # the live feed does not wait for this).
                until = time.monotonic() + BATCH_DELAY
                while (
                    self._queue
                    and len(self._queue) < BATCH_ROWS
                    and not self._stop
                    and self._pending_flush == 0
                    and (left := until - time.monotonic()) > 0
                ):
                    self._wake.wait(left)
                batch = list(self._queue)
                self._queue.clear()
                stopping = self._stop
            try:
                if batch:
                    self._write(batch)
                if self.clock() >= self._next_prune:
                    self.prune()
            except Exception:  # a broken disk must not kill the writer silently
                self.write_errors += 1
                log.exception("history: cannot write %d reads", len(batch))
            finally:
                with self._lock:
                    self._pending -= len(batch)
                    self._wake.notify_all()
            if stopping:
                return

    def _write(self, batch: list[ReadRecord]) -> None:
        rows = [
            (
                r.id,
                r.received.timestamp(),
                r.camera,
                r.plate,
                fold(r.plate),
                r.match,
                int(r.duplicate),
                int(r.retransmitted),
                None if r.gate_open is None else int(r.gate_open),
                _data_json(r),
            )
            for r in batch
        ]
        with self._db_lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO reads VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                if self.folder is None:
                    self._db.execute(
                        "DELETE FROM reads WHERE id <= ?", (batch[-1].id - self.memory_reads,)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def prune(self) -> int:
        """Delete reads older than ``keep_days``; how many went."""
        self._next_prune = self.clock() + PRUNE_EVERY
        cutoff = self.clock() - self.keep_days * 86400
        with self._db_lock:
            gone = self._db.execute("DELETE FROM reads WHERE ts < ?", (cutoff,)).rowcount
        with self._lock:
            for key in [k for k, r in self._recent.items() if r.received.timestamp() < cutoff]:
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
            return found
        with self._db_lock:
            row = self._db.execute(
                "SELECT id, ts, camera, plate, list, duplicate, retransmitted, gate, data "
                "FROM reads WHERE id = ?",
                (read_id,),
            ).fetchone()
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
        """Delete every read of ``plate`` (compared as searches compare) and its pictures."""
        folded = fold(plate)
        if folded is None:
            return Erased(0, 0)
        self.flush()
        with self._db_lock:
            rows = self._db.execute(
                "SELECT id, data FROM reads WHERE folded = ?", (folded,)
            ).fetchall()
            self._db.execute("DELETE FROM reads WHERE folded = ?", (folded,))
        files: list[str] = []
        for _, data in rows:
            files.extend(p for p in json.loads(data).get("pictures", {}).values() if p)
        with self._lock:
            for key in [k for k, r in self._recent.items() if fold(r.plate) == folded]:
                files.extend(str(p) for p in self._recent[key].pictures.values() if p)
                del self._recent[key]
        pictures = sum(self._unlink(Path(f)) for f in set(files))
        log.info("history: erased %d reads of one plate and %d pictures", len(rows), pictures)
        return Erased(len(rows), pictures)

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
        except OSError as exc:
            log.warning("history: cannot delete picture %s: %s", resolved, exc)
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


def _data(r: ReadRecord) -> dict[str, Any]:
    return {
        "normalized": r.normalized,
        "time": r.time,
        "received": r.received.isoformat(),
        "confidence": r.confidence,
        "direction": r.direction,
        "gate_reason": r.gate_reason,
        "event_id": r.event_id,
        "pictures": {k: str(v) if v else None for k, v in r.pictures.items()},
        "payload": dict(r.payload),
    }


def _data_json(r: ReadRecord) -> str:
    """:func:`_data` as JSON; the payload's JSON text is used as it is when the record
    carries it (it was encoded once already, for MQTT)."""
    if not r.payload_json:
        return json.dumps(_data(r), ensure_ascii=False, separators=(",", ":"))
    data = _data(r)
    del data["payload"]
    head = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f'{head[:-1]},"payload":{r.payload_json}}}'


def _record(row: tuple[Any, ...]) -> ReadRecord:
    rid, ts, camera, plate, match, duplicate, retransmitted, gate, data = row
    doc = json.loads(data)
    try:
        received = datetime.fromisoformat(doc["received"])
    except (KeyError, TypeError, ValueError):
        received = datetime.fromtimestamp(ts, UTC)
    return ReadRecord(
        camera=camera,
        plate=plate,
        normalized=doc.get("normalized"),
        received=received,
        time=doc.get("time"),
        confidence=doc.get("confidence"),
        direction=doc.get("direction"),
        match=match,
        duplicate=bool(duplicate),
        retransmitted=bool(retransmitted),
        gate_open=None if gate is None else bool(gate),
        gate_reason=doc.get("gate_reason"),
        event_id=doc.get("event_id"),
        pictures={k: Path(v) if v else None for k, v in (doc.get("pictures") or {}).items()},
        payload=doc.get("payload") or {},
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
