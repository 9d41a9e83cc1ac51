"""Plate lists, forgiving matching and duplicate detection (pure, apart from reading the file).

Normalisation before matching: upper case; spaces, dashes, dots and other separators
removed; Cyrillic and Greek letters that look like Latin ones turned into those; the
placeholders cameras write for "no plate" mean no plate. Tolerance is per list and off
unless the list asks for it: a maximum edit distance, counted after folding the pairs
cameras confuse (0/O, 1/I, 8/B, 5/S, 2/Z).

The lists file is YAML::

    lists:
      allow:
        tolerance: 1          # optional, default 0 (exact)
        plates:
          - plate: AB12 CDE
            name: Alice
            notes: blue van
          - plate: VIS 1T
            name: a visitor
            valid_from: 2026-12-24          # optional, ISO 8601 date or date and time
            valid_until: 2026-12-26T18:00   # optional; no zone: the bridge's local time
          - XY99ZZZ           # a plate alone is fine too
      deny:
        plates: [EVIL 1]

or CSV with a header ``list,plate,name,notes`` and optionally ``valid_from,valid_until``
(tolerance 0 for every list). An entry outside its validity
(:mod:`hik2mqtt.core.validity`) matches nothing; it stays in the file.

Reading the file never raises and never costs more than its bound: at most
:data:`MAX_FILE_SIZE` bytes are read, YAML is read with a safe loader that refuses
aliases (``&a [*a, *a]``, "billion laughs") and nesting deeper than :data:`MAX_DEPTH`,
every value must have the shape shown above, and any problem (also a CSV field over the
csv module's limit, or text that is not UTF-8) is one log line and the old lists stay.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from hik2mqtt.core.validity import ALWAYS, State, Window, window
from hik2mqtt.events import NO_PLATE

log = logging.getLogger(__name__)

MAX_FILE_SIZE = 2 * 1024 * 1024  # bytes of a lists file read at most
MAX_DEPTH = 16  # YAML nesting: the format needs 5

# Cyrillic and Greek capitals that look like Latin letters on a plate.
LOOKALIKES = str.maketrans(
    "АВЕКМНОРСТУХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",  # noqa: RUF001 - look-alikes, on purpose
    "ABEKMHOPCTYXIJSABEZHIKMNOPTYX",
)
# Characters cameras confuse with each other, folded to one of each pair.
CONFUSABLE = str.maketrans("OIBSZQD", "0185200")


def normalize(plate: str | None) -> str | None:
    """The plate as lists compare it, or None for no plate."""
    if plate is None or plate.strip().lower() in NO_PLATE:
        return None
    text = unicodedata.normalize("NFKC", plate).upper().translate(LOOKALIKES)
    kept = "".join(ch for ch in text if ch.isalnum())
    return kept or None


def distance(a: str, b: str, *, limit: int) -> int:
    """Levenshtein distance, or ``limit + 1`` as soon as it is known to pass ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


@dataclass(frozen=True, slots=True)
class Entry:
    plate: str
    name: str | None = None
    notes: str | None = None
    valid_from: str | None = None  # as written (ISO 8601), None: open
    valid_until: str | None = None
    window: Window = field(default=ALWAYS, compare=False, repr=False)

    @property
    def normalized(self) -> str:
        return normalize(self.plate) or ""

    def as_dict(self) -> dict[str, Any]:
        """The entry as the read's ``match`` and the page show it."""
        doc: dict[str, Any] = {"plate": self.plate, "name": self.name, "notes": self.notes}
        if self.valid_from is not None:
            doc["valid_from"] = self.valid_from
        if self.valid_until is not None:
            doc["valid_until"] = self.valid_until
        return doc


def make_entry(
    plate: str,
    name: str | None = None,
    notes: str | None = None,
    valid_from: str | None = None,
    valid_until: str | None = None,
) -> Entry:
    """An entry with its validity read; ValueError when a date is not one."""
    valid_from = valid_from.strip() or None if valid_from else None
    valid_until = valid_until.strip() or None if valid_until else None
    return Entry(plate, name, notes, valid_from, valid_until, window(valid_from, valid_until))


@dataclass(frozen=True, slots=True)
class PlateList:
    name: str
    entries: tuple[Entry, ...]
    tolerance: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    list: str
    entry: Entry
    distance: int
    state: State = "valid"  # a lapsed match (Lists.lookup): expired or not yet valid

    def as_dict(self) -> dict[str, Any]:
        return {"list": self.list, "entry": self.entry.as_dict(), "distance": self.distance}


@dataclass(frozen=True, slots=True)
class Lists:
    lists: tuple[PlateList, ...] = ()

    def match(self, plate: str | None, *, now: float | None = None) -> Match | None:
        """The closest entry in any list (exact first; on a tie, the earlier list) that is
        valid at ``now`` (POSIX seconds; None: validity not checked)."""
        return self.lookup(plate, now=now)[0]

    def lookup(self, plate: str | None, *, now: float | None) -> tuple[Match | None, Match | None]:
        """``(match, lapsed)``: the closest entry valid at ``now``, and the closest one that
        would match but is expired or not yet valid (its ``state`` says which)."""
        wanted = normalize(plate)
        if wanted is None:
            return None, None
        best: Match | None = None
        lapsed: Match | None = None
        for plate_list in self.lists:
            folded = wanted.translate(CONFUSABLE)
            for entry in plate_list.entries:
                candidate = entry.normalized
                if candidate == wanted:
                    found = 0
                elif plate_list.tolerance:
                    found = distance(
                        folded, candidate.translate(CONFUSABLE), limit=plate_list.tolerance
                    )
                    found = max(found, 1)  # not the same text: never as good as exact
                    if found > plate_list.tolerance:
                        continue
                else:
                    continue
                state: State = "valid"
                if now is not None and not entry.window.always:
                    state = entry.window.state(now)
                if state != "valid":
                    if lapsed is None or found < lapsed.distance:
                        lapsed = Match(plate_list.name, entry, found, state)
                    continue
                if best is None or found < best.distance:
                    best = Match(plate_list.name, entry, found)
                if found == 0:
                    break
        return best, lapsed


# libyaml's loader when installed (PyYAML wheels have it): a few times faster.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _load_yaml(text: str) -> Any:
    """``text`` as YAML: safe tags only, no aliases, at most MAX_DEPTH levels deep.

    The events are checked before anything is built, so an alias bomb (``&a [*a, *a]``)
    or ten thousand ``[`` cost no more than reading them, and nothing recurses deeply.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise ValueError(f"aliases (*name) are not allowed, {_where(event)}")
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels, {_where(event)}")
        elif isinstance(event, _CLOSE):
            depth -= 1
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


def _where(event: Any) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}" if mark is not None else "somewhere"


def _text_value(value: Any, what: str) -> str:
    """A plate, name or note as text: a string or a whole number, and valid Unicode."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} holds a character that is not valid Unicode") from exc
    return text


def _opt(value: Any, what: str) -> str | None:
    if value is None:
        return None
    text = _text_value(value, what)
    return text if text.strip() else None


def _parse_csv(text: str) -> Lists:
    grouped: dict[str, list[Entry]] = {}
    reader = csv.DictReader(io.StringIO(text))
    if not {"list", "plate"} <= set(reader.fieldnames or ()):
        raise ValueError("the first line must be a header with list and plate columns")
    for number, row in enumerate(reader, start=2):
        name, plate = (row.get("list") or "").strip(), (row.get("plate") or "").strip()
        if not name or not plate:
            raise ValueError(f"CSV row {number} has no list or no plate")
        where = f"CSV row {number}"
        grouped.setdefault(name, []).append(
            _entry(
                where,
                _text_value(plate, f"{where}: plate"),
                _opt((row.get("name") or "").strip(), f"{where}: name"),
                _opt((row.get("notes") or "").strip(), f"{where}: notes"),
                _opt((row.get("valid_from") or "").strip(), f"{where}: valid_from"),
                _opt((row.get("valid_until") or "").strip(), f"{where}: valid_until"),
            )
        )
    return Lists(tuple(PlateList(n, tuple(e)) for n, e in grouped.items()))


def _entry(  # noqa: PLR0917 - the entry's fields, in the file's order
    where: str,
    plate: str,
    name: str | None,
    notes: str | None,
    valid_from: str | None,
    valid_until: str | None,
) -> Entry:
    try:
        return make_entry(plate, name, notes, valid_from, valid_until)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _when(value: Any, what: str) -> str | None:
    """A validity bound: text, or the date / datetime YAML made of it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return _opt(value, what)


def _parse_entry(item: Any, where: str) -> Entry:
    if isinstance(item, dict):
        if not item.get("plate"):
            raise ValueError(f"{where}: an entry needs a plate")
        return _entry(
            where,
            _text_value(item["plate"], f"{where}: plate"),
            _opt(item.get("name"), f"{where}: name"),
            _opt(item.get("notes"), f"{where}: notes"),
            _when(item.get("valid_from"), f"{where}: valid_from"),
            _when(item.get("valid_until"), f"{where}: valid_until"),
        )
    return Entry(_text_value(item, f"{where}: plate"))


def parse_lists(text: str, *, csv_format: bool) -> Lists:
    """Lists from the text of a YAML or CSV file; ValueError with a reason when invalid."""
    if csv_format:
        try:
            return _parse_csv(text)
        except csv.Error as exc:
            raise ValueError(f"CSV: {exc}") from exc
    try:
        doc = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from exc
    doc = doc or {}
    lists_doc = doc.get("lists") if isinstance(doc, dict) else None
    if not isinstance(lists_doc, dict):
        raise ValueError("the file needs a top-level 'lists:' mapping")
    out = []
    for key, given in lists_doc.items():
        name = _text_value(key, "a list's name")
        body = {"plates": given} if isinstance(given, list) else given
        if not isinstance(body, dict):
            raise ValueError(f"list {name!r}: expected 'plates:' and optional 'tolerance:'")
        tolerance = body.get("tolerance", 0)
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or not 0 <= tolerance <= 3:
            raise ValueError(f"list {name!r}: tolerance must be 0 to 3")
        plates = body.get("plates")
        if plates is None:
            plates = []
        if not isinstance(plates, list):
            raise ValueError(f"list {name!r}: 'plates:' must be a list of plates")
        entries = [
            _parse_entry(item, f"list {name!r}, entry {number}")
            for number, item in enumerate(plates, start=1)
        ]
        out.append(PlateList(name, tuple(entries), tolerance))
    return Lists(tuple(out))


class ListsFile:
    """The lists file, read again when it changes. A bad edit keeps the lists as they were."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lists = Lists()
        self._stamp: tuple[int, int, int] | None = None
        self.reload()

    def reload(self) -> bool:
        """Read the file if it changed; True when new lists took effect. Never raises."""
        if self.path is None:
            return False
        try:
            return self._reload(self.path)
        except Exception:  # a bug here must not stop the thread that checks the file
            log.exception(
                "plate lists %s: unexpected error; keeping the lists as they were", self.path
            )
            return False

    def _reload(self, path: Path) -> bool:
        try:
            stat = path.stat()
        except OSError as exc:
            if self._stamp is not None:
                log.error("plate lists %s: %s; keeping the lists as they were", path, exc)
                self._stamp = None
            return False
        # The inode too: a file replaced by a rename (the page's save, an editor's) may
        # have the old one's size and, within the clock's granularity, its mtime.
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            lists = parse_lists(_read_bounded(path), csv_format=path.suffix.lower() == ".csv")
        except (OSError, ValueError, RecursionError) as exc:
            log.error("plate lists %s: %s; keeping the lists as they were", path, exc)
            return False
        self.lists = lists
        log.info(
            "plate lists %s: %s",
            path,
            ", ".join(f"{pl.name} ({len(pl.entries)})" for pl in lists.lists) or "none",
        )
        return True


def _read_bounded(path: Path) -> str:
    """The file's text: at most MAX_FILE_SIZE bytes of UTF-8, else ValueError."""
    with path.open("rb") as file:
        data = file.read(MAX_FILE_SIZE + 1)
    if len(data) > MAX_FILE_SIZE:
        raise ValueError(f"larger than {MAX_FILE_SIZE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"line {line} is not UTF-8 text") from exc


@dataclass
class Duplicates:
    """The same normalised plate on the same camera within ``window`` seconds."""

    window: float
    clock: Any = time.monotonic
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _next_prune: float = 0.0

    def check(self, camera: str, plate: str | None) -> bool:
        """Record a read; True when it repeats one within the window."""
        if plate is None or self.window <= 0:
            return False
        now = self.clock()
        if now >= self._next_prune:  # forget old ones once a window: bounded memory
            self._seen = {k: t for k, t in self._seen.items() if now - t <= self.window}
            self._next_prune = now + self.window
        key = (camera, plate)
        last = self._seen.get(key)
        if last is not None and now - last <= self.window:
            return True  # the window runs from the read that fired, not from this one
        self._seen[key] = now
        return False
