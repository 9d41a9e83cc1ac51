"""Names and topics that come from outside (configuration, the broker, a publisher):
one rule for each, standard library only.

A camera name is a topic level and part of Home Assistant's object ids, so the same rule
holds for a name in the configuration and for one read back from a retained registry
(this bridge's or another's): whoever can publish there may have forged it.

A topic the bridge publishes on is checked before it reaches paho or the broker: paho
raises on a wildcard, and Mosquitto drops the whole connection on a NUL, a control
character or a non-character, which would then be the first thing sent again on every
reconnect.
"""

from __future__ import annotations

import json
import re

MAX_NAME = 64  # characters in a camera name
RESERVED_NAMES = frozenset({"bridge", "lists"})  # the bridge's own topics and device; list edits
MAX_REGISTRY_NAMES = 1000  # names taken from one registry, at most
MAX_REGISTRY_BYTES = 256 * 1024  # a registry past this is not read at all (MQTT 5 packet cap)
MAX_TOPIC_BYTES = 65_535  # an MQTT string's length is two bytes


# One character class (a linear scan, no backtracking): C0 controls (NUL included), DEL and
# C1 controls, lone surrogates (not UTF-8 at all), and the non-characters a broker may refuse.
_NONCHARACTERS = "".join(f"\\U{p:04X}FFFE\\U{p:04X}FFFF" for p in range(17))
_BAD_CHARS = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff\\ufdd0-\\ufdef{_NONCHARACTERS}]")
_BAD_IN_TOPIC = re.compile(f"[+#]|{_BAD_CHARS.pattern}")
_BAD_IN_NAME = re.compile(f"[/+#\\s]|{_BAD_CHARS.pattern}")


def name_problem(name: str) -> str | None:
    """Why ``name`` can't be a camera name (None: it can): 1 to 64 characters, no space,
    control character, ``/``, ``+`` or ``#``, not starting with ``$``, not ``bridge`` or
    ``lists``."""
    if not name:
        return "a camera name must not be empty"
    if len(name) > MAX_NAME:
        return f"a camera name is at most {MAX_NAME} characters"
    if name.lower() in RESERVED_NAMES:
        return f"{name!r} is reserved for the bridge's own topics"
    if name.startswith("$"):
        return "a camera name must not start with $"
    if _BAD_IN_NAME.search(name):
        return "a camera name must be without /, +, #, spaces or control characters"
    return None


def registry_names(payload: bytes) -> tuple[list[str], int]:
    """The good camera names of a retained registry (a JSON list of names), at most
    ``MAX_REGISTRY_NAMES``, and how many entries were left out (bad names, other values,
    names past the cap; the whole payload when it is not a JSON list or is too big)."""
    if len(payload) > MAX_REGISTRY_BYTES:
        return [], 1
    try:
        entries = json.loads(payload or b"[]")
    except (ValueError, RecursionError):
        return [], 1
    if not isinstance(entries, list):
        return [], 1
    names: list[str] = []
    seen: set[str] = set()
    skipped = 0
    for entry in entries:
        if (
            len(names) >= MAX_REGISTRY_NAMES
            or not isinstance(entry, str)
            or name_problem(entry) is not None
        ):
            skipped += 1
        elif entry not in seen:
            seen.add(entry)
            names.append(entry)
    return names, skipped


def topic_problem(topic: str) -> str | None:
    """Why a message can't be published on ``topic`` (None: it can): empty, over 65,535
    bytes, a wildcard, or a character a broker refuses (NUL, controls, non-characters)."""
    if not topic:
        return "empty topic"
    if (bad := _BAD_IN_TOPIC.search(topic)) is not None:
        if bad.group() in "+#":
            return "wildcard in topic"
        return "control character, NUL or non-character in topic"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"topic over {MAX_TOPIC_BYTES} bytes"
    return None
