"""The decoder: every namespace and shape cameras send, heartbeats, bad input."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hik2mqtt.errors import DecodeError, ProtocolError
from hik2mqtt.events import (
    Heartbeat,
    OtherEvent,
    PlateRead,
    decode,
    decode_plates,
    picture_kind,
)
from hik2mqtt.multipart import MultipartParser
from hik2mqtt.reads import ReadAssembler
from tests.conftest import SAMPLES

NAMESPACES = [
    "http://www.hikvision.com/ver10/XMLSchema",
    "http://www.hikvision.com/ver20/XMLSchema",
    "http://www.isapi.org/ver20/XMLSchema",
    "http://www.std-cgi.com/ver20/XMLSchema",
    "urn:psialliance-org",
]


def anpr_xml(ns: str, plate: str = "AB12CDE", *, prefix: str = "", extra: str = "") -> bytes:
    """An ANPR alert shaped like the DeepinView capture (anpr-alert-iDS-2CD7A46G0-push.xml)."""
    p = f"{prefix}:" if prefix else ""
    xmlns = f'xmlns:{prefix}="{ns}"' if prefix else f'xmlns="{ns}"'
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<{p}EventNotificationAlert version="2.0" {xmlns}>
  <{p}ipAddress>10.0.0.8</{p}ipAddress>
  <{p}channelID>2</{p}channelID>
  <{p}dateTime>2025-03-01T08:15:30+01:00</{p}dateTime>
  <{p}eventType>ANPR</{p}eventType>
  <{p}eventState>active</{p}eventState>
  <{p}ANPR>
    <{p}country>5</{p}country>
    <{p}licensePlate>{plate}</{p}licensePlate>
    <{p}line>1</{p}line>
    <{p}direction>reverse</{p}direction>
    <{p}confidenceLevel>91</{p}confidenceLevel>
    <{p}plateColor>yellow</{p}plateColor>
    <{p}vehicleType>SUVMPV</{p}vehicleType>
    <{p}vehicleInfo><{p}color>red</{p}color><{p}vehicleLogoRecog>1036</{p}vehicleLogoRecog></{p}vehicleInfo>
    <{p}pictureInfoList>
      <{p}pictureInfo><{p}fileName>licensePlatePicture.jpg</{p}fileName><{p}type>licensePlatePicture</{p}type></{p}pictureInfo>
      <{p}pictureInfo><{p}fileName>detectionPicture.jpg</{p}fileName><{p}type>detectionPicture</{p}type></{p}pictureInfo>
    </{p}pictureInfoList>
    <{p}vehicleListName>allowList</{p}vehicleListName>
  </{p}ANPR>
  <{p}UUID>0f1e2d3c-1dd2-11b2-821f-000000000001</{p}UUID>
  <{p}isDataRetransmission>true</{p}isDataRetransmission>{extra}
</{p}EventNotificationAlert>
"""
    return body.encode()


@pytest.mark.parametrize("ns", NAMESPACES)
def test_anpr_in_every_namespace(ns: str) -> None:
    """An ANPR alert decodes the same whatever its namespace."""
    read = decode(anpr_xml(ns))
    assert isinstance(read, PlateRead)
    assert read.plate == "AB12CDE"
    assert read.time == "2025-03-01T08:15:30+01:00"
    assert read.confidence == 91
    assert read.direction == "reverse"
    assert read.country == "5"
    assert read.channel == 2
    assert read.lane == 1
    assert read.event_id == "0f1e2d3c-1dd2-11b2-821f-000000000001"
    assert read.vehicle.type == "SUVMPV"
    assert read.vehicle.color == "red"
    assert read.vehicle.brand == "1036"
    assert read.list_name == "allowList"
    assert read.retransmitted is True
    assert [(p.file_name, p.kind) for p in read.pictures] == [
        ("licensePlatePicture.jpg", "plate"),
        ("detectionPicture.jpg", "scene"),
    ]


def test_prefixed_namespace_tags() -> None:
    """Tags with a namespace prefix are matched on their local names."""
    read = decode(anpr_xml(NAMESPACES[1], prefix="hik"))
    assert isinstance(read, PlateRead)
    assert read.plate == "AB12CDE"
    assert len(read.pictures) == 2


@pytest.mark.parametrize("text", ["unknown", "UNKNOWN", "", "--"])
def test_unread_plate_is_null_with_raw_text_kept(text: str) -> None:
    """A read whose plate is `unknown` has plate null and keeps the camera's text."""
    read = decode(anpr_xml(NAMESPACES[1], text))
    assert isinstance(read, PlateRead)
    assert read.plate is None
    assert read.raw_plate == (text or None)


@pytest.mark.parametrize("plate", ["京A12345", "蓝苏A8HK52", "ÄÖ-ŁŽ 12"])
def test_non_latin_plates(plate: str) -> None:
    """Non-Latin plates come through as text."""
    read = decode(anpr_xml(NAMESPACES[2], plate))
    assert isinstance(read, PlateRead)
    assert read.plate == plate


def test_json_event() -> None:
    """An application/json ANPR event decodes like the XML one."""
    body = json.dumps(
        {
            "ipAddress": "10.0.0.8",
            "channelID": 1,
            "dateTime": "2025-03-01T08:15:30+01:00",
            "eventType": "ANPR",
            "eventState": "active",
            "ANPR": {
                "licensePlate": "XY99ZZZ",
                "confidenceLevel": 88,
                "direction": "forward",
                "pictureInfoList": {
                    "pictureInfo": [{"fileName": "vehiclePicture.jpg", "type": "vehiclePicture"}]
                },
            },
            "UUID": "abc",
            "isDataRetransmission": False,
        }
    ).encode()
    read = decode(body, "application/json")
    assert isinstance(read, PlateRead)
    assert (read.plate, read.confidence, read.channel, read.retransmitted) == (
        "XY99ZZZ",
        88,
        1,
        False,
    )
    assert [p.kind for p in read.pictures] == ["vehicle"]


@pytest.mark.parametrize(
    "body",
    [
        # ver20 IPC videoloss keep-alive
        b'<EventNotificationAlert version="1.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">'
        b"<channelID>0</channelID><eventType>videoloss</eventType><eventState>inactive</eventState>"
        b"</EventNotificationAlert>",
        # doorbell (psialliance): eventType other, description Heartbeat
        b'<EventNotificationAlert version="1.0" xmlns="urn:psialliance-org"><eventType>other</eventType>'
        b"<eventDescription>Heartbeat</eventDescription><eventState>inactive</eventState>"
        b"</EventNotificationAlert>",
        # subscription heartbeat
        b'<EventNotificationAlert version="2.0" xmlns="http://www.isapi.com/ver20/XMLSchema">'
        b"<eventType>heartBeat</eventType><eventState>active</eventState></EventNotificationAlert>",
    ],
)
def test_heartbeats(body: bytes) -> None:
    """Keep-alives are recognised as heartbeats, not reads."""
    assert isinstance(decode(body), Heartbeat)


def test_other_event() -> None:
    """A non-ANPR event (line crossing) is an OtherEvent."""
    event = decode(
        b'<EventNotificationAlert xmlns="http://www.isapi.org/ver20/XMLSchema"><dynChannelID>3</dynChannelID>'
        b"<eventType>linedetection</eventType><eventState>active</eventState></EventNotificationAlert>"
    )
    assert event == OtherEvent("linedetection", "active", None, 3, None)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<EventNotificationAlert><eventType>ANPR", "invalid XML"),
        (
            b"<ResponseStatus><statusCode>4</statusCode></ResponseStatus>",
            "not EventNotificationAlert",
        ),
        (
            b"<EventNotificationAlert><eventType>ANPR</eventType></EventNotificationAlert>",
            "without an ANPR",
        ),
        (b"<EventNotificationAlert/>", "without eventType"),
        (b'{"no": "event"}', "without eventType"),
        (b"{broken", "invalid JSON"),
        (b"\xff\xfe<x/>", "invalid"),
    ],
)
def test_bad_events_raise_decode_error(body: bytes, match: str) -> None:
    """What is not a well-formed event raises DecodeError with a reason."""
    with pytest.raises(DecodeError, match=match):
        decode(body)


def test_entity_expansion_is_refused() -> None:
    """An XML entity bomb is refused, not expanded."""
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b"<EventNotificationAlert><eventType>ANPR</eventType><ANPR><licensePlate>&b;</licensePlate>"
        b"</ANPR></EventNotificationAlert>"
    )
    with pytest.raises(DecodeError):
        decode(bomb)


def test_picture_kinds() -> None:
    """Camera picture types map to plate, vehicle, scene; any other name is `picture`
    (a camera's own names never become topics)."""
    assert picture_kind("licensePlatePicture") == "plate"
    assert picture_kind("vehiclePicture.jpg") == "vehicle"
    assert picture_kind("detectionPicture") == "scene"
    assert picture_kind("detectionPicture.JPG") == "scene"
    assert picture_kind("farPicture") == "picture"
    assert picture_kind("../../etc/#+x") == "picture"
    assert picture_kind(None) == "picture"


@pytest.mark.parametrize(
    "value",
    ["٩١", "²", "1_0", "+91", "-1", "99999", "91.0", "0x5B", "9" * 5000, "١" * 5000],
    ids=["arabic-indic", "superscript", "underscore", "plus", "minus", "out-of-range", "decimal",
         "hex", "5000-digits", "5000-unicode-digits"],
)  # fmt: skip
def test_numbers_in_a_read_are_ascii_digits_in_range(value: str) -> None:
    """Confidence, channel and lane are ASCII digits within their range, or absent: Unicode
    digits, underscores, signs, out-of-range and 5,000-digit values give None."""
    body = anpr_xml(NAMESPACES[0]).decode()
    for tag in ("confidenceLevel", "channelID", "line"):
        body = re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", body)
    read = decode(body.encode())
    assert isinstance(read, PlateRead)
    assert (read.confidence, read.channel, read.lane) == (None, None, None)


@pytest.mark.parametrize(
    "pic_name",
    ["²", "٣", "1" * 5000, "1" * 26, "-5", ""],
    ids=["superscript", "arabic-indic", "5000-digits", "26-digits", "minus", "empty"],
)
def test_plate_list_entries_with_bad_pic_names_are_skipped(pic_name: str) -> None:
    """A plate-list entry whose picName is not ASCII digits within range is skipped (it
    used to raise ValueError when sorting, which crashed the poll worker); the others are
    kept in order."""
    body = (
        "<Plates>"
        "<Plate><picName>202004241616278801</picName><plateNumber>LATER</plateNumber></Plate>"
        f"<Plate><picName>{pic_name}</picName><plateNumber>BAD</plateNumber></Plate>"
        "<Plate><picName>202004241616278800</picName><plateNumber>FIRST</plateNumber></Plate>"
        "</Plates>"
    ).encode()
    assert [e.read.plate for e in decode_plates(body)] == ["FIRST", "LATER"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_random_bytes_never_raise_anything_but_decode_error(body: bytes) -> None:
    """Garbage gives DecodeError (or, by chance, a valid event), never another exception."""
    with contextlib.suppress(DecodeError):
        decode(body)


def test_every_shared_sample_decodes_or_is_refused_cleanly() -> None:
    """Each XML capture in shared/samples decodes; ANPR ones become reads with pictures;
    every other file, fed to the stream parser and decoder as if a camera sent it, never
    raises anything but our own errors."""
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is not here (it is beside the project in CI)")
    files = sorted(p for p in SAMPLES.iterdir() if p.is_file())
    assert files
    reads = 0
    for path in files:
        body = path.read_bytes()
        if path.suffix == ".xml":
            try:
                event = decode(body)
            except DecodeError:
                assert b"EventNotificationAlert" not in body, path.name
                continue
            if b"<eventType>ANPR</eventType>" in body:
                assert isinstance(event, PlateRead), path.name
                assert event.pictures, path.name
                assert event.time is not None, path.name
                reads += 1
            else:
                assert isinstance(event, Heartbeat | OtherEvent), path.name
            continue
        assembler = ReadAssembler()
        parser = MultipartParser("boundary")
        try:
            for part in parser.feed(body.replace(b"\n", b"\r\n")) + parser.end_of_stream():
                assembler.handle(part)
        except ProtocolError:
            pass
    assert reads >= 3
