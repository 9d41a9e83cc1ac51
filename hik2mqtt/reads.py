"""Turn a sequence of multipart parts into reads and their pictures (pure, no I/O).

A read is handed on as soon as its XML/JSON part is complete; the pictures that follow
are matched to its ``pictureInfoList`` by file name (``Content-ID``, or the
Content-Disposition ``filename``/``name``), else by order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from hik2mqtt.errors import DecodeError
from hik2mqtt.events import Heartbeat, OtherEvent, PictureInfo, PlateRead, decode, picture_kind
from hik2mqtt.multipart import Part


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


Output = ReadArrived | PictureArrived | EventArrived | HeartbeatArrived | Skipped


def is_event_part(part: Part) -> bool:
    ctype = part.content_type
    if "xml" in ctype or "json" in ctype:
        return True
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return False
    return part.body.lstrip()[:1] in (b"<", b"{")


def unique_kinds(pictures: tuple[PictureInfo, ...]) -> tuple[str, ...]:
    kinds: list[str] = []
    for info in pictures:
        kind, n = info.kind, 2
        while kind in kinds:
            kind, n = f"{info.kind}_{n}", n + 1
        kinds.append(kind)
    return tuple(kinds)


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
        arrived = ReadArrived(
            read=event, received=self._clock(), kinds=unique_kinds(event.pictures)
        )
        self._current = arrived
        self._unmatched = list(range(len(event.pictures)))
        return arrived

    def _picture(self, part: Part) -> Output:
        current = self._current
        if current is None:
            return Skipped(f"picture {part.name!r} ({len(part.body)} bytes) with no read before it")
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
        else:  # more pictures than the read announced
            kind = picture_kind(name)
            if kind in current.kinds:
                return Skipped(f"picture {name!r}: a second {kind} picture for one read")
        return PictureArrived(read=current, kind=kind, name=name, data=part.body)
