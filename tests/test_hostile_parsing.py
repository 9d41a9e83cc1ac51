"""Hostile input to the parser and decoder costs only its sender: linear time whatever the
feed pattern, bounded bytes and time per part, numbers in range, clean refusals.

Linearity is checked as a ratio (the cost of a 10x input over a 1x input, best of a few
runs), never as an absolute time: linear work gives about 10, quadratic about 100.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hik2mqtt import numbers
from hik2mqtt.errors import DecodeError, ProtocolError
from hik2mqtt.events import (
    MAX_PICTURES_PER_READ,
    MAX_TEXT,
    PICTURE_KIND_NAMES,
    Event,
    OtherEvent,
    PictureInfo,
    PlateRead,
    decode,
    decode_plates,
    parse_xml,
    picture_kind,
)
from hik2mqtt.multipart import MultipartParser, Part, header_params
from hik2mqtt.reads import (
    Dropped,
    PictureArrived,
    ReadArrived,
    ReadAssembler,
    Skipped,
    unique_kinds,
)
from tests import strategies as hs

XML_HEAD = b"--boundary\r\nContent-Type: application/xml\r\n\r\n"
JSON_HEAD = b"--boundary\r\nContent-Type: application/json\r\n\r\n"
JPEG_HEAD = b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n"
ALERT = (
    b"<EventNotificationAlert><eventType>videoloss</eventType>"
    b"<eventState>inactive</eventState></EventNotificationAlert>"
)
LINEAR = 30.0  # ratio bound for 10x the input: linear is ~10, quadratic ~100


def cost(run: Callable[[], object], repeat: int = 5) -> float:
    """The best of a few timings of ``run`` (the least disturbed by other work), in this
    thread's CPU time: time spent waiting for a core that other processes hold is not
    counted, so a busy machine does not pass for a quadratic scan."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        run()
        best = min(best, time.thread_time() - start)
    return best


def growth(make: Callable[[int], Callable[[], object]], n: int) -> float:
    """How much more a 10x input costs than a 1x input."""
    return cost(make(10 * n)) / cost(make(n))


def feed_bytewise(parser: MultipartParser, data: bytes) -> list[Part]:
    parts: list[Part] = []
    for i in range(len(data)):
        parts += parser.feed(data[i : i + 1])
    return parts


def slow_feed(head: bytes, unit: bytes, tail: bytes = b"") -> Callable[[int], Callable[[], object]]:
    """A run that feeds ``head + unit * n + tail`` one byte at a time to a fresh parser."""

    def make(n: int) -> Callable[[], object]:
        data = head + unit * n + tail

        def run() -> object:
            parser = MultipartParser("boundary", max_part_size=1 << 30)
            try:
                return feed_bytewise(parser, data)
            except ProtocolError as exc:  # a header block over its limit, say
                return exc

        return run

    return make


def test_the_issues_attack_is_linear_and_the_stream_goes_on() -> None:
    """The issue's exact attack (an XML part without length, then 1,400 `<`), fed one byte
    at a time: 10x the `<` cost about 10x the work, and the next part still comes out."""
    assert growth(slow_feed(XML_HEAD, b"<"), 1_400) < LINEAR
    parser = MultipartParser("boundary")
    attack = XML_HEAD + b"<" * 1_400
    assert feed_bytewise(parser, attack) == []
    good = b"\r\n--boundary\r\nContent-Type: application/xml\r\n\r\n" + ALERT
    parts = feed_bytewise(parser, good)
    assert [p.body for p in parts] == [b"<" * 1_400, ALERT]


SLOW_FEED_ATTACKS = {
    # XML framing: every state of the end-of-root scanner, left open or repeated
    "xml-lt": (XML_HEAD, b"<", b""),
    "xml-open-tags": (XML_HEAD, b"<a ", b""),
    "xml-nested": (XML_HEAD, b"<a>", b""),
    "xml-attribute": (XML_HEAD + b"<a ", b'b="x" ', b""),
    "xml-open-quote": (XML_HEAD + b'<a b="', b"'>", b""),
    "xml-quotes": (XML_HEAD, b'<a "', b""),
    "xml-comment-start": (XML_HEAD, b"<!-", b""),
    "xml-open-comment": (XML_HEAD + b"<!--", b"-", b""),
    "xml-open-cdata": (XML_HEAD + b"<![CDATA[", b"]", b""),
    "xml-open-pi": (XML_HEAD + b"<?", b"?", b""),
    "xml-open-doctype": (XML_HEAD + b"<!DOCTYPE", b"<!", b""),
    "xml-end-tags": (XML_HEAD + b"<a>", b"</", b""),
    "xml-white-space": (XML_HEAD, b" ", b""),
    "xml-text": (XML_HEAD + b"<a>", b"x", b""),
    # JSON framing
    "json-open-objects": (JSON_HEAD, b"{", b""),
    "json-escapes": (JSON_HEAD + b'{"', b"\\\\", b""),
    "json-strings": (JSON_HEAD + b"{", b'"a":', b""),
    # delimiter framing: near-delimiters in a picture without length
    "picture-near-delimiters": (JPEG_HEAD, b"\r\n--boundar", b""),
    "picture-bytes": (JPEG_HEAD, b"\xff", b""),
    # headers: a long line, many spaces in a value, many lines
    "header-long-line": (b"--boundary\r\n", b"x", b""),
    "header-spaces-in-value": (b"--boundary\r\na:", b" ", b"x\r\n"),
    "header-lines": (b"--boundary\r\n", b"a:\n", b""),
    "header-name-without-colon": (b"--boundary\r\n", b"a", b"\r\n"),
    # preamble: garbage without a newline, many lines, near-delimiter lines
    "preamble-no-newline": (b"", b"\x00", b""),
    "preamble-lines": (b"", b"x\n", b""),
    "preamble-near-delimiters": (b"", b"--boundar\n", b""),
    "stray-delimiter-lines": (b"", b"--boundary\r\n", b""),
}


@pytest.mark.parametrize("attack", list(SLOW_FEED_ATTACKS), ids=list(SLOW_FEED_ATTACKS))
def test_every_scan_is_linear_under_one_byte_feeds(attack: str) -> None:
    """Each pathological pattern, in every framing and state, fed one byte at a time:
    10x the input costs about 10x, never 100x."""
    head, unit, tail = SLOW_FEED_ATTACKS[attack]
    assert growth(slow_feed(head, unit, tail), 1_500) < LINEAR


@pytest.mark.parametrize(
    "unit",
    ["a=", " =", "a =", 'a="', "a=b;", "=", 'a="b" ', "a" * 20 + " "],
    ids=["names", "spaces", "spaced", "open-quotes", "params", "equals", "quoted", "no-equals"],
)
def test_header_params_are_linear(unit: str) -> None:
    """Reading a header's parameters (boundary, file names) is linear in its length."""

    def make(n: int) -> Callable[[], object]:
        value = unit * n + "=x"
        return lambda: header_params(value)

    assert growth(make, 5_000) < LINEAR


def test_json_scan_of_a_big_document_is_linear_in_any_pieces() -> None:
    """A large JSON part without length, in 7-byte pieces, costs linear time."""

    def make(n: int) -> Callable[[], object]:
        data = JSON_HEAD + b'{"eventType": "x", "a": [' + b'{"b": "}\\"{"},' * n + b"1]}"

        def run() -> object:
            parser = MultipartParser("boundary", max_part_size=1 << 30)
            return [parser.feed(data[i : i + 7]) for i in range(0, len(data), 7)]

        return run

    assert growth(make, 1_000) < LINEAR


# -- slow feed: every framing gives the same parts one byte at a time --------------------

FRAMINGS = {
    "content-length": (
        b"--boundary\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s\r\n"
        % (len(ALERT), ALERT),
        [ALERT],
    ),
    "xml-root": (XML_HEAD + ALERT + b"\r\n", [ALERT]),
    "xml-with-everything": (
        XML_HEAD
        + b'<?xml version="1.0"?><!-- a <comment> --><r a=\'>\' b=">"><x/><![CDATA[</r>]]>'
        + b"<?pi </r>?></r>",
        [
            b'<?xml version="1.0"?><!-- a <comment> --><r a=\'>\' b=">"><x/><![CDATA[</r>]]>'
            b"<?pi </r>?></r>"
        ],
    ),
    "json-object": (JSON_HEAD + b'{"eventType": "x", "s": "}\\"{"}', [b'{"eventType": "x", "s": "}\\"{"}']),
    "delimiter": (JPEG_HEAD + b"\xff\xd8\r\n--boundaryX\xff\xd9\r\n--boundary\r\n", [b"\xff\xd8\r\n--boundaryX\xff\xd9"]),
    "no-blank-line": (b"--boundary\r\nContent-Type: application/xml\r\n" + ALERT + b"\r\n", [ALERT]),
    "lf-only": (b"--boundary\nContent-Type: application/xml\n\n" + ALERT + b"\n", [ALERT]),
}  # fmt: skip


@pytest.mark.parametrize("framing", list(FRAMINGS), ids=list(FRAMINGS))
def test_slow_feed_of_each_framing(framing: str) -> None:
    """One byte per feed gives the same parts as one feed, for each way a part is framed."""
    data, expected = FRAMINGS[framing]
    assert [p.body for p in MultipartParser("boundary").feed(data)] == expected
    assert [p.body for p in feed_bytewise(MultipartParser("boundary"), data)] == expected


def test_xml_end_scan_ignores_markup_in_comments_cdata_pis_and_quotes() -> None:
    """`>` and `</root>` inside comments, CDATA, processing instructions and quoted attribute
    values do not end the root element early."""
    body = FRAMINGS["xml-with-everything"][1][0]
    parser = MultipartParser("boundary")
    assert parser.feed(XML_HEAD + body[:-1]) == []
    assert [p.body for p in parser.feed(body[-1:])] == [body]


_NAMES = st.sampled_from(["a", "b", "hik:c", "EventNotificationAlert", "x-y.z"])
_ATTR_TEXT = st.text(alphabet="ab />=&;'\"", max_size=8)
_MISC = st.sampled_from(
    ["", "text", "<!-- </a> > -->", "<![CDATA[ </a> <b> ]]>", "<?pi </a> ?>", " & ", "\n"]
)


@st.composite
def xml_documents(draw: st.DrawFn, depth: int = 3) -> bytes:
    """A well-formed element with attributes (quoted either way, holding `>` and `/`),
    comments, CDATA, processing instructions and children."""
    name = draw(_NAMES)
    attrs = ""
    for key in draw(st.lists(st.sampled_from(["k", "l", "m"]), unique=True, max_size=3)):
        quote = draw(st.sampled_from(["'", '"']))
        value = draw(_ATTR_TEXT).replace(quote, "").replace("&", "&amp;").replace("<", "")
        attrs += f" {key}={quote}{value}{quote}"
    space = draw(st.sampled_from(["", " ", "\n"]))
    if depth == 0 or draw(st.booleans()):
        if draw(st.booleans()):
            return f"<{name}{attrs}{space}/>".encode()
        return f"<{name}{attrs}{space}>{draw(_MISC).replace('&', '&amp;')}</{name}>".encode()
    inner = b"".join(
        draw(st.lists(st.one_of(xml_documents(depth - 1), _MISC.map(str.encode)), max_size=4))
    )
    return f"<{name}{attrs}{space}>".encode() + inner + f"</{name}{space}>".encode()


@settings(max_examples=300, deadline=None)
@given(
    xml_documents(), st.sampled_from([b"", b'<?xml version="1.0"?>\n', b"<!-- c -->"]), st.data()
)
def test_xml_end_scan_finds_the_end_of_any_well_formed_document(
    doc: bytes, prolog: bytes, data: st.DataObject
) -> None:
    """For any well-formed document (attributes holding `>` and `/`, comments, CDATA, PIs
    holding end tags), in any split, the part ends exactly where its root element closes."""
    body = prolog + doc.replace(b"hik:c", b"c")
    parser = MultipartParser("boundary")
    stream = XML_HEAD + body + b"\r\n--boundary\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    parts: list[Part] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        parts += parser.feed(stream[start:end])
    assert [p.body for p in parts] == [body]
    assert parser.feed(b"") == []


# -- bounded in bytes and in time ----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "head",
    [
        XML_HEAD + b"<a>",
        JSON_HEAD + b"{",
        JPEG_HEAD,
        b"--boundary\r\nContent-Type: x",
        b"--boundary\r\nContent-Length: 100\r\n\r\nabc",
    ],
    ids=["xml", "json", "delimiter", "headers", "content-length"],
)
def test_a_part_that_never_completes_breaks_the_stream_after_its_deadline(head: bytes) -> None:
    """A part still incomplete `max_part_seconds` after its delimiter line raises
    ProtocolError on the next bytes (the caller reopens the stream), whatever its framing."""
    clock = FakeClock()
    parser = MultipartParser("boundary", clock=clock, max_part_seconds=60)
    assert parser.feed(head) == []
    clock.now += 59
    assert parser.feed(b" ") == []
    clock.now += 2
    with pytest.raises(ProtocolError, match="incomplete 61 s"):
        parser.feed(b" ")
    with pytest.raises(ProtocolError):
        parser.feed(b"more")


def test_check_deadline_on_a_quiet_stream() -> None:
    """check_deadline() lets a caller whose stream went quiet break a part that is late."""
    clock = FakeClock()
    parser = MultipartParser("boundary", clock=clock, max_part_seconds=5)
    parser.feed(XML_HEAD + b"<a>")
    parser.check_deadline()
    with pytest.raises(ProtocolError, match="limit 5 s"):
        parser.check_deadline(clock.now + 6)


def test_the_deadline_is_per_part_and_idle_time_between_parts_is_free() -> None:
    """Complete parts reset the clock; waiting between parts (even for hours), and a
    delimiter line whose end is still to come, never count; None turns the bound off."""
    clock = FakeClock()
    parser = MultipartParser("boundary", clock=clock, max_part_seconds=60)
    for _ in range(3):
        assert [p.body for p in parser.feed(XML_HEAD + ALERT + b"\r\n")] == [ALERT]
        clock.now += 3600
        assert parser.feed(b"--bound") == []
        clock.now += 3600
        parser.check_deadline()
        assert parser.feed(b"ary\r\n") == []
        assert parser.feed(b"Content-Type: application/xml\r\n\r\n" + ALERT) == [
            Part(headers={"content-type": "application/xml"}, body=ALERT)
        ]
        clock.now += 3600
        parser.feed(b"\r\n")
    parser = MultipartParser("boundary", clock=clock, max_part_seconds=None)
    parser.feed(XML_HEAD + b"<a>")
    clock.now += 10**9
    assert parser.feed(b"</a>") == [Part({"content-type": "application/xml"}, b"<a></a>")]


def test_garbage_lines_between_parts_are_bounded() -> None:
    """Lines of garbage that never hold a delimiter count towards max_part_size."""
    parser = MultipartParser("boundary", max_part_size=4096)
    fed, refusal = 0, ""
    while fed < 10_000 and not refusal:
        try:
            parser.feed(b"garbage line\r\n")
        except ProtocolError as exc:
            refusal = str(exc)
        fed += 14
    assert 4096 < fed < 5_000  # (line endings are not counted)
    assert "no delimiter" in refusal


# -- numbers -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.hostile_numbers())
def test_any_content_length_is_a_length_in_range_or_absent_or_a_protocol_error(
    value: str,
) -> None:
    """A Content-Length in ASCII digits within the limit frames the part; digits over the
    limit break the stream with ProtocolError; anything else (Unicode digits, signs,
    exponents, underscores, odd spaces) is treated as absent: never another exception."""
    header = value.encode("utf-8", "surrogatepass").replace(b"\n", b"").replace(b"\r", b"")
    data = (
        b"--boundary\r\nContent-Type: image/jpeg\r\nContent-Length: " + header + b"\r\n\r\nAB"
        b"\r\n--boundary\r\nContent-Type: application/xml\r\n\r\n" + ALERT
    )
    parser = MultipartParser("boundary", max_part_size=1000)
    text = header.strip(b" \t").decode("latin-1")
    if text.isascii() and text.isdigit() and (len(text) > 20 or int(text) > 1000):
        with pytest.raises(ProtocolError, match="over the limit"):
            parser.feed(data)
        return
    parts = parser.feed(data)
    expected = numbers.read_number(header.decode("latin-1"), (0, 1000))
    if expected is None:  # absent: framed by the next delimiter
        assert [p.body for p in parts] == [b"AB", ALERT]
    elif expected <= 2:
        assert parts[0].body == b"AB"[:expected]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\u00b2", "absent"),
        ("\u0663", "absent"),
        ("+2", "absent"),
        ("-2", "absent"),
        ("2e0", "absent"),
        ("1_0", "absent"),
        (" 2 ", "length"),
        ("9" * 5000, "error"),
        ("99999999999999999999999", "error"),
    ],
)
def test_content_length_examples(value: str, expected: str) -> None:
    """`²`, `٣`, signs, exponents and underscores are no length; 5,000 digits are a length
    over the limit (ProtocolError, not ValueError); ` 2 ` is 2."""
    data = (
        b"--boundary\r\nContent-Length: " + value.encode("latin-1", "replace") + b"\r\n\r\nAB"
        b"\r\n--boundary\r\n\r\n"
    )
    parser = MultipartParser("boundary")
    if expected == "error":
        with pytest.raises(ProtocolError, match="over the limit"):
            parser.feed(data)
        return
    assert [p.body for p in parser.feed(data)] == [b"AB"]


# -- the decoder: every field, hostile values, clean refusals ------------------------------


def check_event(event: Event) -> None:
    """What the decoder hands on is safe to publish and to compute with."""
    doc = dataclasses.asdict(event)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # no lone surrogate
    for value in _strings(doc):
        assert len(value) <= MAX_TEXT
        assert value == value.strip()
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value), value
    if isinstance(event, PlateRead | OtherEvent):
        assert event.channel is None or numbers.CHANNEL[0] <= event.channel <= numbers.CHANNEL[1]
        _check_time(event.time)
    if isinstance(event, PlateRead):
        assert event.confidence is None or 0 <= event.confidence <= 100
        assert event.lane is None or numbers.LANE[0] <= event.lane <= numbers.LANE[1]
        assert len(event.pictures) <= MAX_PICTURES_PER_READ
        assert all(p.kind in PICTURE_KIND_NAMES for p in event.pictures)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _check_time(text: str | None) -> None:
    """A time the bridge can compute a read's age from (as payloads.read_age does), or
    text that is not ISO 8601 at all, or None."""
    if text is None:
        return
    try:
        taken = datetime.fromisoformat(text)
    except ValueError:
        return
    if taken.tzinfo is None:
        taken = taken.astimezone()
    assert (datetime.now(UTC) - taken).total_seconds() is not None


def decode_or_refuse(body: bytes, content_type: str = "") -> Event | None:
    try:
        event = decode(body, content_type)
    except DecodeError:
        return None
    check_event(event)
    return event


ALL_XML_FIELDS = hs.ALERT_FIELDS + hs.ANPR_FIELDS + hs.VEHICLE_FIELDS + hs.PICTURE_FIELDS


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ALL_XML_FIELDS), st.one_of(hs.hostile_text(), hs.hostile_numbers()))
def test_any_value_in_any_xml_field_decodes_safely_or_is_refused(field: str, value: str) -> None:
    """Whatever text a camera puts in any field the decoder reads, decode() returns an
    event that is safe to publish (text cleaned and capped, numbers in range, a time the
    bridge can compute with) or raises DecodeError."""
    text = hs.xml_safe(value)
    where = "alert" if field in hs.ALERT_FIELDS else "anpr"
    decode_or_refuse(hs.anpr_xml(**{where: {field: text}}))  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(hs.ALERT_FIELDS + hs.ANPR_FIELDS),
    st.one_of(hs.hostile_text(), hs.hostile_json_numbers()),
)
def test_any_value_in_any_json_field_decodes_safely_or_is_refused(field: str, value: Any) -> None:
    """The same for JSON events, with any JSON value (lone surrogate escapes, huge ints,
    floats, booleans, lists) in any field."""
    where = "alert" if field in hs.ALERT_FIELDS else "anpr"
    decode_or_refuse(hs.anpr_json(**{where: {field: value}}), "application/json")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(hs.PLATE_FIELDS), st.one_of(hs.hostile_text(), hs.hostile_numbers()))
def test_any_value_in_a_plate_list_decodes_safely_or_is_refused(field: str, value: str) -> None:
    """Plate-list entries (poll mode) with hostile fields: kept safe, skipped, or refused."""
    try:
        entries = decode_plates(hs.plates_xml({field: hs.xml_safe(value)}))
    except DecodeError:
        return
    for entry in entries:
        assert numbers.read_number(entry.pic_name, numbers.PIC_NAME) is not None
        check_event(entry.read)


@settings(max_examples=300, deadline=None)
@given(hs.pathological_xml())
def test_pathological_xml_is_refused_cleanly(body: bytes) -> None:
    """Deep nesting, runs of markup, unterminated constructs, DTDs, bad UTF-8 and forbidden
    characters give DecodeError (or an event), never another exception; and the stream
    parser frames them in linear time without raising anything but ProtocolError."""
    decode_or_refuse(body)
    parser = MultipartParser("boundary")
    with contextlib.suppress(ProtocolError):
        parser.feed(XML_HEAD + body + b"\r\n--boundary\r\n")


@settings(max_examples=300, deadline=None)
@given(hs.pathological_json())
def test_pathological_json_is_refused_cleanly(body: bytes) -> None:
    """Deep nesting, unterminated strings, 5,000-digit numbers, NaN, lone surrogates and
    UTF-16/32 give DecodeError (or a safe event), never another exception."""
    decode_or_refuse(body, "application/json")
    decode_or_refuse(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
        (b'{"eventType": "x", "channelID": ' + b"9" * 5000 + b"}", "invalid JSON"),
        (b'{"eventType": NaN}', "invalid JSON"),
        ('{"eventType": "x"}'.encode("utf-16"), "not UTF-8"),
        (b"<a>" * 200_000, "over the limit|more than"),
        (b"<EventNotificationAlert>" + b"<a>" * 40 + b"</a>" * 40 + b"</x>", "invalid XML"),
        (b"<a>" * 40 + b"x" + b"</a>" * 40, "deeper than"),
        (b"<EventNotificationAlert>&#xD800;</EventNotificationAlert>", "invalid XML"),
        (b"<EventNotificationAlert>\xed\xa0\x80</EventNotificationAlert>", "invalid XML"),
        (b'<?xml version="1.0" encoding="UTF-16"?><a/>', "invalid XML"),
        (b"x" * (2 * 1024 * 1024), "over the limit"),
    ],
    ids=[
        "json-deep",
        "json-5000-digits",
        "json-nan",
        "json-utf16",
        "xml-many-tags",
        "xml-mismatched",
        "xml-deep",
        "xml-surrogate-reference",
        "xml-encoded-surrogate",
        "xml-declared-utf16",
        "too-big",
    ],
)
def test_clean_refusals(body: bytes, reason: str) -> None:
    """Each class of bad document is a DecodeError with a reason, not a traceback."""
    ctype = "application/json" if reason in ("invalid JSON", "not UTF-8") else ""
    with pytest.raises(DecodeError, match=reason):
        decode(body, ctype)


def test_a_lone_surrogate_or_control_characters_in_a_json_plate_are_cleaned() -> None:
    """`\\ud800` decodes in Python's json but can't be encoded later; it (and control
    characters, ANSI escapes) become U+FFFD, line breaks spaces: the read is published."""
    body = hs.anpr_json(anpr={"licensePlate": "AB\ud80012\x1b[31m\nX", "direction": "\udfff"})
    read = decode(body, "application/json")
    assert isinstance(read, PlateRead)
    assert read.plate == "AB\ufffd12\ufffd[31m X"
    assert read.direction == "\ufffd"
    check_event(read)


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("0001-01-01T00:00:00", None),
        ("0001-01-01T00:00:00+01:00", None),
        ("1969-12-31T23:59:59+00:00", None),
        ("9999-12-31T23:59:59-01:00", None),
        ("+99999-01-01T00:00:00", "+99999-01-01T00:00:00"),  # not ISO 8601: kept as text
        ("2025-03-01T08:15:30+01:00", "2025-03-01T08:15:30+01:00"),
    ],
)
def test_times_outside_sane_years_are_absent(time: str, expected: str | None) -> None:
    """A read in year 1 or 9999 (which overflow when the bridge computes its age) has no
    time instead of a traceback."""
    read = decode(hs.anpr_xml(alert={"dateTime": time}))
    assert isinstance(read, PlateRead)
    assert read.time == expected
    check_event(read)


@pytest.mark.parametrize("capture", ["00010101T000000+0000", "99991231T235959-0100"])
def test_plate_list_times_outside_sane_years_are_absent(capture: str) -> None:
    """The same for poll mode's captureTime."""
    (entry,) = decode_plates(hs.plates_xml({"captureTime": capture}))
    assert entry.read.time is None


def test_long_text_is_capped() -> None:
    """A 100 kB plate is cut to MAX_TEXT characters."""
    read = decode(hs.anpr_xml(anpr={"licensePlate": "A" * 100_000}))
    assert isinstance(read, PlateRead)
    assert read.plate == "A" * MAX_TEXT


def test_parse_xml_refuses_documents_over_the_limits() -> None:
    """ISAPI answers (status, plate lists) get the same bounds as events."""
    with pytest.raises(DecodeError, match="more than"):
        parse_xml(b"<r>" + b"<a/>" * 100_001 + b"</r>")
    assert parse_xml(b"<r>" + b"<a>1</a>" * 1000 + b"</r>")[1]["a"][999] == "1"


# -- pictures: bounded per read, bounded kinds, linear ------------------------------------


def test_a_read_announcing_3000_pictures_keeps_16_and_drops_the_rest_with_one_reason() -> None:
    """The read that kept a camera busy 38 s: 3,000 announced pictures and 3,000 picture
    parts give 16 pictures, one Skipped reason for the rest, and Dropped (not logged)."""
    body = hs.anpr_xml(pictures=3000)
    assembler = ReadAssembler()
    read = assembler.handle(Part({"content-type": "application/xml"}, body))
    assert isinstance(read, ReadArrived)
    assert len(read.read.pictures) == MAX_PICTURES_PER_READ
    assert read.kinds[:3] == ("plate", "plate_2", "plate_3")
    outputs = [
        assembler.handle(Part({"content-type": "image/jpeg", "content-id": f"p{i}.jpg"}, b"J"))
        for i in range(3000)
    ]
    kinds = [o.kind for o in outputs if isinstance(o, PictureArrived)]
    assert kinds == list(read.kinds)
    skipped = [o for o in outputs if isinstance(o, Skipped)]
    assert len(skipped) == 1
    assert "past 16" in skipped[0].reason
    assert sum(isinstance(o, Dropped) for o in outputs) == 3000 - 16 - 1


def test_unique_kinds_is_linear() -> None:
    """Numbering kinds costs linear time in the number of pictures (it was cubic)."""

    def make(n: int) -> Callable[[], object]:
        pictures = tuple(PictureInfo("a.jpg", "licensePlatePicture") for _ in range(n))
        return lambda: unique_kinds(pictures)

    assert growth(make, 2_000) < LINEAR
    assert unique_kinds((PictureInfo(None, "x"),) * 3) == ("picture", "picture_2", "picture_3")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(hs.hostile_text(max_size=40), st.none()), max_size=40),
    st.lists(st.one_of(hs.hostile_text(max_size=40), st.none()), max_size=40),
)
def test_picture_kinds_come_from_a_bounded_set(
    announced: list[str | None], parts: list[str | None]
) -> None:
    """Whatever names a camera gives its pictures (announced or not), each read publishes
    at most 16 pictures, under kinds from {plate, vehicle, scene, picture} numbered up to
    _16: a camera can't create unbounded image topics."""
    allowed = {
        f"{base}_{n}" if n > 1 else base
        for base in PICTURE_KIND_NAMES
        for n in range(1, MAX_PICTURES_PER_READ + 1)
    }
    entries = "".join(
        f"<pictureInfo><type>{hs.xml_safe(name or '')}</type></pictureInfo>" for name in announced
    )
    body = (
        "<EventNotificationAlert><eventType>ANPR</eventType><ANPR><licensePlate>X</licensePlate>"
        f"<pictureInfoList>{entries}</pictureInfoList></ANPR></EventNotificationAlert>"
    ).encode()
    assembler = ReadAssembler()
    read = assembler.handle(Part({"content-type": "application/xml"}, body))
    assert isinstance(read, ReadArrived)
    published = [
        out.kind
        for name in parts
        if isinstance(
            out := assembler.handle(
                Part({"content-type": "image/jpeg", "content-id": name} if name else {}, b"J")
            ),
            PictureArrived,
        )
    ]
    assert set(read.kinds) <= allowed
    assert set(published) <= allowed
    assert len(published) <= MAX_PICTURES_PER_READ
    assert len(set(published)) == len(published)  # one picture per kind per read
    assert all(picture_kind(name) in PICTURE_KIND_NAMES for name in announced + parts)
