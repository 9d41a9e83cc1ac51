"""Reads and their framing as a camera puts them on the wire; what tests and the bench build.

``make_read`` makes a read (its XML and unique JPEG pictures); ``encode_read`` frames it
as parts of an alertStream, ``push_body`` as an ITS camera's ``multipart/form-data`` POST,
``multipart_reply`` as the answer to manual recognition. Nothing here touches a socket.
"""

from __future__ import annotations

import os
import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from xml.sax.saxutils import escape

from hik2mqtt.simulator.templates import (
    ANPR_XML,
    HEARTBEAT_XML,
    OTHER_EVENT_XML,
    PICTURE_INFO_XML,
    PLATE_JPEG,
    VEHICLE_JPEG,
    XML_TYPE,
)

# The boundary an ITS camera posts with (shared/samples/push-anpr-multipart-its-camera.txt).
PUSH_BOUNDARY = "---------------------------7e13971310878"


def jpeg(base: bytes, *, size: int = 0, marker: bytes = b"") -> bytes:
    """A valid JPEG: ``base`` with comment segments holding ``marker`` and random padding.

    The padding makes each picture unique (so tests can compare bytes) and, with
    ``marker``, lets a picture carry a delimiter line inside it, as real JPEG data may.
    """
    filler = marker + os.urandom(max(0, size - len(base) - len(marker)))
    segments = []
    while filler:
        chunk, filler = filler[:65533], filler[65533:]
        segments.append(b"\xff\xfe" + (len(chunk) + 2).to_bytes(2, "big") + chunk)
    return base[:2] + b"".join(segments) + base[2:]


@dataclass(frozen=True, slots=True)
class SimRead:
    """A read the simulator made: its plate, XML and pictures (file name -> bytes)."""

    plate: str
    event_id: str
    xml: bytes
    pictures: dict[str, bytes] = field(repr=False)


def random_plate() -> str:
    letters = "".join(random.choices(string.ascii_uppercase, k=2))  # noqa: S311 - not crypto
    return (
        f"{letters}{random.randint(10, 99)} {''.join(random.choices(string.ascii_uppercase, k=3))}"  # noqa: S311
    )


def make_read(
    plate: str | None = None,
    *,
    kinds: tuple[str, ...] = ("licensePlatePicture", "vehiclePicture"),
    picture_size: int = 0,
    marker: bytes = b"",
    retransmitted: bool = False,
    confidence: int = 97,
    direction: str = "forward",
    channel: int = 1,
    list_name: str = "otherList",
    taken: datetime | None = None,
) -> SimRead:
    plate = plate if plate is not None else random_plate()
    now = taken or datetime.now().astimezone()
    event_id = uuid.uuid4().hex
    infos = "".join(
        PICTURE_INFO_XML.format(name=kind, abs_time=now.strftime("%Y%m%d%H%M%S%f")[:17])
        for kind in kinds
    )
    xml = ANPR_XML.format(
        channel=channel,
        time=now.isoformat(timespec="seconds"),
        plate=escape(plate),
        direction=direction,
        confidence=confidence,
        pictures=infos,
        list_name=list_name,
        event_id=event_id,
        pic_num=len(kinds),
        retransmitted="true" if retransmitted else "false",
    ).encode()
    pictures = {
        f"{kind}.jpg": jpeg(
            PLATE_JPEG if kind == "licensePlatePicture" else VEHICLE_JPEG,
            size=picture_size,
            marker=marker,
        )
        for kind in kinds
    }
    return SimRead(plate=plate, event_id=event_id, xml=xml, pictures=pictures)


def encode_part(
    boundary: str,
    body: bytes,
    *,
    content_type: str,
    name: str | None = None,
    content_length: bool = True,
) -> bytes:
    """One part as cameras frame it: delimiter, headers, blank line, body, CRLF."""
    headers = [f"--{boundary}", f"Content-Type: {content_type}"]
    if name is not None:
        headers.append(f'Content-Disposition: attachment; filename="{name}"')
    if content_length:
        headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body + b"\r\n"


def encode_read(read: SimRead, boundary: str = "boundary", *, content_length: bool = True) -> bytes:
    """A read and its pictures as they follow each other on the stream."""
    out = [
        encode_part(
            boundary,
            read.xml,
            content_type=XML_TYPE,
            content_length=content_length,
        )
    ]
    out += [
        encode_part(
            boundary, data, content_type="image/jpeg", name=name, content_length=content_length
        )
        for name, data in read.pictures.items()
    ]
    return b"".join(out)


def heartbeat_part(boundary: str = "boundary", *, content_length: bool = True) -> bytes:
    body = HEARTBEAT_XML.format(time=datetime.now().astimezone().isoformat(timespec="seconds"))
    return encode_part(
        boundary,
        body.encode(),
        content_type=XML_TYPE,
        content_length=content_length,
    )


def event_part(
    event_type: str,
    state: str = "active",
    boundary: str = "boundary",
    *,
    content_length: bool = True,
) -> bytes:
    """A non-ANPR event (motion, line crossing...) as one part of the stream."""
    when = datetime.now().astimezone().isoformat(timespec="seconds")
    body = OTHER_EVENT_XML.format(type=event_type, state=state, time=when).encode()
    return encode_part(boundary, body, content_type=XML_TYPE, content_length=content_length)


def multipart_reply(read: SimRead, boundary: str) -> bytes:
    """A read and its pictures as one closed multipart body (manual recognition's answer)."""
    return encode_read(read, boundary) + f"--{boundary}--\r\n".encode()


def push_body(read: SimRead, boundary: str = PUSH_BOUNDARY) -> bytes:
    """A read and its pictures as an ITS camera POSTs them: ``multipart/form-data``, closed
    (``shared/samples/push-anpr-multipart-its-camera.txt``)."""
    parts = [
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="anpr.xml";filename="anpr.xml"\r\n'
        f"Content-Type: {XML_TYPE}\r\n"
        f"Content-Length: {len(read.xml)}\r\n\r\n".encode()
        + read.xml
        + b"\r\n"
    ]
    for name, data in read.pictures.items():
        parts.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data;name="{name}";filename="{name}"\r\n'
            f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()
