"""The I/O-free stream parser: framing, camera quirks, limits, any split of the input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hik2mqtt.errors import ProtocolError
from hik2mqtt.multipart import MultipartParser, Part, boundary_from_content_type

ALERT = (
    b'<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">\n'
    b"<eventType>videoloss</eventType>\n<eventState>inactive</eventState>\n"
    b"</EventNotificationAlert>\n"
)
# Picture bytes that contain a delimiter line, as JPEG data may.
PICTURE = b"\xff\xd8\xff\xfe\x00\x10\r\n--boundary\r\n\x00\x01\xff\xd9"


def part(
    body: bytes,
    ctype: str = 'application/xml; charset="UTF-8"',
    *,
    length: bool = True,
    boundary: bytes = b"boundary",
    extra: bytes = b"",
) -> bytes:
    head = b"--" + boundary + b"\r\nContent-Type: " + ctype.encode() + b"\r\n" + extra
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body + b"\r\n"


def feed_in_pieces(parser: MultipartParser, data: bytes, cuts: list[int]) -> list[Part]:
    parts: list[Part] = []
    last = 0
    for cut in sorted(set(cuts)):
        parts += parser.feed(data[last:cut])
        last = cut
    parts += parser.feed(data[last:])
    return parts


STREAM = (
    part(ALERT)
    + part(
        PICTURE,
        "image/jpeg",
        extra=b'Content-Disposition: attachment; filename="licensePlatePicture.jpg"\r\n',
    )
    + b"--boundary\r\n"  # a stray duplicate delimiter line
    + part(ALERT, length=False)
    + part(b'{"eventType": "x", "a": {"b": "}\\"{"}}', "application/json", length=False)
    + b"\r\nsome garbage between parts\r\n"
    + part(b"\xff\xd8 no length picture \xff\xd9", "image/jpeg", length=False)
    + b"--boundary\r\n"
)
EXPECTED = [
    ALERT,
    PICTURE,
    ALERT.rstrip(b"\n"),
    b'{"eventType": "x", "a": {"b": "}\\"{"}}',
    b"\xff\xd8 no length picture \xff\xd9",
]


def test_parses_every_part_of_a_mixed_stream() -> None:
    """Length-framed, root-closed XML, brace-closed JSON and delimiter-framed parts all come out."""
    parts = MultipartParser("boundary").feed(STREAM)
    assert [p.body for p in parts] == EXPECTED
    assert parts[1].name == "licensePlatePicture.jpg"
    assert parts[1].content_type == "image/jpeg"


def test_byte_by_byte() -> None:
    """Feeding one byte at a time gives the same parts."""
    parser = MultipartParser("boundary")
    parts = [p for i in range(len(STREAM)) for p in parser.feed(STREAM[i : i + 1])]
    assert [p.body for p in parts] == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_split(cuts: list[int]) -> None:
    """Any split of the stream gives the same parts."""
    parts = feed_in_pieces(MultipartParser("boundary"), STREAM, cuts)
    assert [p.body for p in parts] == EXPECTED


def test_part_is_handed_on_with_its_last_byte() -> None:
    """A length-framed part, and an XML part without length, come out of the call that
    delivers their last byte: nothing waits for the next delimiter."""
    parser = MultipartParser("boundary")
    framed = part(ALERT)[:-2]  # without the CRLF that would follow
    assert parser.feed(framed[:-1]) == []
    assert [p.body for p in parser.feed(framed[-1:])] == [ALERT]

    parser = MultipartParser("boundary")
    unframed = part(ALERT, length=False).rstrip(b"\r\n")
    assert parser.feed(unframed[:-1]) == []
    assert [p.body for p in parser.feed(unframed[-1:])] == [unframed.split(b"\r\n\r\n", 1)[1]]


def test_json_without_length_is_handed_on_when_its_object_closes() -> None:
    """A JSON event without Content-Length completes at its closing brace."""
    body = b'{"EventNotificationAlert": {"eventType": "ANPR", "s": "a}b"}}'
    parser = MultipartParser("boundary")
    assert parser.feed(part(body, "application/json", length=False)[:-3]) == []
    assert [p.body for p in parser.feed(b"}")] == [body]


def test_picture_with_length_may_contain_the_delimiter() -> None:
    """A picture framed by Content-Length is never scanned for the delimiter."""
    parts = MultipartParser("boundary").feed(part(PICTURE, "image/jpeg") + part(ALERT))
    assert [p.body for p in parts] == [PICTURE, ALERT]


def test_declared_boundary_missing_falls_back_to_boundary() -> None:
    """The NVR that declares `myboundary` but sends `--boundary` still parses."""
    parser = MultipartParser("myboundary")
    parts = parser.feed(part(ALERT) + part(ALERT))
    assert [p.body for p in parts] == [ALERT, ALERT]
    assert parser.boundary == "boundary"


def test_other_boundary_tokens_and_lf_only_lines() -> None:
    """MIME_boundary and hikboundary work, and so do LF-only line endings."""
    for token in (b"MIME_boundary", b"hikboundary"):
        data = part(ALERT, boundary=token).replace(b"\r\n", b"\n")
        parts = MultipartParser(token.decode()).feed(data)
        assert [p.body for p in parts] == [ALERT]


def test_headers_without_blank_line() -> None:
    """A body that starts right after the headers (vendor documentation style) is found."""
    data = b"--boundary\r\nContent-Type: application/xml\r\n" + ALERT + b"--boundary\r\n"
    assert [p.body for p in MultipartParser("boundary").feed(data)] == [ALERT.rstrip(b"\n")]


def test_cut_off_xml_ends_at_the_delimiter() -> None:
    """An XML part cut off by the next delimiter is handed on as it is (it won't decode)."""
    data = part(ALERT[:50], length=False) + part(ALERT)
    bodies = [p.body for p in MultipartParser("boundary").feed(data)]
    assert bodies == [ALERT[:50], ALERT]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("multipart/mixed; boundary=boundary", "boundary"),
        ("multipart/mixed;boundary=myboundary", "myboundary"),
        ('multipart/mixed; boundary="MIME_boundary"', "MIME_boundary"),
        (
            "multipart/form-data; boundary=---------------------------7e13971310878",
            "---------------------------7e13971310878",
        ),
        ("multipart/mixed", None),
    ],
)
def test_boundary_from_content_type(header: str, expected: str | None) -> None:
    """The boundary parameter is read with or without spaces or quotes."""
    assert boundary_from_content_type(header) == expected


def test_part_over_the_limit_is_a_protocol_error_before_allocation() -> None:
    """A Content-Length over the limit raises at once, without buffering the body."""
    parser = MultipartParser("boundary", max_part_size=1024)
    head = b"--boundary\r\nContent-Type: image/jpeg\r\nContent-Length: 999999999\r\n\r\n"
    with pytest.raises(ProtocolError, match="over the limit"):
        parser.feed(head)
    assert parser.buffered == 0
    with pytest.raises(ProtocolError):
        parser.feed(b"more")


def test_unframed_part_over_the_limit_is_a_protocol_error() -> None:
    """A part without length that never ends stops at the limit."""
    parser = MultipartParser("boundary", max_part_size=4096)
    parser.feed(b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n")
    parser.feed(b"x" * 4000)
    with pytest.raises(ProtocolError, match="limit"):
        parser.feed(b"x" * 1000)


def test_garbage_without_delimiter_is_bounded() -> None:
    """Bytes that never hold a delimiter line don't grow the buffer past the limit."""
    parser = MultipartParser("boundary", max_part_size=4096)
    parser.feed(b"y" * 4000)
    with pytest.raises(ProtocolError, match="no delimiter"):
        parser.feed(b"y" * 1000)


def test_invalid_content_length_falls_back_to_delimiter_framing() -> None:
    """A negative or junk Content-Length is ignored, not trusted."""
    data = b"--boundary\r\nContent-Type: image/jpeg\r\nContent-Length: -5\r\n\r\nabc\r\n" + part(
        ALERT
    )
    assert [p.body for p in MultipartParser("boundary").feed(data)] == [b"abc", ALERT]


def test_end_of_stream_completes_a_delimiter_framed_last_part() -> None:
    """A finite answer (MNPR) whose last picture has no length ends with the body."""
    parser = MultipartParser("MIME_boundary")
    parser.receive_data(
        part(ALERT, boundary=b"MIME_boundary") + b"--MIME_boundary\r\n\r\nJPEGDATA\r\n"
    )
    assert [p.body for p in parser.end_of_stream()] == [ALERT, b"JPEGDATA"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
def test_garbage_before_a_good_part_never_breaks_it(garbage: bytes, cuts: list[int]) -> None:
    """Whatever comes before, a well-formed part after a fresh delimiter line is found
    (or the parser says ProtocolError); it never raises anything else."""
    data = garbage + b"\r\n" + part(ALERT)
    parser = MultipartParser("boundary", max_part_size=64 * 1024)
    try:
        parts = feed_in_pieces(parser, data, [c for c in cuts if c <= len(data)])
    except ProtocolError:
        return
    # Garbage may open a part of its own (a delimiter and headers) that the good part's
    # bytes then end up inside; either way the good part's bytes are the last thing found.
    assert parts, "the good part after a fresh delimiter line was lost"
    assert ALERT in parts[-1].body
