"""Event models, and the one decoder that turns a camera's XML or JSON into them.

Nothing past :func:`decode` touches raw dicts. Element names are matched by their
local name: cameras use several XML namespaces (hikvision.com ver10/ver20, isapi.org,
std-cgi.com, psialliance) and some prefix their tags. XML with a DTD or entity
declarations is refused, so no entity is ever expanded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from hik2mqtt.errors import DecodeError
from hik2mqtt.numbers import CHANNEL, CONFIDENCE, LANE, PIC_NAME, read_number

# Camera picture types and the kind (topic level / file name part) we publish them as.
PICTURE_KINDS = {
    "licensePlatePicture": "plate",
    "vehiclePicture": "vehicle",
    "detectionPicture": "scene",
}
# What cameras write where no plate was read.
NO_PLATE = {"", "unknown", "--", "none", "null", "n/a", "noplate", "无车牌"}
MAX_XML_DEPTH = 32  # events are 5 levels deep; deeper is garbage or an attack
_UNSAFE_LEVEL = re.compile(r"[^A-Za-z0-9_-]+")


def picture_kind(picture_type: str | None) -> str:
    """The published kind of a camera picture type: plate, vehicle, scene, or its own name."""
    if not picture_type:
        return "picture"
    if picture_type in PICTURE_KINDS:
        return PICTURE_KINDS[picture_type]
    stem = picture_type.rsplit(".", 1)[0] if picture_type.lower().endswith(".jpg") else picture_type
    if stem in PICTURE_KINDS:
        return PICTURE_KINDS[stem]
    safe = _UNSAFE_LEVEL.sub("_", stem).strip("_")[:40]
    return safe or "picture"


@dataclass(frozen=True, slots=True)
class PictureInfo:
    """One picture the camera announced in ``pictureInfoList``."""

    file_name: str | None
    type: str | None

    @property
    def kind(self) -> str:
        return picture_kind(self.type or self.file_name)


@dataclass(frozen=True, slots=True)
class Vehicle:
    type: str | None = None
    color: str | None = None
    brand: str | None = None  # the camera's vehicleLogoRecog code


@dataclass(frozen=True, slots=True)
class PlateRead:
    """An ANPR read."""

    plate: str | None  # None when the camera read no plate ("unknown")
    raw_plate: str | None  # the camera's text, as sent
    time: str | None  # ISO 8601 from the camera's dateTime (its own clock and zone)
    confidence: int | None  # 0..100
    direction: str | None
    country: str | None
    channel: int | None
    lane: int | None
    event_id: str | None  # the camera's UUID
    vehicle: Vehicle
    list_name: str | None  # the camera's own list (vehicleListName / listType)
    retransmitted: bool  # isDataRetransmission: an old read re-sent after an outage
    plate_color: str | None
    pictures: tuple[PictureInfo, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A keep-alive: ``videoloss``/``inactive``, ``heartBeat``, or an ``other`` "Heartbeat"."""

    event_type: str


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """Any other event (motion, line crossing, IO...), kept for later issues."""

    event_type: str
    state: str | None
    description: str | None
    channel: int | None
    time: str | None


Event = PlateRead | Heartbeat | OtherEvent


def decode(body: bytes, content_type: str = "") -> Event:
    """Decode one event part; raise :class:`DecodeError` when it is not a valid event."""
    stripped = body.lstrip()
    if "json" in content_type or stripped[:1] == b"{":
        alert = _load_json(body)
    else:
        alert = _load_xml(body)
    return _decode_alert(alert)


def parse_xml(body: bytes) -> tuple[str, dict[str, Any]]:
    """Parse XML into (root local name, dict of children keyed by local names).

    ElementTree's C parser does the work (about 2.5 times faster than xmltodict here,
    see docs/PERFORMANCE.md). Documents with a DTD or entity declarations are refused
    before parsing, so no entity is ever expanded; UTF-16/32 (which would hide such a
    declaration from that check) is refused too: cameras send UTF-8.
    """
    if b"\x00" in body or b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise DecodeError("invalid XML: DTDs, entity declarations and UTF-16/32 are refused")
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - DTDs refused just above
    except ElementTree.ParseError as exc:
        raise DecodeError(f"invalid XML: {exc}") from exc
    value = _element_dict(root, MAX_XML_DEPTH)
    return _local(root.tag), value if isinstance(value, dict) else {}


_LOCAL_NAMES: dict[str, str] = {}  # tag -> local name; cameras use a few dozen tags


def _local(tag: str) -> str:
    """``{namespace}name`` or ``prefix:name`` -> ``name``."""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag[tag.rfind("}") + 1 :].rsplit(":", 1)[-1]
        if len(_LOCAL_NAMES) < 4096:  # bounded: tags come from the camera
            _LOCAL_NAMES[tag] = name
    return name


def _element_dict(element: ElementTree.Element, depth: int) -> dict[str, Any] | str | None:
    """An element as nested dicts keyed by local names; repeated children become lists."""
    children = list(element)
    if not children:
        text = element.text
        return (text.strip() or None) if text else None
    if depth <= 0:
        raise DecodeError(f"XML nested deeper than {MAX_XML_DEPTH} levels")
    out: dict[str, Any] = {}
    for child in children:
        if not isinstance(child.tag, str):  # a comment or processing instruction
            continue
        name = _local(child.tag)
        value = _element_dict(child, depth - 1)
        if name not in out:
            out[name] = value
        elif isinstance(out[name], list):
            out[name].append(value)
        else:
            out[name] = [out[name], value]
    return out


def _load_xml(body: bytes) -> dict[str, Any]:
    root, alert = parse_xml(body)
    if root != "EventNotificationAlert":
        raise DecodeError(f"XML root is {root!r}, not EventNotificationAlert")
    return alert


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("EventNotificationAlert"), dict):
        doc = doc["EventNotificationAlert"]
    if not isinstance(doc, dict) or "eventType" not in doc:
        raise DecodeError("JSON event without eventType")
    return doc


def _text(node: Any, key: str) -> str | None:
    """The text of a child element (or JSON scalar), stripped; None when empty or absent."""
    if type(node) is not dict:
        return None
    value = node.get(key)
    if value is None or type(value) in (dict, list):
        return None
    text = (value if type(value) is str else str(value)).strip()
    return text or None


def _int(node: Any, key: str, bounds: tuple[int, int]) -> int | None:
    """A number child: ASCII digits within ``bounds`` (:func:`read_number`), else None."""
    return read_number(_text(node, key), bounds)


def _bool(node: Any, key: str) -> bool:
    if type(node) is dict and isinstance(node.get(key), bool):
        return bool(node[key])
    return (_text(node, key) or "").lower() in ("true", "1", "yes")


def _time(node: Any, key: str) -> str | None:
    text = _text(node, key)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return text  # keep what the camera said rather than lose it


def _decode_alert(alert: dict[str, Any]) -> Event:
    event_type = _text(alert, "eventType")
    if event_type is None:
        raise DecodeError("event without eventType")
    state = (_text(alert, "eventState") or "").lower()
    description = _text(alert, "eventDescription")
    kind = event_type.lower()
    if (
        kind == "heartbeat"
        or (kind == "videoloss" and state == "inactive")
        or (kind == "other" and (description or "").lower() == "heartbeat")
    ):
        return Heartbeat(event_type=event_type)
    channel = _int(alert, "channelID", CHANNEL)
    if channel is None:
        channel = _int(alert, "dynChannelID", CHANNEL)
    anpr = alert.get("ANPR")
    if kind == "anpr" and isinstance(anpr, Mapping):
        return _decode_anpr(alert, anpr, channel)
    if kind == "anpr":
        raise DecodeError("ANPR event without an ANPR element")
    return OtherEvent(
        event_type=event_type,
        state=state or None,
        description=description,
        channel=channel,
        time=_time(alert, "dateTime"),
    )


def _decode_anpr(alert: dict[str, Any], anpr: Mapping[str, Any], channel: int | None) -> PlateRead:
    raw_plate = _text(anpr, "licensePlate")
    plate = None if (raw_plate or "").lower() in NO_PLATE else raw_plate
    confidence = _int(anpr, "confidenceLevel", CONFIDENCE)
    info = anpr.get("vehicleInfo")
    vehicle = Vehicle(
        type=_text(anpr, "vehicleType") or _text(info, "vehicleType"),
        color=_text(info, "color"),
        brand=_text(info, "vehicleLogoRecog"),
    )
    pictures_node = anpr.get("pictureInfoList")
    entries = pictures_node.get("pictureInfo") if isinstance(pictures_node, Mapping) else None
    if isinstance(entries, Mapping):
        entries = [entries]
    pictures = tuple(
        PictureInfo(file_name=_text(entry, "fileName"), type=_text(entry, "type"))
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, Mapping)
    )
    return PlateRead(
        plate=plate,
        raw_plate=raw_plate,
        time=_time(alert, "dateTime"),
        confidence=confidence,
        direction=_text(anpr, "direction"),
        country=_text(anpr, "country") or _text(anpr, "countryAbbreviation"),
        channel=channel,
        lane=_int(anpr, "line", LANE),
        event_id=_text(alert, "UUID"),
        vehicle=vehicle,
        list_name=_text(anpr, "vehicleListName") or _text(anpr, "listType"),
        retransmitted=_bool(alert, "isDataRetransmission"),
        plate_color=_text(anpr, "plateColor"),
        pictures=pictures,
    )


@dataclass(frozen=True, slots=True)
class PolledPlate:
    """One entry of a traffic camera's plate list (``vehicleDetect/plates``)."""

    pic_name: str  # ASCII digits within numbers.PIC_NAME; larger is newer
    read: PlateRead


def _capture_time(text: str | None) -> str | None:
    """``20340109T094130+0400`` or ``20200424T1616270000`` -> ISO 8601 (else as sent)."""
    if not text:
        return None
    for fmt, size in (("%Y%m%dT%H%M%S%z", None), ("%Y%m%dT%H%M%S", 15)):
        try:
            return datetime.strptime(text if size is None else text[:size], fmt).isoformat()
        except ValueError:
            continue
    return text


def decode_plates(body: bytes) -> list[PolledPlate]:
    """The entries of a ``Plates`` answer, newest last, each once."""
    root, doc = parse_xml(body)
    if root != "Plates":
        raise DecodeError(f"XML root is {root!r}, not Plates")
    entries = doc.get("Plate")
    if isinstance(entries, dict):
        entries = [entries]
    out: dict[str, PolledPlate] = {}
    for entry in entries if isinstance(entries, list) else []:
        pic_name = _text(entry, "picName")
        # str.isdigit() passes "²", which int() refuses, and int() refuses 5,000 digits.
        if pic_name is None or read_number(pic_name, PIC_NAME) is None:
            continue
        raw = _text(entry, "plateNumber")
        read = PlateRead(
            plate=None if (raw or "").lower() in NO_PLATE else raw,
            raw_plate=raw,
            time=_capture_time(_text(entry, "captureTime")),
            confidence=None,
            direction=_text(entry, "direction"),
            country=_text(entry, "country"),
            channel=None,
            lane=_int(entry, "laneNo", LANE),
            event_id=pic_name,
            vehicle=Vehicle(),
            list_name=_text(entry, "matchingResult"),
            retransmitted=False,
            plate_color=None,
            pictures=(PictureInfo(file_name=f"{pic_name}.jpg", type="picture"),),
        )
        out[pic_name] = PolledPlate(pic_name, read)
    return sorted(out.values(), key=lambda p: int(p.pic_name))
