"""Payloads: the JSON of a read and of a command's outcome (pure functions, no I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hik2mqtt.core.wire import compact_json
from hik2mqtt.events import PlateRead


def read_age(read: PlateRead, received: datetime) -> float | None:
    """Seconds from the camera's time of the read to its arrival (None if unknown)."""
    if read.time is None:
        return None
    try:
        taken = datetime.fromisoformat(read.time)
        if taken.tzinfo is None:  # no zone: the camera's local time, taken as the bridge's
            taken = taken.astimezone()
        return round((received - taken).total_seconds(), 3)
    except (ValueError, OverflowError, OSError):  # a time no clock can place
        return None


def plate_doc(
    *,
    camera: str,
    read: PlateRead,
    source: str,
    received: datetime,
    images: dict[str, dict[str, str | None]],
    age: float | None = None,
    retransmitted: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
    return doc


def plate_payload(**fields: Any) -> bytes:
    """:func:`plate_doc` as the JSON published on ``<prefix>/<camera>/plate``."""
    return dumps(plate_doc(**fields))


dumps = compact_json


def result_payload(
    *, ok: bool, status: int | None, message: str, **extra: str | int | None
) -> bytes:
    """The JSON of a command's outcome, as published on ``.../result``."""
    doc: dict[str, Any] = {"ok": ok, "status": status, "message": message, **extra}
    return compact_json(doc)
