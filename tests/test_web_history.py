"""The history behind the page: SQLite and in-memory, search, paging, retention, erasure, CSV."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hik2mqtt.events import PlateRead, Vehicle
from hik2mqtt.images import picture_path
from hik2mqtt.web import history as history_module
from hik2mqtt.web.demo import record
from hik2mqtt.web.history import DB_NAME, MEMORY_READS, Erased, History, Query, fold
from tests.conftest import wait_until


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    store = History(tmp_path / "history", images_dir=tmp_path / "images")
    store.start()
    yield store
    store.close()


def plates(store: History, **query: object) -> list[str]:
    return [r.plate or "" for r in store.search(Query(**query)).records]  # type: ignore[arg-type]


def test_reads_survive_a_restart(tmp_path: Path) -> None:
    """With a folder, reads are in SQLite and still there after the history is reopened,
    and ids keep growing."""
    first = History(tmp_path)
    first.start()
    kept = first.add(record("gate", "AB12CDE", match="allow", gate=(True, "on list")))
    first.close()
    second = History(tmp_path)
    second.start()
    try:
        found = second.search(Query()).records
        assert [(r.id, r.plate, r.match, r.gate_open) for r in found] == [
            (kept.id, "AB12CDE", "allow", True)
        ]
        assert second.add(record("gate", "XY99ZZZ")).id == kept.id + 1
    finally:
        second.close()


def test_memory_keeps_the_last_thousand() -> None:
    """Without a folder, the last 1,000 reads are kept in memory, the oldest go."""
    store = History(None)
    store.start()
    try:
        for n in range(MEMORY_READS + 50):
            store.add(record("gate", f"P{n:05d}"))
        assert store.flush()
        assert store.count() == MEMORY_READS
        assert plates(store, limit=1) == [f"P{MEMORY_READS + 49:05d}"]
        assert plates(store, plate="P00049") == []
        assert plates(store, plate="P00050") == ["P00050"]
    finally:
        store.close()


def test_retention_deletes_old_reads(tmp_path: Path) -> None:
    """Reads older than KEEP_DAYS (by the history's clock) are deleted; newer ones stay."""
    now = datetime.now().astimezone()
    clock = [now.timestamp()]
    store = History(tmp_path, keep_days=30, clock=lambda: clock[0])
    store.start()
    try:
        store.add(record("gate", "OLDER", received=now - timedelta(days=29)))
        store.add(record("gate", "NEWER", received=now - timedelta(days=28)))
        assert store.flush()
        assert store.prune() == 0
        clock[0] += 1.5 * 86400
        assert store.prune() == 1
        assert plates(store) == ["NEWER"]
    finally:
        store.close()


def test_plate_search_folds_lookalikes_and_tolerates_misreads(history: History) -> None:
    """A search compares plates as lists do: separators, case, Cyrillic look-alikes and
    0/O-style confusions don't matter; tolerance 1 also finds one character off."""
    for plate in ("AB12 CDE", "АВ12СDЕ", "A812CDE", "AB12CDF", "AB12CD", "ZZ99ZZZ"):  # Cyrillic 2nd
        history.add(record("gate", plate))
    assert history.flush()
    exact = plates(history, plate="ab-12-cde")
    assert sorted(exact) == sorted(["AB12 CDE", "АВ12СDЕ", "A812CDE"])
    near = plates(history, plate="AB12CDE", tolerance=1)
    assert sorted(near) == sorted(["AB12 CDE", "АВ12СDЕ", "A812CDE", "AB12CDF", "AB12CD"])
    assert "ZZ99ZZZ" not in plates(history, plate="AB12CDE", tolerance=2)


def test_tolerance_finds_edits_anywhere(history: History) -> None:
    """The pre-filter never hides a true match: every single edit at every position of a
    plate is found with tolerance 1, and two edits with tolerance 2."""
    base = "KX71PQR"
    variants = set()
    for i in range(len(base) + 1):
        variants.add(base[:i] + "W" + base[i:])  # insertion
        if i < len(base):
            variants.add(base[:i] + base[i + 1 :])  # deletion
            variants.add(base[:i] + "W" + base[i + 1 :])  # substitution
    variants.add("WX71PQW")  # two edits, both ends
    for plate in variants:
        history.add(record("gate", plate))
    assert history.flush()
    one = set(plates(history, plate=base, tolerance=1, limit=200))
    assert one == variants - {"WX71PQW"}
    two = set(plates(history, plate=base, tolerance=2, limit=200))
    assert two == variants


def test_filters_combine(history: History) -> None:
    """Camera, time range, list, flags and gate filters each narrow the result."""
    now = datetime.now().astimezone()
    history.add(record("front", "AAA1", match="allow", gate=(True, "on list")))
    history.add(record("back", "BBB2", duplicate=True, gate=(False, "duplicate")))
    history.add(record("back", "CCC3", retransmitted=True, received=now - timedelta(hours=2)))
    assert history.flush()
    assert plates(history, camera="back") == ["CCC3", "BBB2"]
    assert plates(history, list="allow") == ["AAA1"]
    assert plates(history, list="") == ["CCC3", "BBB2"]
    assert plates(history, duplicate=True) == ["BBB2"]
    assert plates(history, retransmitted=False) == ["BBB2", "AAA1"]
    assert plates(history, gate=True) == ["AAA1"]
    assert plates(history, gate=False) == ["BBB2"]
    assert plates(history, since=now - timedelta(hours=1)) == ["BBB2", "AAA1"]
    assert plates(history, until=now - timedelta(hours=1)) == ["CCC3"]


def test_paging_with_a_cursor_sees_every_read_once(history: History) -> None:
    """Pages follow each other by cursor, newest first, without gaps or repeats, even when
    reads arrive between two pages."""
    for n in range(23):
        history.add(record("gate", f"PG{n:03d}"))
    assert history.flush()
    seen: list[str] = []
    cursor = None
    while True:
        page = history.search(Query(limit=10, cursor=cursor))
        seen += [r.plate or "" for r in page.records]
        if len(seen) == 10:
            history.add(record("gate", "LATE"))
            assert history.flush()
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"PG{n:03d}" for n in reversed(range(23))]


def test_erase_removes_rows_and_picture_files(tmp_path: Path, history: History) -> None:
    """Erasing a plate deletes its reads (any spelling the search would match) and their
    pictures, and nothing else; a picture path outside the picture folder is left alone."""
    images = tmp_path / "images"
    images.mkdir()
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"keep")
    files = []
    for n, plate in enumerate(("AB12CDE", "ab 12 cde", "XY99ZZZ")):
        file = images / f"{n}.jpg"
        file.write_bytes(b"jpeg")
        files.append(file)
        history.add(record("gate", plate, pictures={"plate": file, "vehicle": outside}))
    erased = history.erase("AB-12-CDE")
    assert (erased.reads, erased.pictures) == (2, 2)
    assert plates(history) == ["XY99ZZZ"]
    assert [f.exists() for f in files] == [False, False, True]
    assert outside.exists()


def old_picture(images: Path, plate: str, kind: str = "plate", camera: str = "gate") -> Path:
    """A picture file as the bridge names it (images.picture_path), from long ago."""
    when = datetime(2020, 1, 2, 3, 4, 5, 678_000)
    read = PlateRead(
        plate=plate,
        raw_plate=plate,
        time=None,
        confidence=90,
        direction=None,
        country=None,
        channel=None,
        lane=None,
        event_id=None,
        vehicle=Vehicle(),
        list_name=None,
        retransmitted=False,
        plate_color=None,
        pictures=(),
    )
    path = picture_path(images, camera=camera, read=read, kind=kind, received=when)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpeg")
    return path


def test_erase_removes_the_plates_picture_files_the_history_no_longer_names(
    tmp_path: Path, history: History
) -> None:
    """Erasing a plate also deletes picture files of that plate (by their names, compared
    as the history compares) that no read in the history names any more; other plates'
    pictures stay, even ones whose names look alike; each file is counted once."""
    images = tmp_path / "images"
    gone = [
        old_picture(images, "AB 12 CDE"),
        old_picture(images, "AB-12-CDE", "vehicle_2", camera="back"),
        old_picture(images, "A8I2CDE", "scene"),  # 8/B and I/1 fold, as searches do
        old_picture(images, "LONG" * 10),  # the name keeps the first 32 characters
    ]
    kept = [
        old_picture(images, "AB12CDF"),
        old_picture(images, "AB12CDEX"),
        old_picture(images, "XAB12CDE"),
        old_picture(images, "AB12_CDE_plate", "vehicle"),
        old_picture(images, "AB12", "plate_CDE"),  # not a kind: not a picture's name
        old_picture(images, "LONG" * 7 + "XXXX"),  # as long as a cut name, another plate
    ]
    stray = images / "AB12CDE.jpg"  # not a name the bridge gives
    stray.write_bytes(b"jpeg")
    named = old_picture(images, "AB12CDE", "vehicle", camera="side")
    history.add(record("gate", "AB12CDE", pictures={"vehicle": named}))
    history.add(record("gate", "LONG" * 10))

    erased = history.erase("ab12cde")
    assert (erased.reads, erased.pictures) == (1, 4)
    assert [f.exists() for f in gone[:3]] == [False] * 3
    assert not named.exists()
    assert all(f.exists() for f in [*kept, stray, gone[3]])
    assert history.erase("LONG" * 10) == Erased(1, 1, {"gate": ("plate", "vehicle")})
    assert not gone[3].exists()
    assert all(f.exists() for f in kept)


def test_erasing_picture_files_never_follows_a_symlink(tmp_path: Path, history: History) -> None:
    """The scan of the picture folder deletes the plate's files inside it but never enters
    a linked folder nor deletes through (or follows) a linked file that points outside."""
    images = tmp_path / "images"
    inside = old_picture(images, "AB12CDE")
    outside = old_picture(tmp_path / "elsewhere", "AB12CDE")
    (images / "linked").symlink_to(outside.parent.parent, target_is_directory=True)
    link = inside.with_name(inside.name.replace("plate", "vehicle"))
    link.symlink_to(outside)
    assert history.erase("AB12CDE").pictures == 1
    assert not inside.exists()
    assert outside.read_bytes() == b"jpeg"
    assert link.is_symlink()


def test_erase_says_which_cameras_last_read_it_took(tmp_path: Path) -> None:
    """Erased.latest names the cameras whose last read was the erased plate's, with that
    read's picture kinds: in memory, and from the database after a restart."""
    for folder in (tmp_path / "history", None):
        store = History(folder)
        store.start()
        store.add(record("gate", "OLD1"))
        store.add(record("gate", "AB12CDE", pictures={"plate": None}))
        store.add(record("back", "AB12CDE"))
        store.add(record("back", "NEW1"))
        store.add(record("side", "OLD1"))
        if folder is not None:
            store.close()
            store = History(folder)
            store.start()
        try:
            erased = store.erase("AB12CDE")
            assert (erased.reads, erased.latest) == (2, {"gate": ("plate",)})
            # gate's last read is gone, but was the erased one: OLD1 is not gate's last
            assert store.erase("OLD1").latest == {"side": ("plate", "vehicle")}
        finally:
            store.close()


def test_erase_leaves_no_trace_of_the_plate_in_the_database_files(tmp_path: Path) -> None:
    """After an erasure the plate's bytes (as read, and as folded for searches) are nowhere
    in the SQLite file or its write-ahead log, while the bridge keeps running."""
    folder = tmp_path / "history"
    store = History(folder)
    store.start()
    try:
        for n in range(3000):
            store.add(record("gate", "ERAS3ME" if n % 10 == 3 else f"KEEP{n:04d}"))
        assert store.flush()
        files = [folder / DB_NAME, folder / f"{DB_NAME}-wal"]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        assert raw.count(b"ERAS3ME") >= 300
        assert store.erase("eras3me").reads == 300
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        assert b"KEEP2999" in raw  # the other reads are there to be read
        assert b"ERAS3ME" not in raw
        assert b"ERA53ME" not in raw  # the folded plate (the index)
        assert store.count() == 2700
    finally:
        store.close()


def test_picture_file_stays_inside_the_folder(tmp_path: Path, history: History) -> None:
    """A stored picture path that resolves outside the picture folder (.., a symlink) is
    never served."""
    images = tmp_path / "images"
    images.mkdir()
    inside = images / "in.jpg"
    inside.write_bytes(b"jpeg")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"secret")
    (images / "link.jpg").symlink_to(secret)
    read = history.add(
        record(
            "gate",
            "AB1",
            pictures={"plate": inside, "a": images / ".." / "secret.jpg", "b": images / "link.jpg"},
        )
    )
    assert history.picture_file(read, "plate") == inside.resolve()
    assert history.picture_file(read, "a") is None
    assert history.picture_file(read, "b") is None


def test_csv_export_streams_every_page_and_defuses_formulas(history: History) -> None:
    """The CSV has a header and every matching read, across pages, and camera text that
    starts like a formula is prefixed so a spreadsheet shows it as text."""
    for n in range(450):
        history.add(record("gate", f"C{n:04d}"))
    history.add(record("gate", "=HYPERLINK(1)"))
    assert history.flush()
    chunks = list(history.csv_rows(Query()))
    assert len(chunks) > 2  # streamed a page at a time
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == 451
    assert rows[0]["plate"] == "'=HYPERLINK(1)"
    assert rows[-1]["plate"] == "C0000"


def test_add_never_waits_for_the_writer(tmp_path: Path) -> None:
    """With the database locked by someone else, add() still returns at once; past the
    queue's size the oldest waiting reads are dropped and counted."""
    store = History(tmp_path, queue_size=5)
    store.start()
    try:
        store._db_lock.acquire()  # the writer now blocks on its next batch
        try:
            for n in range(20):
                store.add(record("gate", f"Q{n}"))
        finally:
            store._db_lock.release()
        assert store.flush()
        assert store.dropped >= 1
        assert plates(store, plate="Q19") == ["Q19"]
    finally:
        store.close()


def test_the_writer_waits_for_a_pause_in_the_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads arriving one after another are written together once they pause (QUIET), not
    while they keep coming, and a steady stream at the latest MAX_WAIT after its first
    read. Until written, a read is still found by its id."""
    monkeypatch.setattr(history_module, "QUIET", 1.5)
    monkeypatch.setattr(history_module, "MAX_WAIT", 60.0)
    store = History(tmp_path)
    store.start()
    try:
        ids = []
        for n in range(30):  # a read every 50 ms for 1.5 s: never a 1.5 s pause
            ids.append(store.add(record("gate", f"B{n}")).id)
            assert store.count() == 0
            assert store.get(ids[-1]) is not None
            time.sleep(0.05)  # pacing the reads, not waiting for a result
        wait_until(lambda: store.count() == 30)

        monkeypatch.setattr(history_module, "QUIET", 60.0)
        monkeypatch.setattr(history_module, "MAX_WAIT", 1.0)
        for n in range(3):
            store.add(record("gate", f"S{n}"))
            time.sleep(0.05)
        wait_until(lambda: store.count() == 33, timeout=15)  # MAX_WAIT, not QUIET (60 s)
    finally:
        store.close()


def test_fold_matches_the_lists() -> None:
    """fold() is the lists' normalisation with confusable pairs folded."""
    assert fold("ab-12 cde") == fold("AB12CDE") == fold("A812CDE")
    assert fold("unknown") is None


def test_record_from_the_published_payload() -> None:
    """ReadRecord.from_payload takes what the bridge publishes (plate_payload plus its
    extras) and the gate decision, and keeps picture files per kind."""
    import json

    from hik2mqtt.events import PlateRead, decode
    from hik2mqtt.payloads import plate_payload
    from hik2mqtt.simulator import make_read
    from hik2mqtt.web.backend import ReadRecord

    read = decode(make_read("AB12CDE", confidence=91).xml)
    assert isinstance(read, PlateRead)
    received = datetime.now().astimezone()
    payload = json.loads(
        plate_payload(
            camera="gate",
            read=read,
            source="stream",
            received=received,
            images={"plate": {"topic": "t", "file": "/pics/p.jpg"}, "vehicle": {"file": None}},
            retransmitted=False,
            extra={"normalized": "AB12CDE", "match": {"list": "allow"}, "duplicate": True},
        )
    )
    rec = ReadRecord.from_payload(payload, received=received, gate_open=False, gate_reason="dup")
    assert (rec.camera, rec.plate, rec.normalized, rec.confidence) == (
        "gate",
        "AB12CDE",
        "AB12CDE",
        91,
    )
    assert (rec.match, rec.duplicate, rec.retransmitted) == ("allow", True, False)
    assert (rec.gate_open, rec.gate_reason, rec.event_id) == (False, "dup", read.event_id)
    assert rec.pictures == {"plate": Path("/pics/p.jpg"), "vehicle": None}
    assert rec.payload == payload


OLD_SCHEMA = """
CREATE TABLE reads (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, camera TEXT NOT NULL, plate TEXT, folded TEXT,
    list TEXT, duplicate INTEGER NOT NULL, retransmitted INTEGER NOT NULL, gate INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX reads_folded ON reads (folded, id);
"""


def test_a_history_from_0_2_0_is_moved_to_this_layout(tmp_path: Path) -> None:
    """0.2.0 wrapped the published JSON in a document of its own; opening such a file
    moves each read to today's columns once, and it is found as before (gate reason and
    picture included); a row that is not JSON costs only itself."""
    import json
    import sqlite3

    folder = tmp_path / "history"
    folder.mkdir()
    received = datetime.now().astimezone()
    received_text = received.isoformat(timespec="milliseconds")
    published = {
        "camera": "gate",
        "plate": "AB12CDE",
        "normalized": "AB12CDE",
        "received": received_text,
        "confidence": 93,
        "match": {"list": "allow"},
        "images": {"plate": {"topic": "t", "file": "/pics/p.jpg"}},
    }
    old_doc = {
        "normalized": "AB12CDE",
        "received": received.isoformat(),
        "gate_reason": "on list",
        "pictures": {"plate": "/pics/p.jpg"},
        "payload": published,
    }
    db = sqlite3.connect(folder / "history.sqlite3")
    db.executescript(OLD_SCHEMA)
    rows = [
        (7, received.timestamp(), "gate", "AB12CDE", fold("AB12CDE"), "allow", 0, 0, 1),
        (8, received.timestamp(), "gate", "BROKEN", fold("BROKEN"), None, 0, 0, None),
    ]
    db.execute("INSERT INTO reads VALUES (?,?,?,?,?,?,?,?,?,?)", (*rows[0], json.dumps(old_doc)))
    db.execute("INSERT INTO reads VALUES (?,?,?,?,?,?,?,?,?,?)", (*rows[1], "not json"))
    db.commit()
    db.close()

    store = History(folder)
    store.start()
    try:
        (found,) = store.search(Query(plate="ab12 cde")).records
        assert (found.id, found.camera, found.confidence, found.match) == (7, "gate", 93, "allow")
        assert (found.gate_open, found.gate_reason) == (True, "on list")
        assert found.pictures == {"plate": Path("/pics/p.jpg")}
        assert found.received == datetime.fromisoformat(received_text)
        (broken,) = store.search(Query(plate="BROKEN")).records
        assert broken.id == 8
        assert broken.received.timestamp() == pytest.approx(received.timestamp())
        assert store.add(record("gate", "NEW1")).id == 9
    finally:
        store.close()
    again = History(folder)  # opened again: nothing left to move
    try:
        assert [r.id for r in again.search(Query()).records] == [9, 8, 7]
    finally:
        again.close()


def test_a_published_read_is_stored_as_sent(tmp_path: Path) -> None:
    """add_published() keeps the JSON text as the bridge sent it; the record made from it
    when asked for has the read's fields and the gate decision."""
    import json
    import sqlite3

    store = History(tmp_path)
    store.start()
    doc = {
        "camera": "gate",
        "plate": "XY99ZZZ",
        "received": datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "duplicate": True,
        "direction": "reverse",
    }
    text = json.dumps(doc, indent=1).encode()  # whatever its spacing: stored as it is
    try:
        read_id = store.add_published(doc, text, False, "duplicate")
        live = store.get(read_id)  # before it is written
        assert live is not None
        assert (live.plate, live.duplicate, live.direction) == ("XY99ZZZ", True, "reverse")
        assert (live.gate_open, live.gate_reason) == (False, "duplicate")
        assert store.flush()
        assert store.search(Query(duplicate=True)).records == [live]
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "history.sqlite3")
    try:
        assert db.execute("SELECT data FROM reads").fetchone()[0].encode() == text
    finally:
        db.close()


def test_a_failing_writer_is_restarted_and_loses_no_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk fills up (SQLite's own "database or disk is full", made real by capping the
    file's pages): the writer fails, is restarted after its backoff while the reads wait,
    the history's problem says so (for health), and once there is room again every read,
    those queued while it failed included, is stored, once."""
    store = History(tmp_path / "history", backoff=lambda attempt: 0.05)
    store.start()
    try:
        store.add(record("gate", "FIRST1"))
        assert store.flush()
        assert store.problem is None
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # full: no page more
        for n in range(300):
            store.add(record("gate", f"FULL{n:03d}"))
        wait_until(lambda: store.restarts >= 2)
        problem = store.problem
        assert problem is not None
        assert "database or disk is full" in problem
        assert "restarting" in problem
        assert store.alive
        assert not store.flush(timeout=0.2)  # nothing is written while the disk is full
        assert "history-writer failed unexpectedly" in caplog.text
        store._db.execute("PRAGMA max_page_count = 1073741823")  # room again
        assert store.flush(timeout=10)
        assert store.problem is None
        assert store.count() == 301
        assert store.dropped == 0
        assert store.refused == 0
        assert [r.plate for r in store.search(Query(plate="FULL299")).records] == ["FULL299"]
    finally:
        store.close()


def test_reads_queued_at_the_stop_of_a_failing_writer_get_one_last_try(tmp_path: Path) -> None:
    """Closed while the writer waits to retry: the reads still waiting are written once
    more on the way out (a disk that healed meanwhile keeps them)."""
    store = History(tmp_path / "history", backoff=lambda attempt: 3600.0)
    store.start()
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    for n in range(300):
        store.add(record("gate", f"LAST{n:03d}"))
    wait_until(lambda: store.restarts >= 1)
    store._db.execute("PRAGMA max_page_count = 1073741823")
    store.close()
    reopened = History(tmp_path / "history")
    try:
        assert reopened.count() == 300
    finally:
        reopened.close()


def test_a_read_that_cannot_be_stored_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read the database refuses (text SQLite can't encode: a lone surrogate) is left
    out and counted; the reads written with it in one batch are stored, a received time
    no timestamp can hold is stored as now, and the writer needs no restart."""
    store = History(tmp_path / "history", backoff=lambda attempt: 0.05)
    store.start()
    try:
        store.add_published({"camera": "gate", "plate": "GOOD1"})
        store.add_published({"camera": "gate", "plate": "AB\ud800"})
        store.add_published({"camera": "gate", "plate": "GOOD2", "received": "0001-01-01T00:00"})
        assert store.flush()
        assert sorted(r.plate or "" for r in store.search(Query()).records) == ["GOOD1", "GOOD2"]
        assert store.refused == 1
        assert "read 2 refused" in caplog.text
        store.prune()  # the odd received time in memory is no trouble either
        assert store.restarts == 0
        assert store.problem is None
    finally:
        store.close()
