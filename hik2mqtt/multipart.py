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
:class:`~hik2mqtt.errors.ProtocolError` before anything that large is allocated. The
stream is then unusable; the caller drops the connection and reopens it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, auto

from hik2mqtt.errors import ProtocolError

DEFAULT_MAX_PART_SIZE = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
FALLBACK_BOUNDARY = "boundary"

_HEADER_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:[ \t]*(.*?)[ \t]*$")
_PARAM = re.compile(r"""([A-Za-z0-9_*.-]+)\s*=\s*(?:"([^"]*)"|([^;\s]*))""")
# One XML markup construct: a comment, a declaration/processing instruction, or a tag.
_XML_MARKUP = re.compile(
    rb"<(?:!--.*?--|[?!][^>]*|(/?)[^\s/>]+(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(/?))>", re.S
)
_JSON_SPECIAL = re.compile(rb'[{}"\\]')
_NON_SPACE = re.compile(rb"\S")
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
    """Parameters of a header value (``a; b="c";d=e``), names lower-cased."""
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(value)
    }


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


class MultipartParser:
    """Incremental parser of an endless multipart stream. Not thread-safe; one per stream."""

    def __init__(
        self,
        boundary: str | None,
        *,
        max_part_size: int = DEFAULT_MAX_PART_SIZE,
    ) -> None:
        self.declared_boundary = boundary
        self.max_part_size = max_part_size
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
        self._framing = _Framing.UNDECIDED
        self._length = 0
        self._scan = 0  # where an incremental body scan resumes (offset into _buf)
        self._dscan = 0  # where the search for the next delimiter resumes
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
        self.receive_data(data)
        parts = []
        while (part := self.next_part()) is not None:
            parts.append(part)
        return parts

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the stream; call :meth:`next_part` until it returns ``None``."""
        if self._state is _State.BROKEN:
            raise ProtocolError("the stream already broke a limit; open a new one")
        self._buf += data

    def next_part(self) -> Part | None:
        """The next complete part, or ``None`` until more data arrives."""
        try:
            while True:
                if self._state is _State.PREAMBLE:
                    if not self._seek_delimiter():
                        return None
                elif self._state is _State.HEADERS:
                    if not self._read_headers():
                        return None
                elif self._state is _State.BODY:
                    return self._read_body()
                else:
                    raise ProtocolError("the stream already broke a limit; open a new one")
        except ProtocolError:
            self._state = _State.BROKEN
            self._buf = bytearray()
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
        return parts

    # -- states ---------------------------------------------------------------------------

    def _take_line(self) -> bytes | None:
        """Remove and return one line (without its line ending), or None if incomplete."""
        end = self._buf.find(b"\n")
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
        if len(self._buf) > self.max_part_size:
            raise ProtocolError(
                f"no delimiter line in {len(self._buf)} bytes (boundary {self.declared_boundary!r})"
            )
        return False

    def _start_headers(self) -> None:
        self._state = _State.HEADERS
        self._headers = {}
        self._header_bytes = 0

    def _read_headers(self) -> bool:
        while True:
            end = self._buf.find(b"\n")
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
            match = _HEADER_LINE.match(line)
            if match is None:
                # No blank line after the headers (seen in vendor examples): the body
                # starts on this line, which stays in the buffer.
                self._start_body()
                return True
            del self._buf[: end + 1]
            name = match.group(1).decode("ascii").lower()
            self._headers[name] = match.group(2).decode("latin-1")

    def _start_body(self) -> None:
        self._state = _State.BODY
        self._framing = _Framing.UNDECIDED
        self._scan = 0
        self._dscan = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        length = self._headers.get("content-length", "").strip()
        if length.isdigit():  # anything else (negative, junk) is treated as absent
            self._length = int(length)
            if self._length > self.max_part_size:
                raise ProtocolError(
                    f"part of {self._length} bytes is over the limit of {self.max_part_size}"
                )
            self._framing = _Framing.LENGTH

    def _read_body(self) -> Part | None:
        if self._framing is _Framing.LENGTH:
            if len(self._buf) < self._length:
                return None
            return self._emit(self._length, self._length)
        if self._framing is _Framing.UNDECIDED and not self._decide_framing():
            return None
        delimited_end, after = self._find_delimiter()
        if self._framing is _Framing.XML:
            end = self._scan_xml(delimited_end)
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
        return part

    def _decide_framing(self) -> bool:
        match = _NON_SPACE.search(self._buf)
        if match is None:
            if len(self._buf) > self.max_part_size:
                raise ProtocolError("part of white space only passed the size limit")
            return False
        ctype = self._headers.get("content-type", "").lower()
        first = match.group()
        if "xml" in ctype or (not ctype and first == b"<"):
            self._framing = _Framing.XML
        elif "json" in ctype or (not ctype and first == b"{"):
            self._framing = _Framing.JSON
        else:
            self._framing = _Framing.DELIMITER
        return True

    def _find_delimiter(self) -> tuple[int | None, int]:
        """Where the body ends if the next delimiter line ends it: (end, consumed).

        Resumes where the previous call stopped, so a long body fed in small pieces is
        scanned once, not once per piece.
        """
        delimiters = [self._delimiter] if self._delimiter else self._candidates
        longest = max(len(d) for d in delimiters) + 3
        start = max(0, self._dscan - longest)
        best: tuple[int | None, int] = (None, 0)
        undecided = False
        for delimiter in delimiters:
            pos = start
            while (idx := self._buf.find(b"\n" + delimiter, pos)) >= 0:
                after = idx + 1 + len(delimiter)
                if after >= len(self._buf):
                    undecided = True  # can't tell yet whether the line is a delimiter
                    break
                if self._buf[after] in _DELIMITER_LINE_END:
                    end = idx - 1 if idx > 0 and self._buf[idx - 1] == 0x0D else idx
                    if best[0] is None or end < best[0]:
                        best = (end, idx + 1)
                    break
                pos = idx + 1
        if best[0] is None and not undecided:
            self._dscan = len(self._buf)
        return best

    def _scan_xml(self, limit: int | None) -> int | None:
        """End offset of the root element once it has closed, else None."""
        pos = self._scan
        stop = len(self._buf) if limit is None else limit
        while True:
            match = _XML_MARKUP.search(self._buf, pos, stop)
            if match is None:
                self._scan = pos
                return None
            pos = match.end()
            closing, self_closing = match.group(1), match.group(2)
            if closing is None:  # comment, declaration or processing instruction
                continue
            if closing:
                self._depth -= 1
            elif not self_closing:
                self._depth += 1
            if self._depth <= 0:
                return pos

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
