"""An I/O-free parser for the endless ``multipart/mixed`` body of a Hikvision event stream.

It is fed bytes (``receive_data``) and hands back complete parts (``next_part``), or
``None`` when it needs more data, in the manner of h11's ``Connection.receive_data`` /
``next_event``. It never reads a socket and never waits: **a part is returned by the
call that delivers its last byte.**

Framing, in order of preference:

* ``Content-Length``: the body is exactly that many bytes, copied out once and never
  scanned, so a picture may contain anything, even the delimiter line.
* no ``Content-Length`` and an XML body: complete when its root element closes
  (tags are counted; nothing waits for the next delimiter).
* no ``Content-Length`` and a JSON body: complete when its outer object closes.
* anything else (a picture without a length): ends at the next delimiter line.

What real cameras send (see ``shared/samples/alertstream-*``): the boundary token varies
(``boundary``, ``MIME_boundary``, ``hikboundary``); one NVR declares ``myboundary`` and
sends ``--boundary``, so the parser falls back to ``boundary`` when the declared token is
not what the stream uses; there is never a closing delimiter; stray duplicate delimiter
lines and bytes between parts occur and are skipped; lines may end in CRLF or LF.

Memory is bounded: a part larger than ``max_part_size`` (or a header block larger than
``MAX_HEADER_BYTES``, or that much garbage without a delimiter) raises
:class:`~hik2mqtt.errors.ProtocolError` before anything that large is allocated. Time is
bounded too: a part still incomplete ``max_part_seconds`` after its delimiter line (by the
injected ``clock``) raises :class:`~hik2mqtt.errors.ProtocolError`. The stream is then
unusable; the caller drops the connection and reopens it.

Work is linear in the bytes received, whatever the feed pattern (one byte per feed
included): every scan remembers where it stopped and resumes there, and no regular
expression that can backtrack ever runs over camera bytes (the XML end-of-root scan is a
small state machine, see :class:`_XmlEnd`; searches are ``bytes.find`` or a single
character class).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, auto

from hik2mqtt.errors import ProtocolError
from hik2mqtt.numbers import read_number

DEFAULT_MAX_PART_SIZE = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
FALLBACK_BOUNDARY = "boundary"

DEFAULT_MAX_PART_SECONDS = 60.0  # a part not complete this long after its delimiter line

# Characters of an HTTP header name (an RFC 9110 token), and of a parameter name.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PARAM_NAME = frozenset("*-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
# Single character classes only: a search with one of them cannot backtrack.
_UNQUOTED_VALUE = re.compile(r"[^;\s]*")
_JSON_SPECIAL = re.compile(rb'[{}"\\]')
_NON_SPACE = re.compile(rb"\S")
_TAG_SPECIAL = re.compile(rb"[>\"']")
# The next markup in XML text: "<", an optional "/", one character that can start a name
# (or "!"/"?"), then a run up to ">" or a quote. Each part is a single character class
# with at most one way to match, so a search is linear: it cannot backtrack.
_MARKUP = re.compile(rb"<(/?)([^\s<>/])([^>\"']*)(>?)")
_DELIMITER_LINE_END = frozenset(b"\r\n- \t")  # what may follow "--boundary" on its line


@dataclass(frozen=True, slots=True)
class Part:
    """One complete part of a multipart body: its headers (names lower-cased) and body."""

    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def name(self) -> str | None:
        """The part's file name: ``Content-ID``, else Content-Disposition filename, else name."""
        cid = self.headers.get("content-id", "").strip().strip("<>").strip()
        if cid:
            return cid
        params = header_params(self.headers.get("content-disposition", ""))
        return params.get("filename") or params.get("name") or None


def header_params(value: str) -> dict[str, str]:
    """Parameters of a header value (``a; b="c";d=e``), names lower-cased.

    One pass over the value (a name is read backwards from its ``=``, never further back
    than the previous parameter), so a hostile header costs time linear in its length.
    """
    out: dict[str, str] = {}
    pos, size = 0, len(value)
    while pos < size:
        eq = value.find("=", pos)
        if eq < 0:
            break
        end = eq
        while end > pos and value[end - 1].isspace():
            end -= 1
        start = end
        while start > pos and value[start - 1] in _PARAM_NAME:
            start -= 1
        pos = eq + 1
        while pos < size and value[pos].isspace():
            pos += 1
        if start == end:  # no name before this "=": look for the next one
            continue
        if pos < size and value[pos] == '"' and (close := value.find('"', pos + 1)) >= 0:
            param, pos = value[pos + 1 : close], close + 1
        else:
            match = _UNQUOTED_VALUE.match(value, pos)
            assert match is not None
            param, pos = match.group(), match.end()
        out[value[start:end].lower()] = param
    return out


def parts_of(content_type: str, body: bytes, *, max_part_size: int) -> list[Part]:
    """A whole HTTP body's parts (an MNPR answer, a pushed event): a multipart body parsed
    like the stream (ProtocolError when it is broken), anything else as its one part."""
    if not content_type.lower().startswith("multipart/"):
        return [Part(headers={"content-type": content_type}, body=body)]
    parser = MultipartParser(boundary_from_content_type(content_type), max_part_size=max_part_size)
    parser.receive_data(body)
    return parser.end_of_stream()


def boundary_from_content_type(value: str) -> str | None:
    """The ``boundary`` parameter of a Content-Type, with or without spaces or quotes."""
    token = header_params(value).get("boundary", "").strip()
    return token or None


class _State(Enum):
    PREAMBLE = auto()  # looking for a delimiter line (start, or after a length-framed body)
    HEADERS = auto()
    BODY = auto()
    BROKEN = auto()


class _Framing(Enum):
    UNDECIDED = auto()
    LENGTH = auto()
    XML = auto()
    JSON = auto()
    DELIMITER = auto()


class _Xml(Enum):
    TEXT = auto()  # character data: look for "<"
    OPEN = auto()  # just after "<": the next byte says what the markup is
    BANG = auto()  # just after "<!": a comment, CDATA, or a declaration
    TAG = auto()  # inside a start or end tag, outside quotes
    QUOTE = auto()  # inside a quoted attribute value
    COMMENT = auto()  # inside <!-- ... -->
    CDATA = auto()  # inside <![CDATA[ ... ]]>
    PI = auto()  # inside <? ... ?>
    DECL = auto()  # inside <!DOCTYPE ...> or another declaration


_NOT_A_TAG = frozenset(b" \t\r\n<>")  # after "<": not markup, just a stray "<"
_BANG_OR_PI = frozenset(b"!?")
_ENDS = {_Xml.COMMENT: b"-->", _Xml.CDATA: b"]]>", _Xml.PI: b"?>", _Xml.DECL: b">"}


class _XmlEnd:
    """Where the root element of an XML document closes, found in one resumable pass.

    A state machine over the bytes (text, tag, quoted attribute value, comment, CDATA,
    processing instruction, declaration) that remembers its state and position between
    calls, so each byte is looked at a bounded number of times however the document
    arrives. Only the depth of elements is counted; well-formedness is the decoder's job.
    """

    __slots__ = ("closing", "depth", "pos", "quote", "state", "tag_start")

    def __init__(self, pos: int = 0) -> None:
        self.pos = pos
        self.state = _Xml.TEXT
        self.depth = 0
        self.closing = False
        self.quote = 0
        self.tag_start = 0

    def scan(self, buf: bytearray, stop: int) -> int | None:
        """The end offset of the root element if it closes before ``stop``, else None."""
        pos = self.pos
        state = self.state
        while pos < stop:
            if state is _Xml.TEXT:
                # Tags one after another, at the regex engine's speed: leaves the loop
                # at a comment/PI/declaration, a tag not complete here, or the end.
                depth = self.depth
                for match in _MARKUP.finditer(buf, pos, stop):
                    start = match.start(2)
                    if match.group(1):  # an end tag
                        pos = match.end()
                        if not match.group(4):
                            state, self.closing, self.tag_start = _Xml.TAG, True, start
                            break
                        depth -= 1
                    elif buf[start] in _BANG_OR_PI:
                        state, pos = _Xml.OPEN, start
                        break
                    else:
                        pos = match.end()
                        if not match.group(4):  # goes on: a quote, or not here yet
                            state, self.closing, self.tag_start = _Xml.TAG, False, start
                            break
                        if pos - 2 <= start or buf[pos - 2] != 0x2F:  # not "<.../>"
                            depth += 1
                    if depth <= 0:
                        self.pos, self.state, self.depth = pos, state, depth
                        return pos
                else:
                    # Keep a "<" or "</" at the very end: the next byte decides.
                    last = buf.find(b"<", max(pos, stop - 2), stop)
                    pos = stop if last < 0 else last
                    self.depth = depth
                    break
                self.depth = depth
            elif state is _Xml.OPEN:
                char = buf[pos]
                if char == 0x2F:  # "</"
                    state, self.closing, self.tag_start = _Xml.TAG, True, pos
                    pos += 1
                elif char == 0x3F:  # "<?"
                    state = _Xml.PI
                    pos += 1
                elif char == 0x21:  # "<!"
                    state = _Xml.BANG
                    pos += 1
                elif char in _NOT_A_TAG:
                    state = _Xml.TEXT
                else:
                    state, self.closing, self.tag_start = _Xml.TAG, False, pos
            elif state is _Xml.BANG:
                seen = bytes(buf[pos : min(stop, pos + 7)])
                if seen[:2] == b"--":
                    state = _Xml.COMMENT
                    pos += 2
                elif seen == b"[CDATA[":
                    state = _Xml.CDATA
                    pos += 7
                elif b"--".startswith(seen) or b"[CDATA[".startswith(seen):
                    break  # can't tell yet
                else:
                    state = _Xml.DECL
            elif state is _Xml.TAG:
                special = _TAG_SPECIAL.search(buf, pos, stop)
                if special is None:
                    pos = stop
                    break
                pos = special.end()
                char = buf[pos - 1]
                if char != 0x3E:  # a quote opens an attribute value
                    state, self.quote = _Xml.QUOTE, char
                    continue
                state = _Xml.TEXT
                if self.closing:
                    self.depth -= 1
                elif pos - 2 <= self.tag_start or buf[pos - 2] != 0x2F:  # not "<.../>"
                    self.depth += 1
                if self.depth <= 0:
                    self.pos, self.state = pos, state
                    return pos
            elif state is _Xml.QUOTE:
                end = buf.find(self.quote, pos, stop)
                if end < 0:
                    pos = stop
                    break
                pos = end + 1
                state = _Xml.TAG
            else:  # COMMENT, CDATA, PI, DECL: skip to their terminator
                terminator = _ENDS[state]
                end = buf.find(terminator, pos, stop)
                if end < 0:
                    # Resume where a terminator cut in two would start.
                    pos = max(pos, stop - len(terminator) + 1)
                    break
                pos = end + len(terminator)
                state = _Xml.TEXT
        self.pos, self.state = pos, state
        return None


class MultipartParser:
    """Incremental parser of an endless multipart stream. Not thread-safe; one per stream.

    ``clock`` (seconds, monotonic) and ``max_part_seconds`` bound how long one part may
    stay incomplete after its delimiter line; ``None`` turns that bound off.
    """

    def __init__(
        self,
        boundary: str | None,
        *,
        max_part_size: int = DEFAULT_MAX_PART_SIZE,
        max_part_seconds: float | None = DEFAULT_MAX_PART_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.declared_boundary = boundary
        self.max_part_size = max_part_size
        self.max_part_seconds = max_part_seconds
        self._clock = clock
        candidates = [b"--" + boundary.encode("latin-1")] if boundary else []
        fallback = b"--" + FALLBACK_BOUNDARY.encode()
        if fallback not in candidates:
            candidates.append(fallback)
        self._candidates = candidates
        # The delimiter in use; fixed by the first delimiter line seen.
        self._delimiter: bytes | None = None
        self._buf = bytearray()
        self._state = _State.PREAMBLE
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._garbage = 0  # bytes of non-blank lines skipped since the last delimiter line
        self._deadline: float | None = None  # clock() by which the current part must be done
        self._framing = _Framing.UNDECIDED
        self._length = 0
        self._lscan = 0  # where the search for the end of the current line resumes
        self._scan = 0  # where an incremental body scan resumes (offset into _buf)
        self._dscan = 0  # where the search for the next delimiter resumes
        self._xml = _XmlEnd()
        self._depth = 0
        self._in_string = False
        self._escaped = False

    @property
    def boundary(self) -> str | None:
        """The boundary token the stream actually uses, once a delimiter line was seen."""
        return self._delimiter[2:].decode("latin-1") if self._delimiter else None

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a part."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Part]:
        """Add bytes and return every part they complete."""
        if self._state is _State.BROKEN:
            raise ProtocolError("the stream already broke a limit; open a new one")
        self._buf += data
        part = self.next_part()
        if part is None:
            return []
        parts = [part]
        while (part := self.next_part()) is not None:
            parts.append(part)
        return parts

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the stream; call :meth:`next_part` until it returns ``None``."""
        if self._state is _State.BROKEN:
            raise ProtocolError("the stream already broke a limit; open a new one")
        self._buf += data

    def next_part(self) -> Part | None:
        """The next complete part, or ``None`` until more data arrives.

        Raises :class:`ProtocolError` when a limit is passed, including a part that has
        been incomplete for longer than ``max_part_seconds``.
        """
        if (  # the common case of a long part arriving: nothing to do yet
            self._state is _State.BODY
            and self._framing is _Framing.LENGTH
            and len(self._buf) < self._length
        ):
            if self._deadline is not None and self._clock() > self._deadline:
                self.check_deadline()
            return None
        try:
            while True:
                if self._state is _State.PREAMBLE:
                    if not self._seek_delimiter():
                        return None
                elif self._state is _State.HEADERS:
                    if not self._read_headers():
                        if self._deadline is not None and self._clock() > self._deadline:
                            self._late(None)
                        return None
                elif self._state is _State.BODY:
                    part = self._read_body()
                    if (
                        part is None
                        and self._deadline is not None
                        and self._clock() > self._deadline
                    ):
                        self._late(None)
                    return part
                else:
                    raise ProtocolError("the stream already broke a limit; open a new one")
        except ProtocolError:
            self._break()
            raise

    def check_deadline(self, now: float | None = None) -> None:
        """Raise :class:`ProtocolError` if the current part is incomplete for too long.

        :meth:`next_part` checks this itself whenever bytes arrive; a caller whose stream
        went quiet may call it too (``now`` defaults to the parser's clock).
        """
        if self._deadline is None:
            return
        try:
            if (self._clock() if now is None else now) > self._deadline:
                self._late(now)
        except ProtocolError:
            self._break()
            raise

    def end_of_stream(self) -> list[Part]:
        """The body ended (a finite answer): complete what the end completes.

        A part framed by the next delimiter ends here instead; a part whose
        Content-Length was not reached is cut off and dropped.
        """
        parts = self.feed(b"")
        if (
            self._state is _State.BODY
            and self._framing is not _Framing.LENGTH
            and self._buf.strip()
        ):
            end = len(self._buf)
            while end > 0 and self._buf[end - 1] in b"\r\n":
                end -= 1
            parts.append(self._emit(end, len(self._buf)))
        self._buf = bytearray()
        self._lscan = 0
        return parts

    # -- states ---------------------------------------------------------------------------

    def _break(self) -> None:
        self._state = _State.BROKEN
        self._buf = bytearray()
        self._deadline = None

    def _late(self, now: float | None) -> None:
        limit = self.max_part_seconds or 0.0
        elapsed = (self._clock() if now is None else now) - (self._deadline or 0.0) + limit
        raise ProtocolError(
            f"part still incomplete {elapsed:.0f} s after its delimiter line"
            f" (limit {self.max_part_seconds:g} s, {len(self._buf)} bytes held)"
        )

    def _find_newline(self) -> int:
        """Offset of the next LF in the buffer, or -1; resumes where the last search ended."""
        end = self._buf.find(b"\n", self._lscan)
        self._lscan = len(self._buf) if end < 0 else 0
        return end

    def _take_line(self) -> bytes | None:
        """Remove and return one line (without its line ending), or None if incomplete."""
        end = self._find_newline()
        if end < 0:
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line.rstrip(b"\r")

    def _is_delimiter(self, line: bytes) -> bool:
        line = line.rstrip()
        if self._delimiter is not None:
            return line in (self._delimiter, self._delimiter + b"--")
        for candidate in self._candidates:
            if line in (candidate, candidate + b"--"):
                self._delimiter = candidate
                return True
        return False

    def _seek_delimiter(self) -> bool:
        while (line := self._take_line()) is not None:
            if self._is_delimiter(line):
                self._start_headers()
                return True
            if line.strip():
                self._garbage += len(line) + 1
        if self._garbage + len(self._buf) > self.max_part_size:
            raise ProtocolError(
                f"no delimiter line in {self._garbage + len(self._buf)} bytes"
                f" (boundary {self.declared_boundary!r})"
            )
        return False

    def _start_headers(self) -> None:
        self._state = _State.HEADERS
        self._headers = {}
        self._header_bytes = 0
        self._garbage = 0
        if self.max_part_seconds is not None:
            self._deadline = self._clock() + self.max_part_seconds

    def _read_headers(self) -> bool:
        while True:
            end = self._find_newline()
            if end < 0:
                if self._header_bytes + len(self._buf) > MAX_HEADER_BYTES:
                    raise ProtocolError(f"part headers longer than {MAX_HEADER_BYTES} bytes")
                return False
            line = bytes(self._buf[:end]).rstrip(b"\r")
            self._header_bytes += end + 1
            if self._header_bytes > MAX_HEADER_BYTES:
                raise ProtocolError(f"part headers longer than {MAX_HEADER_BYTES} bytes")
            if self._is_delimiter(line):  # a stray duplicate delimiter line
                del self._buf[: end + 1]
                self._start_headers()
                continue
            if not line.strip():
                del self._buf[: end + 1]
                self._start_body()
                return True
            header = _header_line(line)
            if header is None:
                # No blank line after the headers (seen in vendor examples): the body
                # starts on this line, which stays in the buffer.
                self._start_body()
                return True
            del self._buf[: end + 1]
            self._headers[header[0]] = header[1]

    def _start_body(self) -> None:
        self._state = _State.BODY
        self._framing = _Framing.UNDECIDED
        self._lscan = 0
        self._scan = 0
        self._dscan = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        length = self._headers.get("content-length")
        if length is None:
            return
        number = read_number(length, (0, self.max_part_size))
        if number is not None:
            self._length = number
            self._framing = _Framing.LENGTH
            return
        digits = length.strip(" \t")
        if digits.isascii() and digits.isdigit():  # a length, but over the limit
            shown = f"{digits} bytes" if len(digits) <= 20 else f"{len(digits)} digits"
            raise ProtocolError(
                f"part length of {shown} is over the limit of {self.max_part_size} bytes"
            )
        # Anything else (negative, junk, "²") is treated as absent: the part is framed
        # by its content or by the next delimiter line.

    def _read_body(self) -> Part | None:
        if self._framing is _Framing.LENGTH:
            if len(self._buf) < self._length:
                return None
            return self._emit(self._length, self._length)
        if self._framing is _Framing.UNDECIDED and not self._decide_framing():
            return None
        delimited_end, after = self._find_delimiter()
        if self._framing is _Framing.XML:
            end = self._xml.scan(
                self._buf, len(self._buf) if delimited_end is None else delimited_end
            )
        elif self._framing is _Framing.JSON:
            end = self._scan_json(delimited_end)
        else:
            end = None
        if end is not None:
            return self._emit(end, end)
        if delimited_end is not None:
            # The delimiter came first: the part ends there (a cut-off XML part is
            # handed on as it is, and fails to decode). The delimiter line stays.
            return self._emit(delimited_end, after)
        if len(self._buf) > self.max_part_size:
            raise ProtocolError(
                f"part without Content-Length passed the limit of {self.max_part_size} bytes"
            )
        return None

    def _emit(self, end: int, consumed: int) -> Part:
        body = bytes(self._buf[:end])
        del self._buf[:consumed]
        part = Part(headers=self._headers, body=body)
        self._state = _State.PREAMBLE
        self._headers = {}
        self._lscan = 0
        self._deadline = None
        return part

    def _decide_framing(self) -> bool:
        match = _NON_SPACE.search(self._buf, self._scan)
        if match is None:
            self._scan = len(self._buf)
            if len(self._buf) > self.max_part_size:
                raise ProtocolError("part of white space only passed the size limit")
            return False
        self._scan = match.start()
        ctype = self._headers.get("content-type", "").lower()
        first = match.group()
        if "xml" in ctype or (not ctype and first == b"<"):
            self._framing = _Framing.XML
            self._xml = _XmlEnd(self._scan)
        elif "json" in ctype or (not ctype and first == b"{"):
            self._framing = _Framing.JSON
        else:
            self._framing = _Framing.DELIMITER
        return True

    def _find_delimiter(self) -> tuple[int | None, int]:
        """Where the body ends if the next delimiter line ends it: (end, consumed).

        Resumes where the previous call stopped, so a long body fed in small pieces is
        scanned once, not once per piece. (A body always follows a delimiter line, so
        the delimiter in use is known here.)
        """
        buf = self._buf
        needle = b"\n" + (self._delimiter or self._candidates[-1])
        pos = max(0, self._dscan - len(needle) - 2)
        while (idx := buf.find(needle, pos)) >= 0:
            after = idx + len(needle)
            if after >= len(buf):
                # Can't tell yet whether the line is a delimiter: look here again.
                self._dscan = idx + len(needle) + 2
                return None, 0
            if buf[after] in _DELIMITER_LINE_END:
                end = idx - 1 if idx > 0 and buf[idx - 1] == 0x0D else idx
                return end, idx + 1
            pos = idx + 1
        self._dscan = len(buf)
        return None, 0

    def _scan_json(self, limit: int | None) -> int | None:
        """End offset of the outer JSON object once it has closed, else None."""
        buf = self._buf
        pos = self._scan
        stop = len(buf) if limit is None else limit
        while pos < stop:
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                    pos += 1
                    continue
                match = _JSON_SPECIAL.search(buf, pos, stop)
                if match is None:
                    pos = stop
                    break
                char = match.group()
                pos = match.end()
                if char == b"\\":
                    self._escaped = True
                elif char == b'"':
                    self._in_string = False
                continue
            match = _JSON_SPECIAL.search(buf, pos, stop)
            if match is None:
                pos = stop
                break
            char = match.group()
            pos = match.end()
            if char == b'"':
                self._in_string = True
            elif char == b"{":
                self._depth += 1
            elif char == b"}":
                self._depth -= 1
                if self._depth <= 0:
                    return pos
        self._scan = pos
        return None


def _header_line(line: bytes) -> tuple[str, str] | None:
    """``(name lower-cased, value)`` of a header line, or None if it is not one."""
    colon = line.find(b":")
    if colon <= 0:
        return None
    name = line[:colon].rstrip(b" \t")
    if not name or name.translate(None, _TOKEN):
        return None
    value = line[colon + 1 :].strip(b" \t")
    return name.decode("ascii").lower(), value.decode("latin-1")
