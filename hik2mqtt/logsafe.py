"""Making text safe for a log line: escaping what a camera sent, masking secrets.

Two rules, in this order of importance:

1. **Code never logs a secret.** URLs are logged through :func:`redact_url`; the push
   listener logs a request's path through :func:`redact_push_path`; settings are never
   logged whole.
2. **The formatter is a safety net** (:class:`SecretMasker`): every line is scanned for
   secrets in *value positions* (``password=...``, ``secret: ...``, the password of a URL's
   ``user:pass@``, an ``Authorization`` header, the segment after ``/hik2mqtt/<camera>/`` in
   a request path or a URL, never in a file path such as ``/opt/hik2mqtt/lib/...``)
   and for the configured secrets as whole tokens (bounded by characters that are not
   letters or digits). A configured secret that reads like a word (letters only) or is
   shorter than :data:`MIN_TOKEN_SECRET` is masked only in value positions: masking it
   everywhere would blank the word ``simulator`` in every line when that is the simulator's
   password, and a secret that short or plain is no secret a log scan could protect anyway.

:func:`escape` makes camera-supplied text one harmless line: control characters (newline,
carriage return, ANSI escape, C1 controls), Unicode line and paragraph separators,
bidirectional overrides and lone surrogates become visible escapes, so nothing a camera
sends can start a forged log line, recolour a terminal, or break a UTF-8 or JSON writer.

Values are masked before a line is encoded (as text or JSON), so a mask can never break
the encoding; a traceback's frames (our own file paths and source) get only the token
masking, its exception messages the full masking.

Every pattern here runs in linear time (literal anchors, possessive quantifiers).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterable

MASK = "**********"
MIN_TOKEN_SECRET = 6

# C0 controls but tab, DEL and C1 controls, line/paragraph separators, bidi controls,
# and surrogates (a lone one cannot be encoded as UTF-8).
_UNSAFE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` as one line with no control characters (they become ``\\n``, ``\\x1b``...)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_char, text)


def escape_bytes(data: bytes, limit: int = 200) -> str:
    """At most ``limit`` bytes of ``data`` as escaped text (for logging what a peer sent)."""
    text = escape(data[:limit].decode("utf-8", "backslashreplace"))
    return text + ("..." if len(data) > limit else "")


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_exception(
    exc: BaseException,
    mask_message: Callable[[str], str] | None = None,
    mask_frames: Callable[[str], str] | None = None,
) -> str:
    """A traceback whose exception messages are escaped, one line each.

    The frames come from our own source files; the messages may hold camera text, so a
    newline in one cannot start what looks like a new log line. ``mask_message`` is applied
    to each exception message, ``mask_frames`` to the frames' lines.
    """
    chain: list[tuple[str | None, traceback.TracebackException]] = []
    current: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__cause__ is not None:
            chain.append((_CAUSE, current))
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            chain.append((_CONTEXT, current))
            current = current.__context__
        else:
            chain.append((None, current))
            current = None
    lines: list[str] = []
    for message, item in reversed(chain):
        if message is not None:
            lines.append(message)
        if item.stack:
            lines.append("Traceback (most recent call last):\n")
            frames = item.stack.format()
            lines.extend(map(mask_frames, frames) if mask_frames is not None else frames)
        for part in item.format_exception_only():
            text = escape(part.rstrip("\n"))
            lines.append((mask_message(text) if mask_message is not None else text) + "\n")
    return "".join(lines).rstrip("\n")


# -- secrets ----------------------------------------------------------------------------

_NOT_ALNUM_BEFORE = r"(?<![^\W_])"  # not preceded by a letter or digit
_NOT_ALNUM_AFTER = r"(?![^\W_])"

# user:password@ in a URL; the scheme must start where a word starts (linear search).
_USERINFO = re.compile(r"(?<![\w+.-])([A-Za-z][\w+.-]*+://[^\s/:@]*+:)([^\s/@]++)(?=@)")
# password=..., "secret": "...", token: ...
_KEY_VALUE = re.compile(
    r"(?i)(?<![^\W_])((?:push_?)?(?:password|passwd|passphrase|pwd|secret|token|api_?key)"
    r"['\"]?\s*+[=:]\s*+['\"]?)([^\s'\",;&}]++)"
)
# Authorization: Basic xyz / Digest username="...", response="..." (to the end of the line)
_AUTHORIZATION = re.compile(r"(?i)(authorization['\"]?\s*+[=:]\s*+['\"]?)([^\r\n]++)")
# /hik2mqtt/<camera>/<secret>: the push secret is everything after the camera's name, in a
# request path only: the path starts the text or follows a space, a quote or '=' (a request
# line, path='...'), or follows a URL's scheme://authority. A file path such as
# /opt/hik2mqtt/lib/... (a traceback's) is not a request path and stays as it is.
_PUSH_PATH = re.compile(
    r"(?i)((?:(?<![^\s'\"=])|(?<![\w+.-])[A-Za-z][\w+.-]*+://[^\s/?#'\"]*+)"
    r"/hik2mqtt/[^/\s?#'\"]*+/)([^\s?#'\"]++)"
)


def _mask_group_2(match: re.Match[str]) -> str:
    return match.group(1) + MASK


def mask_values(text: str) -> str:
    """``text`` with whatever stands in a secret's place masked (any value, configured or not)."""
    for pattern in (_USERINFO, _AUTHORIZATION, _KEY_VALUE, _PUSH_PATH):
        text = pattern.sub(_mask_group_2, text)
    return text


def redact_url(url: str) -> str:
    """A URL fit for a log: no password in ``user:pass@``, no secret query value or push secret."""
    return mask_values(url)


def redact_push_path(path: str) -> str:
    """A push request's path without its secret: ``/hik2mqtt/gate/**********``."""
    return _PUSH_PATH.sub(_mask_group_2, path)


def strong(secret: str) -> bool:
    """True for a secret masked wherever it appears as a token (not a word-like one)."""
    return len(secret) >= MIN_TOKEN_SECRET and not secret.isalpha()


class SecretMasker:
    """Masks secrets in value positions, and strong configured secrets as whole tokens."""

    def __init__(self, secrets: Iterable[str]) -> None:
        tokens = sorted({s for s in secrets if s and strong(s)}, key=len, reverse=True)
        self._tokens = (
            re.compile(
                _NOT_ALNUM_BEFORE
                + "(?:"
                + "|".join(map(re.escape, tokens))
                + ")"
                + _NOT_ALNUM_AFTER
            )
            if tokens
            else None
        )

    def __call__(self, text: str) -> str:
        return self.tokens(mask_values(text))

    def tokens(self, text: str) -> str:
        """``text`` with only the strong configured secrets masked (for a traceback's frames)."""
        if self._tokens is not None:
            text = self._tokens.sub(MASK, text)
        return text


def escape_lines(text: str) -> str:
    """Each line of ``text`` escaped, the line breaks kept (a stack dump, a traceback)."""
    return "\n".join(escape(line) for line in text.splitlines())
