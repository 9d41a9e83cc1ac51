"""The built-in gate rule: whether a read opens the gate, and why (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from hik2mqtt.config import GateSettings
from hik2mqtt.plates import Match


@dataclass(frozen=True, slots=True)
class Decision:
    open: bool
    reason: str


def decide(
    rule: GateSettings,
    *,
    plate: str | None,
    confidence: int | None,
    retransmitted: bool,
    duplicate: bool,
    age: float | None,
    match: Match | None,
    lapsed: Match | None = None,
) -> Decision:
    """Open only for a live read (not retransmitted, not a duplicate, not too old) of a plate
    on the rule's list, valid now, with enough confidence; otherwise say which test it failed
    (``lapsed``: the entry that would match but is expired or not yet valid)."""
    if plate is None:
        return Decision(False, "no plate read")
    if retransmitted:
        return Decision(False, "retransmitted read (an old read re-sent by the camera)")
    if duplicate:
        return Decision(False, "duplicate of a read moments ago")
    if age is not None and age > rule.max_age:
        return Decision(False, f"read is {age:.0f} s old (limit {rule.max_age:g} s)")
    if confidence is None or confidence < rule.min_confidence:
        return Decision(False, f"confidence {confidence} below {rule.min_confidence}")
    on_rule_list = match is not None and match.list == rule.list
    if not on_rule_list and lapsed is not None and lapsed.list == rule.list:
        entry = lapsed.entry
        who = entry.name or entry.plate
        if lapsed.state == "expired":
            until = f"valid until {entry.valid_until}"
            return Decision(False, f"pass expired (list {rule.list!r}: {who}, {until})")
        since = f"valid from {entry.valid_from}"
        return Decision(False, f"pass not yet valid (list {rule.list!r}: {who}, {since})")
    if match is None:
        return Decision(False, f"not on list {rule.list!r}")
    if match.list != rule.list:
        return Decision(False, f"on list {match.list!r}, not {rule.list!r}")
    who = match.entry.name or match.entry.plate
    fuzzy = f" (distance {match.distance})" if match.distance else ""
    return Decision(True, f"on list {rule.list!r}: {who}{fuzzy}")
