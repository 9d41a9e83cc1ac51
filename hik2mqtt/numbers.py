"""The one way to read a number that came from outside (a camera, a push client, a command).

``str.isdigit()`` is true for ``"²"`` and ``"٣"``, which ``int()`` refuses, and ``int()``
refuses strings of more than 4,300 digits; a value that passes both can still be too large
for a timer. Every number a camera, a push client or an MQTT publisher sends goes through
:func:`read_number`, which accepts only ASCII digits (optionally surrounded by white
space) within the range given for that field, and returns ``None`` for anything else, so
the caller treats the value as absent or the message as bad.
"""

from __future__ import annotations

# Longest digit string looked at: more digits than any field's upper bound could need.
_MAX_DIGITS = 25
_ASCII_DIGITS = frozenset("0123456789")

# Sane ranges for the fields cameras send (inclusive).
CONTENT_LENGTH = (0, 2**40)
HTTP_STATUS = (100, 999)
UNLOCK_SECONDS = (0, 7 * 24 * 3600)
CHANNEL = (0, 4096)
OUTPUT_ID = (1, 64)
PIC_NAME = (0, 10**25 - 1)  # up to 25 digits, compared as numbers
CONFIDENCE = (0, 100)
LANE = (0, 1000)
YEAR = (1970, 9999)


def read_number(value: object, bounds: tuple[int, int]) -> int | None:
    """``value`` as an int when it is ASCII digits within ``bounds``, else ``None``.

    Accepts an ``int`` (not a ``bool``) in range, or a ``str``/``bytes`` made of ASCII
    digits only (white space around it is ignored; no sign, no exponent, no underscores).
    """
    low, high = bounds
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if low <= value <= high else None
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    text = value.strip(" \t\r\n")
    if not text or len(text) > _MAX_DIGITS or not _ASCII_DIGITS.issuperset(text):
        return None
    number = int(text)
    return number if low <= number <= high else None
