"""What the web page needs from the bridge, and what it is given about each read.

The page is one more consumer of the pipeline's effects: the bridge hands it a
:class:`ReadRecord` for each read it publishes, and implements :class:`WebBackend`
for the page's questions and buttons. Nothing in ``hik2mqtt.web`` imports the bridge.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from hik2mqtt.core.wire import CommandKind

ListsFormat = Literal["yaml", "csv"]


@dataclass(frozen=True, slots=True)
class CameraView:
    """One camera as the page shows it."""

    name: str  # the topic level, used in URLs
    display_name: str
    online: bool
    mode: str  # stream | push | poll
    status: str = ""  # a short human text ("online", "login refused", ...)
    outputs: tuple[int, ...] = ()  # relay outputs the page may pulse
    barrier: bool = False  # the camera opens a barrier with barrierGate
    gate: bool = False  # the gate rule is on for this camera

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "online": self.online,
            "mode": self.mode,
            "status": self.status,
            "outputs": list(self.outputs),
            "barrier": self.barrier,
            "gate": self.gate,
        }


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What became of a command from the page: accepted (queued for the camera) or refused."""

    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """One read as the page and the history show it (made from the read's published JSON
    when asked for: the bridge hands the history that JSON, never a record)."""

    camera: str
    plate: str | None
    normalized: str | None
    received: datetime  # the bridge's clock, timezone-aware
    time: str | None = None  # the camera's time, as it sent it
    confidence: int | None = None
    direction: str | None = None
    match: str | None = None  # the name of the list the plate is on
    duplicate: bool = False
    retransmitted: bool = False
    gate_open: bool | None = None  # None: no gate rule on this camera
    gate_reason: str | None = None
    event_id: str | None = None
    pictures: Mapping[str, Path | None] = field(default_factory=dict)  # kind -> file
    payload: Mapping[str, Any] = field(default_factory=dict)  # the published JSON
    id: int = 0  # given by the history when it is added

    def with_id(self, new_id: int) -> ReadRecord:
        return replace(self, id=new_id)

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        *,
        received: datetime,
        gate_open: bool | None = None,
        gate_reason: str | None = None,
        id: int = 0,
    ) -> ReadRecord:
        """A record from the JSON published on ``<prefix>/<camera>/plate`` (as a dict)."""
        camera, plate, match, duplicate, retransmitted = search_fields(payload)
        images = payload.get("images")
        pictures: dict[str, Path | None] = {}
        if isinstance(images, Mapping):
            for kind, file in picture_files(images).items():
                pictures[kind] = Path(file) if file else None
        confidence = payload.get("confidence")
        return cls(
            camera=camera,
            plate=plate,
            normalized=_text(payload.get("normalized")),
            received=received,
            time=_text(payload.get("time")),
            confidence=confidence if isinstance(confidence, int) else None,
            direction=_text(payload.get("direction")),
            match=match,
            duplicate=duplicate,
            retransmitted=retransmitted,
            gate_open=gate_open,
            gate_reason=gate_reason,
            event_id=_text(payload.get("event_id")),
            pictures=pictures,
            payload=payload,
            id=id,
        )

    def as_payload(self) -> dict[str, Any]:
        """The record as the JSON the bridge publishes for a read (``payload`` with this
        record's fields over it): what the history stores, and ``from_payload`` reads back."""
        return {
            **self.payload,
            "camera": self.camera,
            "plate": self.plate,
            "normalized": self.normalized,
            "time": self.time,
            "received": self.received.isoformat(),
            "confidence": self.confidence,
            "direction": self.direction,
            "match": None if self.match is None else {"list": self.match},
            "duplicate": self.duplicate,
            "retransmitted": self.retransmitted,
            "event_id": self.event_id,
            "images": {k: {"file": str(v) if v else None} for k, v in self.pictures.items()},
        }

    def as_dict(self) -> dict[str, Any]:
        """The JSON the API and the live feed send (picture URLs, never file paths)."""
        return {
            "id": self.id,
            "camera": self.camera,
            "plate": self.plate,
            "normalized": self.normalized,
            "time": self.time,
            "received": self.received.isoformat(timespec="milliseconds"),
            "confidence": self.confidence,
            "direction": self.direction,
            "match": self.match,
            "duplicate": self.duplicate,
            "retransmitted": self.retransmitted,
            "gate": None
            if self.gate_open is None
            else {"open": self.gate_open, "reason": self.gate_reason},
            "event_id": self.event_id,
            "pictures": {
                kind: f"/api/reads/{self.id}/pictures/{kind}" for kind in sorted(self.pictures)
            },
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def search_fields(payload: Mapping[str, Any]) -> tuple[str, str | None, str | None, bool, bool]:
    """What the history searches by, from a read's published JSON: camera, plate, the
    name of the list it matched, duplicate, retransmitted."""
    match = payload.get("match")
    return (
        str(payload.get("camera", "")),
        _text(payload.get("plate")),
        _text(match.get("list")) if isinstance(match, Mapping) else None,
        payload.get("duplicate") is True,
        payload.get("retransmitted") is True,
    )


def picture_files(images: Mapping[str, Any]) -> dict[str, str | None]:
    """Kind -> picture file (or None) from a read's published ``images``."""
    files: dict[str, str | None] = {}
    for kind, where in images.items():
        file = where.get("file") if isinstance(where, Mapping) else None
        files[str(kind)] = file if isinstance(file, str) and file else None
    return files


class WebBackend(Protocol):
    """The bridge, as the page sees it. Every method is called from the web server's
    thread and must return promptly (no camera I/O: commands are queued)."""

    def cameras(self) -> list[CameraView]:
        """Every configured camera, in a stable order."""
        ...

    def latest_picture(self, camera: str, kind: str, event_id: str | None = None) -> bytes | None:
        """The last picture of this kind from this camera (a JPEG), or None; with
        ``event_id``, only when it is the picture of that read (a read is published
        before its pictures arrive: until then the last one is another vehicle's)."""
        ...

    def forget_pictures(self, camera: str, kinds: Collection[str] = ()) -> None:
        """The camera's last read was erased (its plate's history was): forget the last
        pictures held for it (every kind), and clear what the broker retains of that read
        (its pictures of ``kinds`` and of any kind seen, and its ``state``)."""
        ...

    def submit(
        self, camera: str, kind: CommandKind, output: int | None, value: str
    ) -> CommandOutcome:
        """Queue a command exactly as if it came over MQTT (same validation, rate limits,
        gate safety; its outcome published on MQTT too). ``value``: trigger: ""; output:
        on | off | seconds; barrier: open | close."""
        ...

    def lists_file(self) -> tuple[Path | None, ListsFormat]:
        """The plate lists file (HIK2MQTT_LISTS_FILE) and its format."""
        ...

    def reload_lists(self) -> bool:
        """Read the lists file again now; False when the new text was refused."""
        ...
