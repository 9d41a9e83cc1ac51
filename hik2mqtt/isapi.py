"""ISAPI replies decoded once, into typed values (as :mod:`hik2mqtt.events` decodes events).

Nothing past this module walks a camera's XML/JSON answer: the camera layer, the
command runner and ``hik2mqtt check`` get these frozen values instead.

- ``ResponseStatus`` (XML or JSON): :func:`response_status` -> :class:`IsapiStatus`
- ``userCheck`` (the body of a 401): :func:`user_check` -> :class:`UserCheck`
- ``DeviceInfo``: :func:`device_info` -> :class:`DeviceInfo`
- ``IOPortStatus``: :func:`io_state` -> ``"on"`` / ``"off"`` / None
- ``Plates`` (poll mode's list): :func:`plates` -> list of :class:`~hik2mqtt.events.PolledPlate`
- ``vehicleDetect`` and event triggers (``hik2mqtt check``): :func:`vehicle_detection`,
  :func:`notifies_center`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hik2mqtt.discovery import DeviceInfo
from hik2mqtt.errors import DecodeError
from hik2mqtt.events import PolledPlate, decode_plates, parse_xml
from hik2mqtt.numbers import UNLOCK_SECONDS, read_number

# Bounds of a JSON ResponseStatus's statusCode (ISAPI uses 0-7)
_STATUS_CODE = (0, 99)
_MAX_JSON_DEPTH = 32


@dataclass(frozen=True, slots=True)
class IsapiStatus:
    """An ISAPI ``ResponseStatus`` (XML or JSON)."""

    code: int | None
    text: str | None
    sub_status: str | None

    @property
    def ok(self) -> bool:
        return self.code in (None, 0, 1)

    def describe(self) -> str:
        parts = [p for p in (self.text, self.sub_status) if p]
        return " / ".join(parts) if parts else f"statusCode {self.code}"


@dataclass(frozen=True, slots=True)
class UserCheck:
    """Hikvision's answer to a refused login: whether the account is locked, and for how long."""

    locked: bool
    unlock_time: int | None


def _text(node: dict[str, Any], key: str, limit: int = 200) -> str | None:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()[:limit]
    return text or None


def _xml(body: bytes) -> tuple[str, dict[str, Any]] | None:
    try:
        return parse_xml(body)
    except DecodeError:
        return None


def _json_depth_ok(text: bytes) -> bool:
    """Whether brackets nest no deeper than json may recurse safely (a linear scan)."""
    depth = 0
    for byte in text:
        if byte in b"[{":
            depth += 1
            if depth > _MAX_JSON_DEPTH:
                return False
        elif byte in b"]}":
            depth -= 1
    return True


def response_status(body: bytes) -> IsapiStatus | None:
    """The ResponseStatus in a camera's answer, if it holds one."""
    text = body.lstrip()
    if text[:1] == b"{":
        if not _json_depth_ok(text):
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or "statusCode" not in doc:
            return None
        return IsapiStatus(
            code=read_number(doc.get("statusCode"), _STATUS_CODE),
            text=_text(doc, "statusString"),
            sub_status=_text(doc, "subStatusCode"),
        )
    parsed = _xml(body)
    if parsed is None or parsed[0] != "ResponseStatus":
        return None
    node = parsed[1]
    return IsapiStatus(
        code=read_number(node.get("statusCode"), _STATUS_CODE),
        text=_text(node, "statusString"),
        sub_status=_text(node, "subStatusCode"),
    )


def user_check(body: bytes) -> UserCheck:
    """What a 401 body says about the account (``userCheck``; nothing known otherwise)."""
    parsed = _xml(body)
    if parsed is None or parsed[0] != "userCheck":
        return UserCheck(locked=False, unlock_time=None)
    node = parsed[1]
    return UserCheck(
        locked=(_text(node, "lockStatus") or "").lower() == "lock",
        unlock_time=read_number(node.get("unlockTime"), UNLOCK_SECONDS),
    )


def device_info(body: bytes) -> DeviceInfo | None:
    """The camera's model, serial and firmware (None when the answer is no DeviceInfo)."""
    parsed = _xml(body)
    if parsed is None or parsed[0] != "DeviceInfo":
        return None
    node = parsed[1]
    parts = (_text(node, "firmwareVersion"), _text(node, "firmwareReleasedDate"))
    firmware = " ".join(p for p in parts if p)
    return DeviceInfo(
        model=_text(node, "model"), serial=_text(node, "serialNumber"), firmware=firmware or None
    )


def io_state(body: bytes) -> str | None:
    """An output's state from ``IOPortStatus``: ``on``, ``off``, or None when unknown."""
    parsed = _xml(body)
    if parsed is None or parsed[0] != "IOPortStatus":
        return None
    state = (_text(parsed[1], "ioState") or "").lower()
    return {"active": "on", "inactive": "off"}.get(state)


def plates(body: bytes) -> list[PolledPlate]:
    """The entries of a ``Plates`` answer (poll mode), newest last, each once."""
    return decode_plates(body)


def vehicle_detection(body: bytes) -> bool:
    """Whether ``vehicleDetect`` says ANPR is enabled (raises DecodeError when unreadable)."""
    _, node = parse_xml(body)
    return (_text(node, "enabled") or "").lower() == "true"


def notifies_center(body: bytes) -> bool:
    """Whether an event trigger (``EventTrigger``) notifies the surveillance center
    (``notificationMethod`` ``center``): then its events reach the alertStream."""
    _, node = parse_xml(body)
    listing = node.get("EventTriggerNotificationList")
    methods = listing.get("EventTriggerNotification") if isinstance(listing, dict) else None
    entries = methods if isinstance(methods, list) else [methods]
    return any(isinstance(m, dict) and _text(m, "notificationMethod") == "center" for m in entries)
