"""Editing the lists file (``HIK2MQTT_LISTS_FILE``): one validation and one writer for the
page's editor and the MQTT list commands (``<prefix>/lists/<list>/add`` and ``/remove``).

An edit is checked whole, written in one rename (or in place on a bind-mounted file), and
only if the file did not change since it was read (its :func:`version`); what is written
must read back (:func:`hik2mqtt.plates.parse_lists`). Refusals are :class:`ListsRefused`
with an HTTP-like status (400 bad edit, 409 the file changed or can't be read, 500 can't
be written) and a reason meant for the user.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

import yaml

from hik2mqtt.plates import make_entry, normalize, parse_lists

log = logging.getLogger(__name__)

Format = Literal["yaml", "csv"]
MAX_NAME = 64  # a list's name
MAX_PLATE = 32
MAX_TEXT = 200  # an entry's name or notes
MAX_ENTRIES = 20_000  # entries in all lists together
FIELDS = ("plate", "name", "notes", "valid_from", "valid_until")
_LIST_NAME = re.compile(r"[\w .-]+")
# os.replace() onto a file that is itself a mount point (a single-file bind mount,
# ./lists.yaml:/data/lists.yaml) fails with EBUSY; across file systems with EXDEV.
IN_PLACE_ERRORS = frozenset({errno.EBUSY, errno.EXDEV})
# One edit at a time in this process (the page and MQTT commands): the version check and
# the rename are then one step.
_EDIT_LOCK = threading.Lock()


class ListsRefused(Exception):
    """An edit refused: ``status`` (400, 409, 500) and a reason for the user."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def version(text: str) -> str:
    """The file's version as the page and the edits compare it."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fmt_of(path: Path) -> Format:
    return "csv" if path.suffix.lower() == ".csv" else "yaml"


def as_doc(text: str, fmt: Format) -> list[dict[str, Any]]:
    """The lists of a file's text in the editor's shape (``[{name, tolerance, plates}]``);
    ValueError when the text does not read."""
    lists = parse_lists(text, csv_format=fmt == "csv")
    return [
        {
            "name": pl.name,
            "tolerance": pl.tolerance,
            "plates": [
                {
                    "plate": e.plate,
                    "name": e.name,
                    "notes": e.notes,
                    "valid_from": e.valid_from,
                    "valid_until": e.valid_until,
                }
                for e in pl.entries
            ],
        }
        for pl in lists.lists
    ]


def clean_entry(entry: Any, where: str) -> dict[str, str]:
    """One entry as the editor and the MQTT ``add`` send it, checked: a plate (with a letter
    or digit, at most MAX_PLATE characters), optional name and notes (MAX_TEXT), optional
    validity (ISO 8601, :mod:`hik2mqtt.core.validity`); text only, no control characters."""
    if not isinstance(entry, dict) or not isinstance(entry.get("plate"), str):
        raise ListsRefused(400, f"{where}: each entry needs a plate")
    row: dict[str, str] = {}
    for key in FIELDS:
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ListsRefused(400, f"{where}: {key} must be text")
        text = value.strip()
        if not text:
            continue
        limit = MAX_PLATE if key == "plate" else MAX_TEXT
        if len(text) > limit:
            raise ListsRefused(400, f"{where}: {key} is over {limit} characters")
        if any(not ch.isprintable() for ch in text):
            raise ListsRefused(400, f"{where}: {key} holds control characters")
        row[key] = text
    if "plate" not in row:
        raise ListsRefused(400, f"{where}: each entry needs a plate")
    if normalize(row["plate"]) is None:
        raise ListsRefused(400, f"{where}: plate {row['plate']!r} has no letter or digit")
    try:
        make_entry(row["plate"], None, None, row.get("valid_from"), row.get("valid_until"))
    except ValueError as exc:
        raise ListsRefused(400, f"{where}, plate {row['plate']!r}: {exc}") from exc
    return row


def clean_list_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ListsRefused(400, "each list needs a name")
    name = value.strip()
    if not name or len(name) > MAX_NAME or not _LIST_NAME.fullmatch(name):
        raise ListsRefused(400, f"list name {name[:40]!r}: letters, digits, space, . - _ only")
    return name


def serialise(lists: Any, fmt: Format) -> str:
    """The file text for lists in the editor's shape, in the file's own format; every
    list and entry checked (:func:`clean_entry`), refused whole with the first problem."""
    if not isinstance(lists, list):
        raise ListsRefused(400, 'expected {"lists": [{"name", "tolerance", "plates": [...]}]}')
    clean: list[tuple[str, int, list[dict[str, str]]]] = []
    names: set[str] = set()
    count = 0
    for item in lists:
        if not isinstance(item, dict):
            raise ListsRefused(400, "each list needs a name")
        name = clean_list_name(item.get("name"))
        tolerance = item.get("tolerance", 0)
        if not isinstance(tolerance, int) or isinstance(tolerance, bool) or not 0 <= tolerance <= 3:
            raise ListsRefused(400, f"list {name!r}: tolerance must be 0 to 3")
        if name in names:  # plates.py keeps names as written: "Allow" and "allow" are two
            raise ListsRefused(400, f"two lists are named {name!r}: give each list its own name")
        names.add(name)
        if fmt == "csv" and tolerance:
            raise ListsRefused(400, f"list {name!r}: a CSV lists file has no tolerance (use YAML)")
        plates = item.get("plates") or []
        if not isinstance(plates, list):
            raise ListsRefused(400, f"list {name!r}: plates must be a list")
        count += len(plates)
        if count > MAX_ENTRIES:
            raise ListsRefused(400, f"more than {MAX_ENTRIES} entries in all lists")
        entries = [clean_entry(entry, f"list {name!r}") for entry in plates]
        if fmt == "csv" and not entries:
            raise ListsRefused(
                400,
                f"list {name!r} has no plates: a CSV lists file has a row per plate, so it "
                "can't keep an empty list (add a plate, remove the list, or use YAML)",
            )
        clean.append((name, tolerance, entries))
    text = _csv(clean) if fmt == "csv" else _yaml(clean)
    try:
        parse_lists(text, csv_format=fmt == "csv")  # what we write must read back
    except (ValueError, yaml.YAMLError) as exc:
        raise ListsRefused(400, f"these lists would not read back: {exc}") from exc
    return text


def _csv(clean: list[tuple[str, int, list[dict[str, str]]]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    dated = any("valid_from" in r or "valid_until" in r for _, _, rows in clean for r in rows)
    columns = FIELDS if dated else FIELDS[:3]  # the old four columns while no entry is dated
    writer.writerow(["list", *columns])
    for name, _, entries in clean:
        for row in entries:
            writer.writerow([name, *(row.get(key, "") for key in columns)])
    return out.getvalue()


def _yaml(clean: list[tuple[str, int, list[dict[str, str]]]]) -> str:
    body: dict[str, Any] = {}
    for name, tolerance, entries in clean:
        plates: list[Any] = [e if len(e) > 1 else e["plate"] for e in entries]
        body[name] = {"tolerance": tolerance, "plates": plates} if tolerance else plates
    return "# Written by the hik2mqtt page.\n" + yaml.safe_dump(
        {"lists": body}, allow_unicode=True, sort_keys=False
    )


def read_text(path: Path) -> str:
    """The file's text ("" when it does not exist yet); 409 when it can't be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ListsRefused(409, f"the lists file can't be read: {exc}") from exc


def write(path: Path, text: str, expected: str | None) -> None:
    """Replace the file in one rename; 409 when its version is no longer ``expected``
    (None: not checked).

    A file that can't be renamed onto (a single-file bind mount: EBUSY; EXDEV) is
    rewritten in place instead, which a reader may see half done for an instant.
    """
    with _EDIT_LOCK:
        if expected is not None and expected != version(read_text(path)):
            raise ListsRefused(
                409, "the lists file changed since the page read it; reload and retry"
            )
        _replace(path, text)


def _replace(path: Path, text: str) -> None:
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp_name, path.stat().st_mode & 0o777)
        try:
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as exc:
            if exc.errno not in IN_PLACE_ERRORS:
                raise
            log.info(
                "lists: cannot rename onto %s (%s: a bind-mounted file?); writing it in place",
                path,
                exc.strerror,
            )
            _write_in_place(path, text)
    except OSError as exc:
        raise ListsRefused(500, f"cannot write the lists file: {exc.strerror}") from exc
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def _write_in_place(path: Path, text: str) -> None:
    """Overwrite the file's own bytes: the new text first, then cut what is left over."""
    with path.open("r+b") as file:
        file.write(text.encode("utf-8"))
        file.truncate()
        file.flush()
        os.fsync(file.fileno())


Op = Literal["add", "remove"]


def edit(path: Path, list_name: str, op: Op, entry: Any) -> str:
    """One entry added to (or replaced in) ``list_name``, or a plate removed from it, written
    like the page writes; the message says what was done. ListsRefused otherwise.

    ``add`` creates the list when it does not exist; an entry for the same plate
    (normalised) is replaced. ``remove`` takes every entry of that plate from the list (a
    list left empty is dropped from a CSV file, kept empty in YAML)."""
    fmt = fmt_of(path)
    name = clean_list_name(list_name)
    row = clean_entry(entry, f"list {name!r}") if op == "add" else _plate_only(entry, name)
    text = read_text(path)
    try:
        lists = as_doc(text, fmt) if text.strip() else []
    except (ValueError, yaml.YAMLError) as exc:
        raise ListsRefused(409, f"the lists file can't be read: {exc}") from exc
    wanted = normalize(row["plate"])
    target = next((pl for pl in lists if pl["name"] == name), None)
    if op == "add":
        if target is None:
            target = {"name": name, "tolerance": 0, "plates": []}
            lists.append(target)
        kept = [e for e in target["plates"] if normalize(e["plate"]) != wanted]
        message = "replaced" if len(kept) < len(target["plates"]) else "added"
        target["plates"] = [*kept, row]
        message = f"{row['plate']} {message} on list {name!r}"
    else:
        if target is None:
            raise ListsRefused(404, f"no list named {name!r}")
        kept = [e for e in target["plates"] if normalize(e["plate"]) != wanted]
        if len(kept) == len(target["plates"]):
            raise ListsRefused(404, f"{row['plate']} is not on list {name!r}")
        target["plates"] = kept
        if not kept and fmt == "csv":
            lists.remove(target)
        message = f"{row['plate']} removed from list {name!r}"
    write(path, serialise(lists, fmt), version(text))
    return message


def _plate_only(entry: Any, name: str) -> dict[str, str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("plate"), str):
        raise ListsRefused(400, f"list {name!r}: remove needs a plate")
    plate = entry["plate"].strip()
    if not plate or len(plate) > MAX_PLATE or normalize(plate) is None:
        raise ListsRefused(400, f"list {name!r}: plate {plate[:40]!r} is not a plate")
    return {"plate": plate}
