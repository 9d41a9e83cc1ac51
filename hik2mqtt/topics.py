"""Topic names and payloads: pure functions, no I/O.

Every topic hik2mqtt uses is built here, so the README's topic reference (and the tests
that check it) have one place to look.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hik2mqtt.events import PlateRead

ONLINE = "online"
OFFLINE = "offline"
_UNSAFE_FILE_CHARS = re.compile(r"[^\w-]+")


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names. ``bridge_id`` (``HIK2MQTT_BRIDGE_ID``) names this bridge among several on
    one broker: its own topics move to ``<prefix>/bridge/<id>/...``; camera topics don't."""

    prefix: str = "anpr"
    bridge_id: str | None = None

    @property
    def _bridge(self) -> str:
        if self.bridge_id is None:
            return f"{self.prefix}/bridge"
        return f"{self.prefix}/bridge/{self.bridge_id}"

    @property
    def bridge_status(self) -> str:
        """This bridge's retained online/offline (and its last will)."""
        return f"{self._bridge}/status"

    @property
    def camera_registry(self) -> str:
        """Retained list of the cameras the bridge announced (to remove dropped ones)."""
        return f"{self._bridge}/cameras"

    @property
    def bridges_filter(self) -> str:
        """Every bridge's status and registry on this prefix (with an id or without)."""
        return f"{self.prefix}/bridge/#"

    def parse_bridge_topic(self, topic: str) -> tuple[str | None, str] | None:
        """``(bridge id or None, "status" | "cameras")`` for a bridge's own topic, else None."""
        head = f"{self.prefix}/bridge/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) == 1 and levels[0] in ("status", "cameras"):
            return None, levels[0]
        if len(levels) == 2 and levels[0] and levels[1] in ("status", "cameras"):
            return levels[0], levels[1]
        return None

    def may_answer_on(self, response_topic: str, *, also_forbidden: tuple[str, ...] = ()) -> bool:
        """Whether a request's MQTT 5 response topic may be answered on: not under our own
        prefix (an answer must not pose as a read, a status or a command) nor under any of
        ``also_forbidden`` (e.g. Home Assistant's discovery prefix)."""
        return not any(
            response_topic == p or response_topic.startswith(p + "/")
            for p in (self.prefix, *also_forbidden)
        )

    @property
    def command_subscriptions(self) -> list[str]:
        return [
            f"{self.prefix}/+/trigger",
            f"{self.prefix}/+/output/+/set",
            f"{self.prefix}/+/barrier/set",
        ]

    def camera_status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    def plate(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/plate"

    def image(self, camera: str, kind: str) -> str:
        return f"{self.prefix}/{camera}/image/{kind}"

    def trigger(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/trigger"

    def trigger_result(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/trigger/result"

    def event(self, camera: str, event_type: str) -> str:
        return f"{self.prefix}/{camera}/event/{event_type}"

    def state(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/state"

    def gate(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/gate"

    def output_set(self, camera: str, output: int | str) -> str:
        return f"{self.prefix}/{camera}/output/{output}/set"

    def output_state(self, camera: str, output: int | str) -> str:
        return f"{self.prefix}/{camera}/output/{output}"

    def barrier_set(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/barrier/set"

    @staticmethod
    def result(command_topic: str) -> str:
        """Where a command's outcome goes: its own topic plus ``/result``."""
        return f"{command_topic}/result"

    def parse_command(self, topic: str) -> tuple[str, str, str | None] | None:
        """``(camera, command, output)`` for a command topic; command is ``trigger``,
        ``output`` or ``barrier``; None for anything else."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) == 2 and levels[1] == "trigger" and levels[0]:
            return levels[0], "trigger", None
        if len(levels) == 3 and levels[1:] == ["barrier", "set"] and levels[0]:
            return levels[0], "barrier", None
        if len(levels) == 4 and levels[1] == "output" and levels[3] == "set" and levels[0]:
            return levels[0], "output", levels[2]
        return None

    def camera_of_trigger(self, topic: str) -> str | None:
        """The camera level of a ``<prefix>/<camera>/trigger`` topic, else None."""
        parsed = self.parse_command(topic)
        return parsed[0] if parsed and parsed[1] == "trigger" else None


def safe_file_part(text: str | None, *, fallback: str, limit: int = 32) -> str:
    """Camera text made safe for a file name: letters, digits, _ and - only."""
    safe = _UNSAFE_FILE_CHARS.sub("_", text or "").strip("_-")[:limit]
    return safe or fallback


def picture_path(
    folder: Path, *, camera: str, read: PlateRead, kind: str, received: datetime
) -> Path:
    """Where a picture of a read is written: ``<folder>/<camera>/<date>/<time>_<plate>_<kind>.jpg``.

    Times are the bridge's local clock when the read arrived (cameras' clocks drift);
    the camera's text never reaches the path unsanitised.
    """
    plate = safe_file_part(read.plate, fallback="unknown")
    stamp = received.strftime("%H%M%S") + f"-{received.microsecond // 1000:03d}"
    name = f"{stamp}_{plate}_{safe_file_part(kind, fallback='picture')}.jpg"
    return folder / safe_file_part(camera, fallback="camera") / received.strftime("%Y-%m-%d") / name


def read_age(read: PlateRead, received: datetime) -> float | None:
    """Seconds from the camera's time of the read to its arrival (None if unknown)."""
    if read.time is None:
        return None
    try:
        taken = datetime.fromisoformat(read.time)
    except ValueError:
        return None
    if taken.tzinfo is None:  # no zone: the camera's local time, taken as the bridge's
        taken = taken.astimezone()
    return round((received - taken).total_seconds(), 3)


def plate_payload(
    *,
    camera: str,
    read: PlateRead,
    source: str,
    received: datetime,
    images: dict[str, dict[str, str | None]],
    age: float | None = None,
    retransmitted: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON of one read, as published on ``<prefix>/<camera>/plate``.

    ``retransmitted`` overrides the camera's own flag (the bridge also marks reads that
    are too old by its clock); ``age`` is received minus the camera's time, in seconds.
    """
    doc: dict[str, Any] = {
        "camera": camera,
        "plate": read.plate,
        "raw_plate": read.raw_plate,
        "time": read.time,
        "received": received.isoformat(timespec="milliseconds"),
        "confidence": read.confidence,
        "direction": read.direction,
        "country": read.country,
        "channel": read.channel,
        "lane": read.lane,
        "event_id": read.event_id,
        "vehicle": {
            "type": read.vehicle.type,
            "color": read.vehicle.color,
            "brand": read.vehicle.brand,
        },
        "plate_color": read.plate_color,
        "list": read.list_name,
        "retransmitted": read.retransmitted if retransmitted is None else retransmitted,
        "age": age,
        "source": source,
        "images": images,
        **(extra or {}),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def result_payload(
    *, ok: bool, status: int | None, message: str, **extra: str | int | None
) -> bytes:
    """The JSON of a command's outcome, as published on ``.../result``."""
    doc: dict[str, Any] = {"ok": ok, "status": status, "message": message, **extra}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
