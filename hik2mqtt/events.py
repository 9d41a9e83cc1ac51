"""Event models, and the one decoder that turns a camera's XML or JSON into them.

Nothing past :func:`decode` touches raw dicts. Element names are matched by their
local name: cameras use several XML namespaces (hikvision.com ver10/ver20, isapi.org,
std-cgi.com, psialliance) and some prefix their tags. XML with a DTD or entity
declarations is refused, so no entity is ever expanded.

Everything here is camera input, so every decode failure is a :class:`DecodeError` with a
reason (never another exception), and what is decoded is bounded: event documents over
``MAX_DOCUMENT_BYTES``, XML deeper than ``MAX_XML_DEPTH`` or with more than
``MAX_XML_MARKUP`` tags, JSON nested too deep, and numbers too long for ``int()``
are refused; numbers go through :func:`hik2mqtt.numbers.read_number` with a range per
field; times with a year outside ``numbers.YEAR`` are absent; text fields are capped at
``MAX_TEXT`` characters with control characters and lone surrogates replaced, so they
always encode to UTF-8 JSON; at most ``MAX_PICTURES_PER_READ`` pictures are kept per
read, and picture kinds come from a fixed set (:data:`PICTURE_KIND_NAMES`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

from hik2mqtt.errors import DecodeError
from hik2mqtt.numbers import CHANNEL, CONFIDENCE, LANE, PIC_NAME, YEAR, read_number

# Camera picture types and the kind (topic level / file name part) we publish them as.
PICTURE_KINDS = {
    "licensePlatePicture": "plate",
    "vehiclePicture": "vehicle",
    "detectionPicture": "scene",
}
# Every kind a picture can have: a camera's own names never become topics, so the
# distinct ``image/<kind>`` topics of a camera are bounded (see reads.unique_kinds).
OTHER_PICTURE_KIND = "picture"
PICTURE_KIND_NAMES = (*PICTURE_KINDS.values(), OTHER_PICTURE_KIND)
# What cameras write where no plate was read.
NO_PLATE = {"", "unknown", "--", "none", "null", "n/a", "noplate", "无车牌"}
MAX_XML_DEPTH = 32  # events are 5 levels deep; deeper is garbage or an attack
MAX_XML_MARKUP = 100_000  # "<" per document: an event has ~80; a plate list ~20 per plate
MAX_DOCUMENT_BYTES = 1024 * 1024  # events are a few kB; larger is refused unread
MAX_TEXT = 256  # characters kept of any text field
MAX_PICTURES_PER_READ = 16  # pictures announced (and published) per read; cameras send 1-3
# Characters that must not reach a payload or a log: C0/C1 controls, lone surrogates,
# and the Unicode line and paragraph separators. One character class: no backtracking.
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SPACES = frozenset("\t\n\r\x0b\x0c\u2028\u2029")


def picture_kind(picture_type: str | None) -> str:
    """The published kind of a camera picture type: plate, vehicle, scene, else picture.

    A ``.jpg`` file name counts as its stem. Any other name becomes ``picture``: names
    chosen by a camera never become topics of their own.
    """
    if not picture_type:
        return OTHER_PICTURE_KIND
    kind = PICTURE_KINDS.get(picture_type)
    if kind is None and picture_type[-4:].lower() == ".jpg":
        kind = PICTURE_KINDS.get(picture_type[:-4])
    return kind or OTHER_PICTURE_KIND


def clean_text(text: str) -> str:
    """Camera text made safe to publish: at most ``MAX_TEXT`` characters, stripped, with
    line breaks and tabs as spaces and other control characters or lone surrogates as
    U+FFFD, so that it always encodes to UTF-8 and can't break a line."""
    text = text.strip()[:MAX_TEXT]
    if _UNSAFE_TEXT.search(text) is not None:
        text = _UNSAFE_TEXT.sub(lambda m: " " if m.group() in _SPACES else "\ufffd", text)
        text = text.strip()
    return text


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
    _check_size(body)
    stripped = body.lstrip()
    if "json" in content_type or stripped[:1] == b"{":
        alert = _load_json(body)
    else:
        alert = _load_xml(body)
    return _decode_alert(alert)


def _check_size(body: bytes) -> None:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise DecodeError(
            f"document of {len(body)} bytes is over the limit of {MAX_DOCUMENT_BYTES}"
        )


def parse_xml(body: bytes) -> tuple[str, dict[str, Any]]:
    """Parse XML into (root local name, dict of children keyed by local names).

    ElementTree's C parser does the work (about 2.5 times faster than xmltodict here,
    see docs/PERFORMANCE.md). Documents with a DTD or entity declarations are refused
    before parsing, so no entity is ever expanded; UTF-16/32 (which would hide such a
    declaration from that check) is refused too: cameras send UTF-8. A document over
    ``MAX_DOCUMENT_BYTES`` or with more than ``MAX_XML_MARKUP`` tags is refused before
    parsing (so a hostile one never builds a large or deep tree), and one deeper than
    ``MAX_XML_DEPTH`` while it is turned into dicts.
    """
    _check_size(body)
    if b"\x00" in body or b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise DecodeError("invalid XML: DTDs, entity declarations and UTF-16/32 are refused")
    if body.count(b"<") > MAX_XML_MARKUP:  # C speed; bounds elements, depth and memory
        raise DecodeError(f"XML with more than {MAX_XML_MARKUP} tags")
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
        raise DecodeError(f"XML root is {clean_text(root)[:40]!r}, not EventNotificationAlert")
    return alert


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _load_json(body: bytes) -> dict[str, Any]:
    """A JSON event: strict UTF-8 (a BOM is allowed), no NaN/Infinity, refused cleanly
    when nested too deep for the parser or holding a number too long for ``int()``."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    except ValueError as exc:  # a number over int()'s digit limit, NaN, Infinity
        raise DecodeError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("invalid JSON: nested too deep") from exc
    if isinstance(doc, dict) and isinstance(doc.get("EventNotificationAlert"), dict):
        doc = doc["EventNotificationAlert"]
    if not isinstance(doc, dict) or "eventType" not in doc:
        raise DecodeError("JSON event without eventType")
    return doc


def _text(node: Any, key: str) -> str | None:
    """The text of a child element (or JSON scalar), cleaned (see :func:`clean_text`);
    None when empty or absent."""
    if type(node) is not dict:
        return None
    value = node.get(key)
    if value is None or type(value) in (dict, list):
        return None
    if type(value) is not str:
        value = str(value)  # a JSON number or boolean (json.loads bounds an int's digits)
    return clean_text(value) or None


def _int(node: Any, key: str, bounds: tuple[int, int]) -> int | None:
    """A number child: ASCII digits (or a JSON integer) within ``bounds``
    (:func:`read_number`), else None."""
    if type(node) is not dict:
        return None
    value = node.get(key)
    return read_number(value, bounds) if type(value) in (int, str) else None


def _bool(node: Any, key: str) -> bool:
    if type(node) is dict and isinstance(node.get(key), bool):
        return bool(node[key])
    return (_text(node, key) or "").lower() in ("true", "1", "yes")


def sane_time(moment: datetime) -> str | None:
    """ISO 8601 of a camera's time, or None when its year is outside ``numbers.YEAR`` or
    it can't be turned into UTC or local time (so ``topics.read_age`` never overflows)."""
    if read_number(moment.year, YEAR) is None:
        return None
    try:
        if moment.tzinfo is None:
            moment.astimezone()
        else:
            moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.isoformat()


def _time(node: Any, key: str) -> str | None:
    """The camera's time as ISO 8601; None if absent or out of range; as sent (cleaned)
    when it is not ISO 8601, rather than lose it."""
    text = _text(node, key)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return sane_time(moment)


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
        for entry in (entries if isinstance(entries, list) else [])[:MAX_PICTURES_PER_READ]
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
    """``20340109T094130+0400`` or ``20200424T1616270000`` -> ISO 8601 (else as sent).

    None when its year is outside ``numbers.YEAR``."""
    if not text:
        return None
    for fmt, size in (("%Y%m%dT%H%M%S%z", None), ("%Y%m%dT%H%M%S", 15)):
        try:
            moment = datetime.strptime(text if size is None else text[:size], fmt)
        except ValueError:
            continue
        return sane_time(moment)
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
    return sorted(out.values(), key=lambda p: int(p.pic_name))  # digits, checked above
