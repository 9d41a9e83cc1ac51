"""Topic names: every topic hik2mqtt uses is built here (payloads are built in
:mod:`hik2mqtt.payloads`, picture file names in :mod:`hik2mqtt.images`), so the README's
topic reference, and the tests that check it, have one place to look.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "anpr"

    @property
    def bridge_status(self) -> str:
        return f"{self.prefix}/bridge/status"

    @property
    def camera_registry(self) -> str:
        """Retained list of the cameras the bridge announced (to remove dropped ones)."""
        return f"{self.prefix}/bridge/cameras"

    @property
    def command_subscriptions(self) -> list[str]:
        return [
            f"{self.prefix}/+/trigger",
            f"{self.prefix}/+/output/+/set",
            f"{self.prefix}/+/barrier/set",
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

    def camera_of_trigger(self, topic: str) -> str | None:
        """The camera level of a ``<prefix>/<camera>/trigger`` topic, else None."""
        parsed = self.parse_command(topic)
        return parsed[0] if parsed and parsed[1] == "trigger" else None
