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
          - XY99ZZZ           # a plate alone is fine too
      deny:
        plates: [EVIL 1]

or CSV with a header ``list,plate,name,notes`` (tolerance 0 for every list).
"""

from __future__ import annotations

import csv
import io
import logging
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hik2mqtt.events import NO_PLATE

log = logging.getLogger(__name__)

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

    @property
    def normalized(self) -> str:
        return normalize(self.plate) or ""


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "list": self.list,
            "entry": {
                "plate": self.entry.plate,
                "name": self.entry.name,
                "notes": self.entry.notes,
            },
            "distance": self.distance,
        }


@dataclass(frozen=True, slots=True)
class Lists:
    lists: tuple[PlateList, ...] = ()

    def match(self, plate: str | None) -> Match | None:
        """The closest entry in any list (exact first; on a tie, the earlier list)."""
        wanted = normalize(plate)
        if wanted is None:
            return None
        best: Match | None = None
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
                if best is None or found < best.distance:
                    best = Match(plate_list.name, entry, found)
                if found == 0:
                    break
        return best


def parse_lists(text: str, *, csv_format: bool) -> Lists:
    """Lists from the text of a YAML or CSV file; ValueError with a reason when invalid."""
    if csv_format:
        grouped: dict[str, list[Entry]] = {}
        for row in csv.DictReader(io.StringIO(text)):
            name, plate = (row.get("list") or "").strip(), (row.get("plate") or "").strip()
            if not name or not plate:
                raise ValueError(f"CSV row without list or plate: {row}")
            grouped.setdefault(name, []).append(
                Entry(
                    plate,
                    (row.get("name") or "").strip() or None,
                    (row.get("notes") or "").strip() or None,
                )
            )
        return Lists(tuple(PlateList(n, tuple(e)) for n, e in grouped.items()))
    doc = yaml.safe_load(text) or {}
    lists_doc = doc.get("lists") if isinstance(doc, dict) else None
    if not isinstance(lists_doc, dict):
        raise ValueError("the file needs a top-level 'lists:' mapping")
    out = []
    for name, given in lists_doc.items():
        body = {"plates": given} if isinstance(given, list) else given
        if not isinstance(body, dict):
            raise ValueError(f"list {name!r}: expected 'plates:' and optional 'tolerance:'")
        tolerance = body.get("tolerance", 0)
        if not isinstance(tolerance, int) or not 0 <= tolerance <= 3:
            raise ValueError(f"list {name!r}: tolerance must be 0 to 3")
        entries = []
        for item in body.get("plates") or []:
            if isinstance(item, str | int):
                entries.append(Entry(str(item)))
            elif isinstance(item, dict) and item.get("plate"):
                entries.append(
                    Entry(str(item["plate"]), _opt(item.get("name")), _opt(item.get("notes")))
                )
            else:
                raise ValueError(f"list {name!r}: an entry needs a plate: {item!r}")
        out.append(PlateList(str(name), tuple(entries), tolerance))
    return Lists(tuple(out))


def _opt(value: Any) -> str | None:
    return str(value) if value is not None and str(value).strip() else None


class ListsFile:
    """The lists file, read again when it changes. A bad edit keeps the lists as they were."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lists = Lists()
        self._stamp: tuple[float, int] | None = None
        self.reload()

    def reload(self) -> bool:
        """Read the file if it changed; True when new lists took effect."""
        if self.path is None:
            return False
        try:
            stat = self.path.stat()
        except OSError as exc:
            if self._stamp is not None:
                log.error("plate lists %s: %s; keeping the lists as they were", self.path, exc)
                self._stamp = None
            return False
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            text = self.path.read_text(encoding="utf-8")
            lists = parse_lists(text, csv_format=self.path.suffix.lower() == ".csv")
        except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
            log.error("plate lists %s: %s; keeping the lists as they were", self.path, exc)
            return False
        self.lists = lists
        log.info(
            "plate lists %s: %s",
            self.path,
            ", ".join(f"{pl.name} ({len(pl.entries)})" for pl in lists.lists) or "none",
        )
        return True


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
