"""When a list entry (a pass) is valid: ``valid_from`` / ``valid_until`` (standard library only).

Both are ISO 8601, a date (``2026-12-24``) or a date and time (``2026-12-24T18:00``, seconds
optional, a zone ``Z`` / ``+01:00`` optional). Rules:

- a time without a zone is the bridge's local time (its ``TZ``), like a camera's read time;
- a date alone as ``valid_from`` starts at 00:00 of that day; as ``valid_until`` it lasts
  the whole day (the pass ends at the next day's 00:00, local time);
- either may be absent (open-ended); ``valid_until`` before ``valid_from`` is refused;
- an entry is ``valid`` at ``start <= now < end``, ``not yet valid`` before, ``expired`` after.

Times are turned into POSIX seconds once, when the lists are read, so a read's check is two
float comparisons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

State = Literal["valid", "expired", "not yet valid"]
MAX_TEXT = 40
# The shapes accepted, checked before fromisoformat (which takes more than ISO 8601 says).
_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Window:
    """When an entry is valid, as POSIX seconds (None: open on that side)."""

    start: float | None = None
    end: float | None = None

    def state(self, now: float) -> State:
        if self.start is not None and now < self.start:
            return "not yet valid"
        if self.end is not None and now >= self.end:
            return "expired"
        return "valid"

    @property
    def always(self) -> bool:
        return self.start is None and self.end is None


ALWAYS = Window()


def parse_bound(text: str, *, end: bool) -> float:
    """POSIX seconds of a ``valid_from`` (``end=False``) or ``valid_until`` (``end=True``);
    ValueError with a reason for anything else."""
    what = "valid_until" if end else "valid_from"
    text = text.strip()
    if len(text) > MAX_TEXT or _SHAPE.fullmatch(text) is None:
        raise ValueError(
            f"{what} {text[:MAX_TEXT]!r}: expected an ISO 8601 date or date and time "
            "(2026-12-24 or 2026-12-24T18:00)"
        )
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            moment = datetime.combine(day, time())
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.astimezone()  # naive: the bridge's local time
        return moment.timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"{what} {text!r}: not a real date or time ({exc})") from exc


def window(valid_from: str | None, valid_until: str | None) -> Window:
    """The window of an entry's two texts (None or blank: open); ValueError when invalid."""
    start = parse_bound(valid_from, end=False) if valid_from and valid_from.strip() else None
    stop = parse_bound(valid_until, end=True) if valid_until and valid_until.strip() else None
    if start is not None and stop is not None and stop <= start:
        raise ValueError(f"valid_until {valid_until!r} is not after valid_from {valid_from!r}")
    return Window(start, stop) if start is not None or stop is not None else ALWAYS


def iso_date(seconds: float | None) -> str | None:
    """The local date of POSIX seconds, for a camera's list (which holds dates only)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).astimezone().date().isoformat()
