"""Turn a sequence of multipart parts into reads and their pictures (pure, no I/O).

A read is handed on as soon as its XML/JSON part is complete; the pictures that follow
are matched to its ``pictureInfoList`` by file name (``Content-ID``, or the
Content-Disposition ``filename``/``name``), else by order.

Bounded per read: at most ``MAX_PICTURES_PER_READ`` pictures (announced entries past it
are dropped by the decoder; picture parts past it are dropped here, the first with a
:class:`Skipped` reason and the rest as :class:`Dropped`, so one log line per read), and
every kind is one of ``events.PICTURE_KIND_NAMES``, numbered ``_2`` to ``_16`` when a
read has several of one kind: a camera has at most 4 x 16 distinct picture kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from hik2mqtt.errors import DecodeError
from hik2mqtt.events import (
    MAX_PICTURES_PER_READ,
    Heartbeat,
    OtherEvent,
    PictureInfo,
    PlateRead,
    decode,
    picture_kind,
)
from hik2mqtt.multipart import Part

__all__ = [
    "MAX_PICTURES_PER_READ",
    "Dropped",
    "EventArrived",
    "HeartbeatArrived",
    "Output",
    "PictureArrived",
    "ReadArrived",
    "ReadAssembler",
    "Skipped",
    "is_event_part",
    "unique_kinds",
]

_LEADING_BYTE = re.compile(rb"\s*(\S)")  # two disjoint classes: cannot backtrack


@dataclass(frozen=True, slots=True)
class ReadArrived:
    read: PlateRead
    received: datetime
    kinds: tuple[str, ...]  # the published kind of each of read.pictures, unique per read


@dataclass(frozen=True, slots=True)
class PictureArrived:
    read: ReadArrived
    kind: str
    name: str | None
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EventArrived:
    event: OtherEvent


@dataclass(frozen=True, slots=True)
class HeartbeatArrived:
    event: Heartbeat


@dataclass(frozen=True, slots=True)
class Skipped:
    """A part that was not understood; ``reason`` says why (for the log)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Dropped:
    """A part dropped for a reason already given once by a :class:`Skipped` (a picture
    past ``MAX_PICTURES_PER_READ``): count it if you like, don't log it again."""

    reason: str


Output = ReadArrived | PictureArrived | EventArrived | HeartbeatArrived | Skipped | Dropped


def is_event_part(part: Part) -> bool:
    ctype = part.content_type
    if "xml" in ctype or "json" in ctype:
        return True
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return False
    first = _LEADING_BYTE.match(part.body)
    return first is not None and first.group(1) in (b"<", b"{")


def unique_kinds(pictures: tuple[PictureInfo, ...]) -> tuple[str, ...]:
    """The kind of each picture, numbered (``plate``, ``plate_2``...) where a read has
    several of one kind. Linear: each picture takes the next free number of its kind."""
    used: set[str] = set()
    next_number: dict[str, int] = {}
    return tuple(_next_kind(info.kind, used, next_number) for info in pictures)


def _next_kind(base: str, used: set[str], next_number: dict[str, int]) -> str:
    kind = base
    if kind in used:
        number = next_number.get(base, 2)
        while (kind := f"{base}_{number}") in used:
            number += 1
        next_number[base] = number + 1
    used.add(kind)
    return kind


def _same_name(part_name: str, info: PictureInfo) -> bool:
    name = part_name.lower()
    stem = name.rsplit(".", 1)[0]
    candidates = {(info.file_name or "").lower(), (info.type or "").lower()}
    candidates.discard("")
    return name in candidates or stem in {c.rsplit(".", 1)[0] for c in candidates}


class ReadAssembler:
    """Feed parts in stream order; get back what each one means. One per stream."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now().astimezone())
        self._current: ReadArrived | None = None
        self._unmatched: list[int] = []  # indexes into current read's pictures
        self._pictures = 0  # picture parts seen for the current read
        self._used: set[str] = set()  # kinds of the current read, announced or published
        self._next_number: dict[str, int] = {}

    def handle(self, part: Part) -> Output:
        if is_event_part(part):
            return self._event(part)
        return self._picture(part)

    def _event(self, part: Part) -> Output:
        try:
            event = decode(part.body, part.content_type)
        except DecodeError as exc:
            self._current = None  # pictures that follow belong to the bad event
            return Skipped(f"undecodable event part ({len(part.body)} bytes): {exc}")
        if isinstance(event, Heartbeat):
            return HeartbeatArrived(event)
        if isinstance(event, OtherEvent):
            self._current = None
            return EventArrived(event)
        kinds = unique_kinds(event.pictures)
        self._used, self._next_number = set(kinds), {}
        arrived = ReadArrived(read=event, received=self._clock(), kinds=kinds)
        self._current = arrived
        self._unmatched = list(range(len(event.pictures)))
        self._pictures = 0
        return arrived

    def _picture(self, part: Part) -> Output:
        current = self._current
        if current is None:
            shown = repr(part.name[:60]) if part.name else "without a name"
            return Skipped(f"picture {shown} ({len(part.body)} bytes) with no read before it")
        self._pictures += 1
        if self._pictures > MAX_PICTURES_PER_READ:
            reason = f"pictures past {MAX_PICTURES_PER_READ} for one read"
            if self._pictures == MAX_PICTURES_PER_READ + 1:
                return Skipped(f"{reason}: this one ({len(part.body)} bytes) and any more")
            return Dropped(reason)
        name = part.name
        pictures = current.read.pictures
        index = None
        if name:
            index = next((i for i in self._unmatched if _same_name(name, pictures[i])), None)
        if index is None and self._unmatched:
            index = self._unmatched[0]
        if index is not None:
            self._unmatched.remove(index)
            kind = current.kinds[index]
        else:  # more pictures than the read announced: a kind of its own
            kind = _next_kind(picture_kind(name), self._used, self._next_number)
        return PictureArrived(read=current, kind=kind, name=name, data=part.body)
