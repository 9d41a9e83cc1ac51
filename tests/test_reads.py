"""Parts to reads and pictures: matching by name, by order, and what is skipped."""

from __future__ import annotations

from hik2mqtt.multipart import Part
from hik2mqtt.reads import (
    EventArrived,
    HeartbeatArrived,
    PictureArrived,
    ReadArrived,
    ReadAssembler,
    Skipped,
)
from hik2mqtt.simulator.encoders import make_read

XML = {"content-type": "application/xml"}


def jpeg_part(data: bytes, **headers: str) -> Part:
    return Part(headers={"content-type": "image/jpeg", **headers}, body=data)


def test_pictures_matched_by_file_name_in_any_order() -> None:
    """Pictures named by Content-Disposition or Content-ID find their pictureInfo."""
    sim = make_read("AB12CDE")
    assembler = ReadAssembler()
    read = assembler.handle(Part(XML, sim.xml))
    assert isinstance(read, ReadArrived)
    assert read.kinds == ("plate", "vehicle")
    first = assembler.handle(jpeg_part(b"V", **{"content-id": "<vehiclePicture.jpg>"}))
    second = assembler.handle(
        jpeg_part(b"P", **{"content-disposition": 'form-data; name="licensePlatePicture.jpg"'})
    )
    assert isinstance(first, PictureArrived)
    assert isinstance(second, PictureArrived)
    assert (first.kind, first.data) == ("vehicle", b"V")
    assert (second.kind, second.data) == ("plate", b"P")
    assert second.read is read


def test_unnamed_pictures_matched_by_order() -> None:
    """Pictures without a name take the announced pictures in order."""
    assembler = ReadAssembler()
    assembler.handle(Part(XML, make_read("X").xml))
    kinds = [assembler.handle(jpeg_part(b"1")), assembler.handle(jpeg_part(b"2"))]
    assert [k.kind for k in kinds if isinstance(k, PictureArrived)] == ["plate", "vehicle"]


def test_picture_without_read_is_skipped() -> None:
    """A picture with no read before it is skipped with a reason, not published."""
    out = ReadAssembler().handle(jpeg_part(b"x", **{"content-id": "a.jpg"}))
    assert isinstance(out, Skipped)
    assert "no read" in out.reason


def test_bad_event_detaches_following_pictures() -> None:
    """After an undecodable event, its pictures are not attached to the previous read."""
    assembler = ReadAssembler()
    assembler.handle(Part(XML, make_read("X").xml))
    assert isinstance(assembler.handle(Part(XML, b"<EventNotificationAlert><broken")), Skipped)
    assert isinstance(assembler.handle(jpeg_part(b"1")), Skipped)


def test_heartbeat_between_pictures_keeps_the_read() -> None:
    """A heartbeat does not separate a read from its pictures; another event does."""
    assembler = ReadAssembler()
    assembler.handle(Part(XML, make_read("X").xml))
    hb = b"<EventNotificationAlert><eventType>videoloss</eventType><eventState>inactive</eventState></EventNotificationAlert>"
    assert isinstance(assembler.handle(Part(XML, hb)), HeartbeatArrived)
    assert isinstance(assembler.handle(jpeg_part(b"1")), PictureArrived)
    other = b"<EventNotificationAlert><eventType>VMD</eventType><eventState>active</eventState></EventNotificationAlert>"
    assert isinstance(assembler.handle(Part(XML, other)), EventArrived)
    assert isinstance(assembler.handle(jpeg_part(b"2")), Skipped)


def test_extra_picture_named_by_its_type() -> None:
    """A picture the read did not announce is published under a kind from its name."""
    assembler = ReadAssembler()
    assembler.handle(Part(XML, make_read("X", kinds=("licensePlatePicture",)).xml))
    assembler.handle(jpeg_part(b"1"))
    extra = assembler.handle(jpeg_part(b"2", **{"content-id": "detectionPicture.jpg"}))
    assert isinstance(extra, PictureArrived)
    assert extra.kind == "scene"


def test_extra_pictures_of_one_kind_are_numbered_not_skipped() -> None:
    """Pictures beyond those announced, with names that map to one kind, are published
    as picture, picture_2... (a bounded set), not skipped one log line each."""
    assembler = ReadAssembler()
    assembler.handle(Part(XML, make_read("X", kinds=("licensePlatePicture",)).xml))
    outputs = [
        assembler.handle(jpeg_part(b"1")),
        assembler.handle(jpeg_part(b"2", **{"content-id": "farPicture.jpg"})),
        assembler.handle(jpeg_part(b"3", **{"content-id": "nearPicture.jpg"})),
    ]
    assert [o.kind for o in outputs if isinstance(o, PictureArrived)] == [
        "plate",
        "picture",
        "picture_2",
    ]
