"""Topic names: every topic hik2mqtt uses is built here (payloads are built in
:mod:`hik2mqtt.payloads`, picture file names in :mod:`hik2mqtt.images`), so the README's
topic reference, and the tests that check it, have one place to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names. ``bridge_id`` (``HIK2MQTT_BRIDGE_ID``) names this bridge among several on
    one broker: its own topics move to ``<prefix>/bridge/<id>/...``; camera topics don't."""

    prefix: str = "anpr"
    bridge_id: str | None = None

    @property
    def _bridge(self) -> str:
        if self.bridge_id is None:
            return f"{self.prefix}/bridge"
        return f"{self.prefix}/bridge/{self.bridge_id}"

    @property
    def bridge_status(self) -> str:
        """This bridge's retained online/offline (and its last will)."""
        return f"{self._bridge}/status"

    @property
    def camera_registry(self) -> str:
        """Retained list of the cameras the bridge announced (to remove dropped ones)."""
        return f"{self._bridge}/cameras"

    @property
    def bridges_filter(self) -> str:
        """Every bridge's status and registry on this prefix (with an id or without)."""
        return f"{self.prefix}/bridge/#"

    def parse_bridge_topic(self, topic: str) -> tuple[str | None, str] | None:
        """``(bridge id or None, "status" | "cameras")`` for a bridge's own topic, else None."""
        head = f"{self.prefix}/bridge/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) == 1 and levels[0] in ("status", "cameras"):
            return None, levels[0]
        if len(levels) == 2 and levels[0] and levels[1] in ("status", "cameras"):
            return levels[0], levels[1]
        return None

    def may_answer_on(self, response_topic: str, *, also_forbidden: tuple[str, ...] = ()) -> bool:
        """Whether a request's MQTT 5 response topic may be answered on: not under our own
        prefix (an answer must not pose as a read, a status or a command) nor under any of
        ``also_forbidden`` (e.g. Home Assistant's discovery prefix)."""
        return not any(
            response_topic == p or response_topic.startswith(p + "/")
            for p in (self.prefix, *also_forbidden)
        )

    @property
    def command_subscriptions(self) -> list[str]:
        return [
            f"{self.prefix}/+/trigger",
            f"{self.prefix}/+/output/+/set",
            f"{self.prefix}/+/barrier/set",
            f"{self.prefix}/lists/+/add",
            f"{self.prefix}/lists/+/remove",
        ]

    def camera_status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    def plate(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/plate"

    def image(self, camera: str, kind: str) -> str:
        return f"{self.prefix}/{camera}/image/{kind}"

    def trigger(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/trigger"

    def trigger_result(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/trigger/result"

    def event(self, camera: str, event_type: str) -> str:
        return f"{self.prefix}/{camera}/event/{event_type}"

    def state(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/state"

    def gate(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/gate"

    def output_set(self, camera: str, output: int | str) -> str:
        return f"{self.prefix}/{camera}/output/{output}/set"

    def output_state(self, camera: str, output: int | str) -> str:
        return f"{self.prefix}/{camera}/output/{output}"

    def barrier_set(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/barrier/set"

    @staticmethod
    def result(command_topic: str) -> str:
        """Where a command's outcome goes: its own topic plus ``/result``."""
        return f"{command_topic}/result"

    def parse_command(self, topic: str) -> tuple[str, str, str | None] | None:
        """``(camera, command, output)`` for a command topic; command is ``trigger``,
        ``output`` or ``barrier``; None for anything else."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) == 2 and levels[1] == "trigger" and levels[0]:
            return levels[0], "trigger", None
        if len(levels) == 3 and levels[1:] == ["barrier", "set"] and levels[0]:
            return levels[0], "barrier", None
        if len(levels) == 4 and levels[1] == "output" and levels[3] == "set" and levels[0]:
            return levels[0], "output", levels[2]
        return None

    def list_add(self, list_name: str) -> str:
        return f"{self.prefix}/lists/{list_name}/add"

    def list_remove(self, list_name: str) -> str:
        return f"{self.prefix}/lists/{list_name}/remove"

    def parse_list_command(self, topic: str) -> tuple[str, Literal["add", "remove"]] | None:
        """``(list, "add" | "remove")`` for ``<prefix>/lists/<list>/add`` or ``/remove``;
        None for anything else (the list's name is checked where the edit is made)."""
        head = f"{self.prefix}/lists/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) == 2 and levels[0] and levels[1] in ("add", "remove"):
            return levels[0], "add" if levels[1] == "add" else "remove"
        return None

    def camera_of_trigger(self, topic: str) -> str | None:
        """The camera level of a ``<prefix>/<camera>/trigger`` topic, else None."""
        parsed = self.parse_command(topic)
        return parsed[0] if parsed and parsed[1] == "trigger" else None
