"""Hypothesis strategies for hostile camera input, for any test that reads camera bytes.

- :func:`hostile_numbers`: what a camera might send where a number belongs (Unicode
  digits, 5,000-digit strings, signs, exponents, underscores, odd white space, JSON
  numbers of every size and type).
- :func:`hostile_text`: text with control characters, lone surrogates, markup, line
  separators, and very long runs.
- :func:`pathological_xml` / :func:`pathological_json`: documents built to make a
  scanner or parser backtrack, recurse, or allocate (deep nesting, unterminated
  constructs, runs of ``<``, DTDs, huge numbers, lone surrogates).
- :func:`anpr_xml` / :func:`anpr_json` / :func:`plates_xml`: a well-formed ANPR alert
  or plate list with one field replaced by hostile content.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape

from hypothesis import strategies as st

# Characters str.isdigit() accepts and int() refuses, or int() accepts but aren't ASCII.
UNICODE_DIGITS = ["²", "³", "¹", "٣", "۳", "१", "１", "𝟘", "৩", "೬", "๓", "⁵", "₇", "①"]
ODD_SPACE = ["\u00a0", "\u2003", "\u3000", "\x0b", "\x0c", "\x1c", "\u2028", "\x85"]

# Every text field the event decoder reads, by where it sits in an ANPR alert.
ALERT_FIELDS = [
    "channelID",
    "dynChannelID",
    "dateTime",
    "eventType",
    "eventState",
    "eventDescription",
    "UUID",
    "isDataRetransmission",
]
ANPR_FIELDS = [
    "licensePlate",
    "confidenceLevel",
    "line",
    "direction",
    "country",
    "countryAbbreviation",
    "plateColor",
    "vehicleType",
    "vehicleListName",
    "listType",
]
VEHICLE_FIELDS = ["color", "vehicleLogoRecog"]
PICTURE_FIELDS = ["fileName", "type"]
PLATE_FIELDS = [
    "picName",
    "captureTime",
    "plateNumber",
    "laneNo",
    "direction",
    "country",
    "matchingResult",
]
NUMBER_FIELDS = {"channelID", "dynChannelID", "confidenceLevel", "line", "laneNo", "picName"}
TIME_FIELDS = {"dateTime", "captureTime"}


def hostile_numbers() -> st.SearchStrategy[str]:
    """Strings where a number belongs: valid, out of range, or not ASCII digits at all."""
    digits = st.text("0123456789", min_size=1, max_size=30)
    return st.one_of(
        digits,
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.sampled_from(UNICODE_DIGITS),
        st.lists(st.sampled_from(UNICODE_DIGITS + list("0123456789")), min_size=1, max_size=8).map(
            "".join
        ),
        st.integers(min_value=4_000, max_value=6_000).map(lambda n: "9" * n),
        st.integers(min_value=19, max_value=30).map(lambda n: "1" + "0" * n),
        st.tuples(st.sampled_from(["+", "-", "--", "+-"]), digits).map("".join),
        st.tuples(digits, st.sampled_from(["e3", "E999", "e-5", ".5", ".", "_000", "j"])).map(
            "".join
        ),
        st.sampled_from(["1_000", "0x10", "0o7", "0b1", "NaN", "inf", "-0", "", " ", "1 2"]),
        st.tuples(st.sampled_from([*ODD_SPACE, " ", "\t", "\n"]), digits).map("".join),
        st.tuples(digits, st.sampled_from([*ODD_SPACE, "\x00"])).map("".join),
        st.tuples(st.sampled_from(["0" * 25, "0" * 5000]), digits).map("".join),
    )


def hostile_json_numbers() -> st.SearchStrategy[Any]:
    """JSON values where a number belongs: ints of any size, floats, bools, strings."""
    return st.one_of(
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
        hostile_numbers(),
        st.lists(st.integers(), max_size=2),
    )


def hostile_text(max_size: int = 300) -> st.SearchStrategy[str]:
    """Text with control characters, lone surrogates, markup and separators."""
    any_char = st.characters(codec=None, categories=None)  # includes lone surrogates
    return st.one_of(
        st.text(any_char, max_size=max_size),
        st.lists(
            st.sampled_from(["\x00", "\x1b[31m", "\n", "\r", "\ud800", "\udfff", "\u2028", "A"]),
            max_size=20,
        ).map("".join),
        st.tuples(st.text(max_size=20), st.sampled_from(["\n", "\x1b", "\ud83d", "\x7f"])).map(
            "".join
        ),
        st.integers(min_value=300, max_value=5_000).map(lambda n: "A" * n),
        hostile_numbers(),
        st.sampled_from(["]]>", "<", "&amp;", "-->", "unknown", "无车牌", " ", "\t\t"]),
    )


def xml_safe(text: str) -> str:
    """Text that expat accepts inside an element: XML-escaped, without the characters
    XML 1.0 forbids (those are tested as raw bytes elsewhere)."""
    allowed = (
        ch
        for ch in text
        if ch in "\t\n\r"
        or (" " <= ch <= "\ud7ff")
        or ("\ue000" <= ch <= "\ufffd")
        or ch >= "\U00010000"
    )
    return escape("".join(allowed))


def anpr_xml(
    *, alert: dict[str, str] | None = None, anpr: dict[str, str] | None = None, pictures: int = 2
) -> bytes:
    """An ANPR alert; ``alert``/``anpr`` override fields with raw (already escaped) text."""
    alert_fields = {
        "channelID": "1",
        "dateTime": "2025-03-01T08:15:30+01:00",
        "eventType": "ANPR",
        "eventState": "active",
        "UUID": "u-1",
        **(alert or {}),
    }
    anpr_fields = {"licensePlate": "AB12CDE", "confidenceLevel": "90", "line": "1"}
    anpr_fields.update(anpr or {})
    vehicle = "".join(
        f"<{k}>{anpr_fields.pop(k)}</{k}>" for k in VEHICLE_FIELDS if k in anpr_fields
    )
    picture_overrides = {k: anpr_fields.pop(k) for k in PICTURE_FIELDS if k in anpr_fields}
    infos = "".join(
        "<pictureInfo>"
        + f"<fileName>{picture_overrides.get('fileName', f'p{i}.jpg')}</fileName>"
        + f"<type>{picture_overrides.get('type', 'licensePlatePicture')}</type>"
        + "</pictureInfo>"
        for i in range(pictures)
    )
    head = "".join(f"<{k}>{v}</{k}>" for k, v in alert_fields.items())
    body = "".join(f"<{k}>{v}</{k}>" for k, v in anpr_fields.items())
    return (
        '<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">'
        f"{head}<ANPR>{body}<vehicleInfo>{vehicle}</vehicleInfo>"
        f"<pictureInfoList>{infos}</pictureInfoList></ANPR></EventNotificationAlert>"
    ).encode()


def anpr_json(*, alert: dict[str, Any] | None = None, anpr: dict[str, Any] | None = None) -> bytes:
    """An ANPR alert as JSON with fields overridden by any JSON values (lone surrogates
    are written as ``\\udXXX`` escapes, as a camera's JSON encoder would)."""
    doc: dict[str, Any] = {
        "channelID": 1,
        "dateTime": "2025-03-01T08:15:30+01:00",
        "eventType": "ANPR",
        "eventState": "active",
        **(alert or {}),
        "ANPR": {
            "licensePlate": "AB12CDE",
            "confidenceLevel": 90,
            "pictureInfoList": {"pictureInfo": [{"fileName": "p.jpg", "type": "vehiclePicture"}]},
            **(anpr or {}),
        },
    }
    return json.dumps(doc).encode()  # ensure_ascii: surrogates become escapes


def plates_xml(entry: dict[str, str]) -> bytes:
    """A ``Plates`` answer with one entry whose fields are overridden (escaped text)."""
    fields = {
        "captureTime": "20340109T094130+0400",
        "plateNumber": "A 39837",
        "picName": "203401090941300600",
        "laneNo": "1",
        **entry,
    }
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return (
        '<Plates version="2.0" xmlns="http://www.std-cgi.com/ver20/XMLSchema">'
        f"<Plate>{inner}</Plate></Plates>"
    ).encode()


def pathological_xml(max_repeat: int = 3_000) -> st.SearchStrategy[bytes]:
    """XML built to hurt a scanner or a parser: runs of one construct, deep nesting,
    unterminated comments/CDATA/PIs/quotes, DTDs, bad UTF-8, forbidden characters."""
    unit = st.sampled_from(
        [
            b"<",
            b"<a",
            b"<a ",
            b'<a b="',
            b"<a b='",
            b"<!-",
            b"<!--",
            b"-",
            b"--",
            b"<![CDATA[",
            b"]",
            b"]]",
            b"<?",
            b"?",
            b"<!",
            b"<!DOCTYPE",
            b"</",
            b"<a/>",
            b"<a>",
            b"</a>",
            b"/",
            b">",
            b'"',
            b"'",
            b" ",
            b"&",
            b"&#xD800;",
            b"&#1;",
            b"\xff",
            b"\xed\xa0\x80",
            b"\x00",
        ]
    )
    runs = st.tuples(unit, st.integers(min_value=1, max_value=max_repeat)).map(
        lambda t: t[0] * t[1]
    )
    return st.one_of(
        runs,
        st.lists(runs, min_size=1, max_size=4).map(b"".join),
        st.lists(unit, max_size=200).map(b"".join),
        st.integers(min_value=1, max_value=max_repeat).map(lambda n: b"<a>" * n + b"</a>" * n),
    )


def pathological_json(max_repeat: int = 3_000) -> st.SearchStrategy[bytes]:
    """JSON built to hurt: deep nesting, unterminated strings/escapes, huge numbers,
    NaN, lone surrogate escapes, other encodings."""
    return st.one_of(
        st.integers(min_value=1, max_value=max_repeat).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=1, max_value=max_repeat).map(
            lambda n: b'{"a":' * n + b"1" + b"}" * n
        ),
        st.integers(min_value=1, max_value=max_repeat).map(lambda n: b"{" + b'"\\' * n),
        st.integers(min_value=1, max_value=max_repeat).map(lambda n: b'{"' + b"\\\\" * n),
        st.integers(min_value=4_000, max_value=6_000).map(
            lambda n: b'{"eventType": "x", "channelID": ' + b"9" * n + b"}"
        ),
        st.sampled_from(
            [
                b'{"eventType": NaN}',
                b'{"eventType": "ANPR", "ANPR": {"licensePlate": "\\ud800"}}',
                b'{"eventType": "\\udfff"}',
                b'{"eventType": 1e999999}',
                '{"eventType": "x"}'.encode("utf-16"),
                '{"eventType": "x"}'.encode("utf-32"),
                b'\xef\xbb\xbf{"eventType": "x"}',
                b'{"eventType": "x", "eventType": {"a": 1}}',
                b"{}",
                b"[]",
                b'"x"',
                b"1",
            ]
        ),
    )
