"""The bridge's decisions, with no I/O: what arrived and the state in, effects out.

Like h11's ``Connection``, :class:`Pipeline` never touches a socket, a file, a thread or
the clock on its own: it is handed an input (a read, a picture, another event, a camera's
status, an MQTT message, a command's outcome, new plate lists ...) and returns what must
happen, as plain values (:data:`Effect`): publish this, write this picture file, run this
camera command (now or later), log this. The runtime (:mod:`hik2mqtt.runtime`) carries the
effects out. Time comes from the injected ``clock`` (monotonic seconds) and ``now`` (the
wall clock, for a read's age); randomness from ``rng``.

Policies decided here, each tested by calling :meth:`Pipeline.handle` directly
(``tests/test_pipeline.py``):

- a read's enrichment: age, stale reads marked retransmitted (with one clock warning per
  camera), normalised plate, list match, duplicate flag; duplicates dropped or flagged;
- the gate rule (:func:`hik2mqtt.gate.decide`): its decision is published and, when it
  opens, a camera command is returned (never run from here);
- pictures: retained topics and/or files, at most :data:`MAX_PICTURE_TOPICS` kinds a camera;
- other events, filtered by ``HIK2MQTT_EVENTS`` (parsed once);
- commands from MQTT (or the web page): retained ones ignored, unknown cameras, payload
  size and text, output numbers, the trigger rate limit, a busy camera: refused with a
  reason on ``<command topic>/result``; accepted ones become :class:`RunCommand`;
- camera statuses (published on change), Home Assistant discovery and the camera registry.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hik2mqtt.commands import Command, check_value
from hik2mqtt.config import CameraSettings, Settings
from hik2mqtt.core.untrusted import MAX_REGISTRY_NAMES, registry_names
from hik2mqtt.core.wire import CommandKind
from hik2mqtt.discovery import (
    DeviceInfo,
    bridge_configs,
    camera_configs,
    removal_topics,
)
from hik2mqtt.events import MAX_PICTURES_PER_READ, PlateRead
from hik2mqtt.gate import Decision, decide
from hik2mqtt.images import picture_path, safe_file_part
from hik2mqtt.logsafe import escape
from hik2mqtt.numbers import OUTPUT_ID, read_number
from hik2mqtt.payloads import dumps, plate_doc, read_age, result_payload
from hik2mqtt.plates import Duplicates, Lists, Match, normalize
from hik2mqtt.reads import EventArrived, PictureArrived, ReadArrived
from hik2mqtt.topics import OFFLINE, ONLINE, Topics

MAX_COMMAND_PAYLOAD = 1024
COMMAND_QUEUE = 4  # commands waiting or running per camera; more are refused as busy
MAX_LIST_PAYLOAD = 1024  # a list edit's JSON over MQTT
LIST_EDITS_QUEUE = 4  # list edits waiting or being written; more are refused as busy
LIST_EDIT_FIELDS = {
    "add": frozenset({"plate", "name", "notes", "valid_from", "valid_until"}),
    "remove": frozenset({"plate"}),
}
MAX_PICTURE_TOPICS = 8  # distinct picture kinds (retained topics) per camera
MAX_EVENT_TOPICS = 32  # distinct event types (topic levels) per camera
REGISTRY_DELAY = 2.0  # after a connect: the retained registry has arrived by then
MAX_OTHER_BRIDGES = 1000  # other bridges remembered, at most
# Cameras of this bridge's old registry removed from Home Assistant per start, at most, one
# every REMOVAL_PACE seconds: a forged registry of thousands costs a few small publishes at
# a time, never a queue full of them ahead of the reads.
MAX_REMOVALS = 64
REMOVAL_PACE = 0.05

# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """The broker connection is up (again)."""


@dataclass(frozen=True, slots=True)
class ReadIn:
    camera: str
    source: str  # stream, push, poll or manual
    arrived: ReadArrived


@dataclass(frozen=True, slots=True)
class PictureIn:
    camera: str
    picture: PictureArrived


@dataclass(frozen=True, slots=True)
class EventIn:
    camera: str
    source: str
    arrived: EventArrived


@dataclass(frozen=True, slots=True)
class SkippedIn:
    """A part a camera sent that was not understood."""

    camera: str
    reason: str


@dataclass(frozen=True, slots=True)
class StatusIn:
    camera: str
    online: bool


@dataclass(frozen=True, slots=True)
class MessageIn:
    """An MQTT message on a topic the bridge subscribes to."""

    topic: str
    payload: bytes
    retained: bool
    response_topic: str | None = None  # MQTT 5 request/response
    correlation: bytes | None = None


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command from elsewhere than MQTT (the web page): validated like an MQTT one."""

    camera: str
    kind: CommandKind
    output: int | None
    value: str
    source: str = "web"


@dataclass(frozen=True, slots=True)
class ForgetPictures:
    """A camera's last read was erased (a data-protection request): what the broker
    retains of it (its pictures, of ``kinds`` and every kind seen, and ``state``) goes."""

    camera: str
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CommandDone:
    """A camera command finished: its outcome, for ``<command topic>/result``."""

    camera: str
    command: Command
    ok: bool
    status: int | None
    message: str
    extra: tuple[tuple[str, str | int | None], ...] = ()
    pulse_off: float | None = None  # an output pulse: switch it off after this many seconds


@dataclass(frozen=True, slots=True)
class ListEditDone:
    """A list edit from MQTT was written (or refused): its outcome, for ``<topic>/result``."""

    edit: EditList
    ok: bool
    status: int
    message: str


@dataclass(frozen=True, slots=True)
class OutputStateIn:
    camera: str
    output: int
    state: str  # on | off


@dataclass(frozen=True, slots=True)
class DeviceInfoIn:
    camera: str
    info: DeviceInfo


@dataclass(frozen=True, slots=True)
class ListsIn:
    """New plate lists took effect."""

    lists: Lists


@dataclass(frozen=True, slots=True)
class Rediscover:
    """Publish Home Assistant discovery again."""


@dataclass(frozen=True, slots=True)
class RegistryDue:
    """Time to publish the retained registry of announced cameras."""


@dataclass(frozen=True, slots=True)
class RemoveNext:
    """Time to remove the next camera of the old registry from Home Assistant."""


Input = (
    Connected
    | ReadIn
    | PictureIn
    | EventIn
    | SkippedIn
    | StatusIn
    | MessageIn
    | CommandRequest
    | ForgetPictures
    | CommandDone
    | ListEditDone
    | OutputStateIn
    | DeviceInfoIn
    | ListsIn
    | Rediscover
    | RegistryDue
    | RemoveNext
)

# -- effects --------------------------------------------------------------------------------

Route = Literal["spool", "latest", "now"]
"""How a message goes out: ``spool`` (reads and events: never lost, in order, wait in the
spool while the broker is away), ``latest`` (retained last-value topics: pictures and the
last read; only the newest per topic waits), ``now`` (statuses, results, decisions,
discovery: straight to paho, which queues them briefly)."""

Kind = Literal[
    "read", "event", "gate", "result", "picture", "state", "status", "output", "discovery"
]


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    retain: bool = False
    route: Route = "now"
    kind: Kind = "status"
    camera: str | None = None
    event_id: str | None = None
    correlation: bytes | None = None


@dataclass(frozen=True, slots=True)
class WriteFile:
    path: Path
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RunCommand:
    camera: str
    command: Command
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class EditList:
    """Add an entry to a list of ``HIK2MQTT_LISTS_FILE``, or remove a plate from one: the
    file is checked and written at the edge (:func:`hik2mqtt.listsfile.edit`), which then
    hands back a :class:`ListEditDone`."""

    list_name: str
    op: Literal["add", "remove"]
    entry: dict[str, Any] = field(hash=False)  # the message's JSON object, not yet checked
    topic: str = ""
    response_topic: str | None = None
    correlation: bytes | None = None


@dataclass(frozen=True, slots=True)
class Log:
    level: int
    message: str
    args: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Later:
    delay: float
    input: Input


@dataclass(frozen=True, slots=True)
class Recorded:
    """A read was published: for the history and the live page (its JSON, and the gate
    rule's decision when the rule is on)."""

    camera: str
    doc: dict[str, Any] = field(repr=False)  # the read's JSON, as a dict (do not change it)
    gate: dict[str, Any] | None
    payload: bytes = field(default=b"", repr=False)  # the same, as published


@dataclass(frozen=True, slots=True)
class PictureSeen:
    """A picture of a read arrived: for the page's "last picture" per camera and kind."""

    camera: str
    kind: str
    data: bytes = field(repr=False)
    event_id: str | None


@dataclass(frozen=True, slots=True)
class FetchDeviceInfo:
    camera: str


@dataclass(frozen=True, slots=True)
class StatusChanged:
    camera: str
    online: bool


@dataclass(frozen=True, slots=True)
class WakeOutbox:
    """The broker is back: deliver what waits."""


Effect = (
    Publish
    | WriteFile
    | RunCommand
    | EditList
    | Log
    | Later
    | FetchDeviceInfo
    | StatusChanged
    | WakeOutbox
    | Recorded
    | PictureSeen
)

# -- state ----------------------------------------------------------------------------------


@dataclass
class TopicLevels:
    """The camera-chosen topic levels (picture kinds, event types) a camera has used: at
    most ``limit``, so a camera cannot create retained topics (or memory) without end."""

    limit: int
    what: str
    seen: set[str] = field(default_factory=set)
    warned: bool = False

    def allow(self, camera: str, level: str, effects: list[Effect]) -> bool:
        if level in self.seen:
            return True
        if len(self.seen) < self.limit:
            self.seen.add(level)
            return True
        if not self.warned:
            self.warned = True
            effects.append(
                Log(
                    logging.WARNING,
                    "camera %s: sent more than %d %s; %s and any further new ones are not "
                    "published",
                    (camera, self.limit, self.what, loggable(level)),
                )
            )
        return False


@dataclass
class CameraState:
    """What the pipeline remembers of one camera."""

    settings: CameraSettings
    status: str | None = None  # online | offline; None until known
    last_trigger: float = float("-inf")
    commands: int = 0  # queued or running
    info_asked: bool = False
    clock_warned: bool = False
    picture_kinds: TopicLevels = field(
        default_factory=lambda: TopicLevels(MAX_PICTURE_TOPICS, "kinds of picture")
    )
    event_types: TopicLevels = field(
        default_factory=lambda: TopicLevels(MAX_EVENT_TOPICS, "types of event")
    )


def event_filter(setting: str) -> Callable[[str], bool]:
    """``HIK2MQTT_EVENTS`` parsed once: which other events' types are published."""
    wanted = setting.strip().lower()
    if wanted == "all":
        return lambda _type: True
    if wanted == "none":
        return lambda _type: False
    types = frozenset(t.strip().lower() for t in wanted.split(",") if t.strip())
    return lambda event_type: event_type.lower() in types


def _retained_command(topic: str) -> list[Effect]:
    return [
        Log(
            logging.WARNING,
            "ignored a retained message on %s: a command must not be retained (it "
            "would fire again at every restart); clear it with an empty retained message",
            (loggable(topic),),
        )
    ]


def loggable(text: str | None) -> str:
    """Text from a camera or a publisher made safe for one log line: control characters
    (newlines included) are escaped, so such text cannot forge log lines (the log
    formatter escapes every line again; this keeps the pipeline's Log values clean)."""
    return escape(str(text))


class Pipeline:
    """The decisions of one bridge. Not thread-safe: the runtime calls it under a lock."""

    def __init__(
        self,
        *,
        settings: Settings,
        topics: Topics,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = lambda: 0.5,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.clock = clock
        self.rng = rng
        self.lists = Lists()
        self.duplicates = Duplicates(settings.duplicate_window, clock=clock)
        self.cameras = {name: CameraState(cam) for name, cam in settings.cameras.items()}
        self.device_info: dict[str, DeviceInfo] = {}
        self.registry_seen = False
        self.removals: collections.deque[str] = collections.deque()  # old cameras to remove
        # Other bridges: online, and which of our cameras their registry names.
        self.other_bridges: dict[str | None, tuple[bool, frozenset[str]]] = {}
        self.rediscover_pending = False
        self.list_edits = 0  # list edits from MQTT waiting or being written
        self.shared_warned: set[tuple[str, str]] = set()
        self._wanted = event_filter(settings.events)
        self._ha = settings.homeassistant
        self._images = settings.images

    # -- the one entry point ----------------------------------------------------------------

    def handle(self, item: Input) -> list[Effect]:
        """What ``item`` leads to. Never raises for anything a camera or publisher sent."""
        if isinstance(item, ReadIn):
            return self._read(item)
        if isinstance(item, PictureIn):
            return self._picture(item)
        if isinstance(item, EventIn):
            return self._event(item)
        if isinstance(item, SkippedIn):
            reason = loggable(item.reason)
            return [Log(logging.WARNING, "camera %s: skipped %s", (item.camera, reason))]
        if isinstance(item, StatusIn):
            return self._status(item.camera, item.online)
        if isinstance(item, MessageIn):
            return self._message(item)
        if isinstance(item, CommandRequest):
            return self._request(item)
        if isinstance(item, CommandDone):
            return self._done(item)
        if isinstance(item, ListEditDone):
            return self._list_done(item)
        if isinstance(item, ForgetPictures):
            return self._forget(item)
        if isinstance(item, OutputStateIn):
            topic = self.topics.output_state(item.camera, item.output)
            return [Publish(topic, item.state.encode(), retain=True, kind="output")]
        if isinstance(item, DeviceInfoIn):
            self.device_info[item.camera] = item.info
            return self._discover()
        if isinstance(item, ListsIn):
            self.lists = item.lists
            return []
        if isinstance(item, Rediscover):
            self.rediscover_pending = False
            return self._discover()
        if isinstance(item, RegistryDue):
            return self._registry()
        if isinstance(item, RemoveNext):
            return self._remove_next()
        return self._connected()

    def statuses(self) -> dict[str, str]:
        """Each camera's status (``starting`` until known)."""
        return {name: cam.status or "starting" for name, cam in self.cameras.items()}

    # -- reads ------------------------------------------------------------------------------

    def _picture_file(self, camera: str, arrived: ReadArrived, kind: str) -> Path | None:
        if self._images.dir is None:
            return None
        return picture_path(
            self._images.dir, camera=camera, read=arrived.read, kind=kind, received=arrived.received
        )

    def _read(self, item: ReadIn) -> list[Effect]:
        camera, arrived = item.camera, item.arrived
        state = self.cameras[camera]
        read = arrived.read
        effects: list[Effect] = []
        kinds = [k for k in arrived.kinds if state.picture_kinds.allow(camera, k, effects)]
        images = {
            kind: {
                "topic": self.topics.image(camera, kind) if self._images.mqtt else None,
                "file": str(path) if (path := self._picture_file(camera, arrived, kind)) else None,
            }
            for kind in kinds
        }
        age = read_age(read, arrived.received)
        max_age = state.settings.max_age
        stale = bool(max_age) and age is not None and age > max_age
        if stale and not read.retransmitted and not state.clock_warned:
            state.clock_warned = True
            effects.append(self._clock_warning(camera, age))
        retransmitted = read.retransmitted or stale
        normalized = normalize(read.plate)
        match, lapsed = self.lists.lookup(read.plate, now=arrived.received.timestamp())
        # A retransmitted read is history: it neither is a duplicate nor makes the next live
        # read of the same plate one.
        duplicate = not retransmitted and self.duplicates.check(camera, normalized)
        doc = plate_doc(
            camera=camera,
            read=read,
            source=item.source,
            received=arrived.received,
            images=images,
            age=age,
            retransmitted=retransmitted,
            extra={
                "normalized": normalized,
                "match": match.as_dict() if match else None,
                "duplicate": duplicate,
                "bridge": self.topics.bridge_id,
            },
        )
        payload = dumps(doc)
        effects.append(
            Log(
                logging.INFO,
                "camera %s: plate %s (confidence %s, %s)%s%s",
                (
                    camera,
                    loggable(read.plate)
                    if read.plate
                    else f"not read ({loggable(read.raw_plate)})",
                    read.confidence,
                    item.source,
                    f" [retransmitted, {age:.0f} s old]" if retransmitted and age else "",
                    " [duplicate]" if duplicate else "",
                ),
            )
        )
        if duplicate and self.settings.duplicates == "drop":
            return effects
        effects.append(
            Publish(
                self.topics.plate(camera),
                payload,
                route="spool",
                kind="read",
                camera=camera,
                event_id=read.event_id,
            )
        )
        # Retained: the last read, for dashboards (the "latest wins" path).
        state_topic = self.topics.state(camera)
        effects.append(Publish(state_topic, payload, retain=True, route="latest", kind="state"))
        gate = self._gate(
            camera,
            read=read,
            retransmitted=retransmitted,
            duplicate=duplicate,
            age=age,
            match=match,
            lapsed=lapsed,
            effects=effects,
        )
        effects.append(Recorded(camera, doc, gate, payload))
        return effects

    def _gate(
        self,
        camera: str,
        *,
        read: PlateRead,
        retransmitted: bool,
        duplicate: bool,
        age: float | None,
        match: Match | None,
        lapsed: Match | None,
        effects: list[Effect],
    ) -> dict[str, Any] | None:
        """The gate rule's decision on a read (None when the rule is off)."""
        rule = self.cameras[camera].settings.gate
        if not rule.enabled:
            return None
        decision = decide(
            rule,
            plate=read.plate,
            confidence=read.confidence,
            retransmitted=retransmitted,
            duplicate=duplicate,
            age=age,
            match=match,
            lapsed=lapsed,
        )
        if decision.open and self.cameras[camera].commands >= COMMAND_QUEUE:
            decision = Decision(False, "the camera is busy with earlier commands")
        action = None
        if decision.open:
            pulse = f"output {rule.output} for {rule.pulse:g} s"
            action = "barrier open" if rule.barrier else pulse
        gate = {
            "plate": read.plate,
            "event_id": read.event_id,
            "open": decision.open,
            "reason": decision.reason,
            "action": action,
        }
        effects.append(Publish(self.topics.gate(camera), dumps(gate), kind="gate", camera=camera))
        verb = "opens" if decision.open else "stays"
        effects.append(Log(logging.INFO, "camera %s: gate %s: %s", (camera, verb, decision.reason)))
        if decision.open:
            if rule.barrier:
                command = Command("barrier", self.topics.barrier_set(camera), 0, "open", "gate")
            else:
                topic = self.topics.output_set(camera, rule.output)
                command = Command("output", topic, rule.output, f"{rule.pulse:g}", "gate")
            effects.extend(self._queue(camera, command))
        return gate

    def _clock_warning(self, camera: str, age: float | None) -> Log:
        return Log(
            logging.WARNING,
            "camera %s: a read arrived %.0f s after the camera's time for it; reads older than "
            "%.0f s are marked retransmitted. If the camera's clock is wrong, set it (NTP) or "
            "raise HIK2MQTT_CAMERAS__%s__MAX_AGE (0 turns this off)",
            (camera, age or 0, self.cameras[camera].settings.max_age, camera.upper()),
        )

    def _picture(self, item: PictureIn) -> list[Effect]:
        camera, picture = item.camera, item.picture
        state = self.cameras[camera]
        effects: list[Effect] = []
        if not state.picture_kinds.allow(camera, picture.kind, effects):
            return effects
        if self._images.mqtt:
            topic = self.topics.image(camera, picture.kind)
            effects.append(
                Publish(topic, picture.data, retain=True, route="latest", kind="picture")
            )
        path = self._picture_file(camera, picture.read, picture.kind)
        if path is not None:
            effects.append(WriteFile(path, picture.data))
        effects.append(PictureSeen(camera, picture.kind, picture.data, picture.read.read.event_id))
        return effects

    def _forget(self, item: ForgetPictures) -> list[Effect]:
        """Empty retained messages clear the last pictures and the last read's JSON."""
        state = self.cameras.get(item.camera)
        if state is None:
            return []
        given = {
            k for k in item.kinds[:MAX_PICTURES_PER_READ] if k == safe_file_part(k, fallback="")
        }
        effects: list[Effect] = [
            Publish(
                self.topics.image(item.camera, kind),
                b"",
                retain=True,
                route="latest",
                kind="picture",
            )
            for kind in sorted(given | state.picture_kinds.seen)
        ]
        state_topic = self.topics.state(item.camera)
        effects.append(Publish(state_topic, b"", retain=True, route="latest", kind="state"))
        message = "camera %s: its last read was erased; retained pictures and state cleared"
        effects.append(Log(logging.INFO, message, (item.camera,)))
        return effects

    def _event(self, item: EventIn) -> list[Effect]:
        event = item.arrived.event
        if not self._wanted(event.event_type):
            return []
        kind = safe_file_part(event.event_type, fallback="event", limit=40)
        effects: list[Effect] = []
        if not self.cameras[item.camera].event_types.allow(item.camera, kind, effects):
            return effects
        payload = {
            "camera": item.camera,
            "type": event.event_type,
            "state": event.state,
            "description": event.description,
            "channel": event.channel,
            "time": event.time,
            "source": item.source,
        }
        topic = self.topics.event(item.camera, kind)
        effects.append(
            Publish(topic, dumps(payload), route="spool", kind="event", camera=item.camera)
        )
        return effects

    # -- statuses, discovery ----------------------------------------------------------------

    def _status(self, camera: str, online: bool) -> list[Effect]:
        state = self.cameras.get(camera)
        value = ONLINE if online else OFFLINE
        if state is None or state.status == value:
            return []
        state.status = value
        effects: list[Effect] = [
            Publish(self.topics.camera_status(camera), value.encode(), retain=True),
            StatusChanged(camera, online),
            Log(logging.INFO, "camera %s: %s", (camera, value)),
        ]
        if online and not state.info_asked:
            # Its login works now: ask for the device info for Home Assistant (once; never
            # while logins are refused, which would help lock the account).
            state.info_asked = True
            if self._ha.enabled:
                effects.append(FetchDeviceInfo(camera))
        return effects

    def _connected(self) -> list[Effect]:
        """After every (re)connect: bridge online, waiting reads, discovery, registry,
        each camera's status."""
        effects: list[Effect] = [
            Publish(self.topics.bridge_status, ONLINE.encode(), retain=True),
            WakeOutbox(),
        ]
        effects += self._discover()
        # After the retained registries have been read (they arrive on subscribe, before
        # this), say which cameras this bridge has now.
        effects.append(Later(REGISTRY_DELAY, RegistryDue()))
        for camera, state in self.cameras.items():
            if state.status is not None:
                topic = self.topics.camera_status(camera)
                effects.append(Publish(topic, state.status.encode(), retain=True))
        return effects

    def _discover(self) -> list[Effect]:
        if not self._ha.enabled:
            return []
        configs = bridge_configs(
            self.topics, discovery_prefix=self._ha.prefix, configuration_url=self.settings.web.link
        )
        for name, state in self.cameras.items():
            configs.update(
                camera_configs(
                    self.topics,
                    discovery_prefix=self._ha.prefix,
                    camera=name,
                    display_name=state.settings.name or name,
                    configuration_url=state.settings.base_url,
                    info=self.device_info.get(name, DeviceInfo()),
                )
            )
        return [
            Publish(topic, payload, retain=True, kind="discovery")
            for topic, payload in configs.items()
        ]

    def _registry(self) -> list[Effect]:
        self.registry_seen = True
        registry = json.dumps(sorted(self.cameras)).encode()
        return [Publish(self.topics.camera_registry, registry, retain=True, kind="discovery")]

    def _ha_message(self, item: MessageIn) -> list[Effect] | None:
        """Home Assistant's status and our camera registry; None for anything else."""
        if item.topic == f"{self._ha.prefix}/status":
            if item.payload.strip() == b"online":
                # HA (re)started: announce again after a short random delay, so that many
                # bridges and devices don't all answer in the same instant.
                if self.rediscover_pending:  # one announcement answers a burst of these
                    return []
                self.rediscover_pending = True
                return [Later(0.5 + 2.5 * self.rng(), Rediscover())]
            return []
        return None

    def _bridge_message(self, item: MessageIn, bridge: str | None, kind: str) -> list[Effect]:
        """A bridge's retained status or camera registry (ours, or another bridge's)."""
        if bridge == self.topics.bridge_id:
            if kind == "cameras" and self._ha.enabled:
                return self._our_old_registry(item.payload)
            return []
        if len(self.other_bridges) >= MAX_OTHER_BRIDGES and bridge not in self.other_bridges:
            return []
        online, ours = self.other_bridges.get(bridge, (False, frozenset()))
        if kind == "status":
            online = item.payload == b"online"
        else:  # parsed once, on arrival; only the names of our own cameras are kept
            ours = frozenset(self._names_in(item.payload) & set(self.cameras))
        self.other_bridges[bridge] = (online, ours)
        if not online:
            return []
        effects: list[Effect] = []
        other = bridge if bridge is not None else "(no id)"
        for camera in sorted(ours):
            if (camera, other) in self.shared_warned:
                continue
            self.shared_warned.add((camera, other))
            effects.append(
                Log(
                    logging.WARNING,
                    "camera %s is also configured on the live bridge %s: both publish its "
                    "reads and both may open its gate; configure each camera on one bridge "
                    "(HIK2MQTT_BRIDGE_ID)",
                    (camera, loggable(other)),
                )
            )
        return effects

    @staticmethod
    def _names_in(payload: bytes) -> set[str]:
        """The camera names in a registry (a JSON list), by the configuration's rule
        (core/untrusted.py); nothing when it is not one."""
        return set(registry_names(payload)[0])

    def _our_old_registry(self, payload: bytes) -> list[Effect]:
        """The registry this bridge left before this start: remove the cameras that are no
        longer configured from Home Assistant (only once, and only our own).

        Whoever can publish under our prefix can forge it: only names by the configuration's
        rule are taken (at most MAX_REGISTRY_NAMES), at most MAX_REMOVALS of them are
        removed, one camera at a time (RemoveNext), each bad entry costs nothing but a count
        in one log line."""
        if self.registry_seen:
            return []
        self.registry_seen = True
        names, skipped = registry_names(payload)
        gone = sorted(set(names) - set(self.cameras))
        effects: list[Effect] = []
        if skipped:
            effects.append(
                Log(
                    logging.WARNING,
                    "the retained camera registry on %s holds %d entries that are not camera "
                    "names (or past %d): ignored",
                    (self.topics.camera_registry, skipped, MAX_REGISTRY_NAMES),
                )
            )
        if len(gone) > MAX_REMOVALS:
            effects.append(
                Log(
                    logging.WARNING,
                    "the retained camera registry on %s names %d cameras no longer configured: "
                    "removing the first %d from Home Assistant, not the rest",
                    (self.topics.camera_registry, len(gone), MAX_REMOVALS),
                )
            )
            gone = gone[:MAX_REMOVALS]
        self.removals.extend(gone)
        return effects + self._remove_next()

    def _remove_next(self) -> list[Effect]:
        """Remove one old camera from Home Assistant; the next one a moment later."""
        if not self.removals:
            return []
        camera = self.removals.popleft()
        effects: list[Effect] = [
            Log(
                logging.INFO,
                "camera %s is no longer configured: removing it from Home Assistant",
                (loggable(camera),),
            )
        ]
        effects += [
            Publish(topic, b"", retain=True, kind="discovery")
            for topic in removal_topics(self._ha.prefix, camera)
        ]
        if self.removals:
            effects.append(Later(REMOVAL_PACE, RemoveNext()))
        return effects

    # -- commands ---------------------------------------------------------------------------

    def _refuse(
        self,
        topic: str,
        message: str,
        *,
        response: str | None = None,
        corr: bytes | None = None,
        status: int | None = None,
    ) -> list[Effect]:
        payload = result_payload(ok=False, status=status, message=message)
        effects: list[Effect] = [
            Log(logging.WARNING, "refused a command on %s: %s", (loggable(topic), message)),
            Publish(self.topics.result(topic), payload, kind="result"),
        ]
        if response:
            effects.append(Publish(response, payload, kind="result", correlation=corr))
        return effects

    def _message(self, item: MessageIn) -> list[Effect]:
        if self._ha.enabled and (effects := self._ha_message(item)) is not None:
            return effects
        if (bridge_topic := self.topics.parse_bridge_topic(item.topic)) is not None:
            return self._bridge_message(item, *bridge_topic)
        if item.response_topic is not None and not self.topics.may_answer_on(
            item.response_topic, also_forbidden=(self._ha.prefix,)
        ):
            log = Log(
                logging.WARNING,
                "not answering the request on %s on its response topic %s: it is under a "
                "prefix of ours",
                (loggable(item.topic), loggable(item.response_topic)),
            )
            item = MessageIn(item.topic, item.payload, item.retained)
            return [log, *self._message(item)]
        if (list_command := self.topics.parse_list_command(item.topic)) is not None:
            return self._list_command(item, *list_command)
        parsed = self.topics.parse_command(item.topic)
        if parsed is None:
            return [Log(logging.WARNING, "ignored a message on %s", (loggable(item.topic),))]
        name, kind, output_text = parsed
        if item.retained:
            return _retained_command(item.topic)

        def refuse(message: str) -> list[Effect]:
            return self._refuse(
                item.topic, message, response=item.response_topic, corr=item.correlation
            )

        if name not in self.cameras:
            if self.topics.bridge_id is not None:  # one of several bridges: maybe another's
                return [Log(logging.DEBUG, "a command for camera %s, not ours", (loggable(name),))]
            return refuse(f"no camera named {name!r}")
        if len(item.payload) > MAX_COMMAND_PAYLOAD:
            return refuse(f"payload of {len(item.payload)} bytes is over {MAX_COMMAND_PAYLOAD}")
        try:
            value = item.payload.decode("utf-8")
        except UnicodeDecodeError:
            return refuse("payload is not UTF-8 text")
        output = 0
        if output_text is not None:
            number = read_number(output_text, OUTPUT_ID)
            if number is None:
                return refuse(f"output {output_text[:20]!r}: expected a number from 1 to 64")
            output = number
        command = Command(
            kind,  # type: ignore[arg-type]  # parse_command returns one of the three
            item.topic,
            output,
            value,
            response_topic=item.response_topic,
            correlation=item.correlation,
        )
        return self._validate(name, command, refuse)

    def _list_command(
        self, item: MessageIn, list_name: str, op: Literal["add", "remove"]
    ) -> list[Effect]:
        """``<prefix>/lists/<list>/add`` or ``/remove``: the message checked here (retained,
        size, UTF-8, a JSON object of known fields, how many edits wait); the entry itself
        where the file is written, by the same rules as the page's editor."""
        if item.retained:
            return _retained_command(item.topic)
        if self.settings.lists_file is None:
            if self.topics.bridge_id is not None:  # one of several: maybe another's lists
                return [Log(logging.DEBUG, "a list edit, and no lists file here", ())]
            return self._refuse(
                item.topic,
                "no lists file configured (HIK2MQTT_LISTS_FILE)",
                response=item.response_topic,
                corr=item.correlation,
            )

        def refuse(message: str) -> list[Effect]:
            return self._refuse(
                item.topic, message, response=item.response_topic, corr=item.correlation
            )

        if len(item.payload) > MAX_LIST_PAYLOAD:
            return refuse(f"payload of {len(item.payload)} bytes is over {MAX_LIST_PAYLOAD}")
        example = '{"plate": "AB12CDE"}'
        try:
            entry = json.loads(item.payload.decode("utf-8"))
        except UnicodeDecodeError:
            return refuse("payload is not UTF-8 text")
        except (ValueError, RecursionError):
            return refuse(f"payload is not JSON: expected an object such as {example}")
        if not isinstance(entry, dict):
            return refuse(f"expected a JSON object such as {example}")
        unknown = sorted(set(entry) - LIST_EDIT_FIELDS[op])
        if unknown:
            known = ", ".join(sorted(LIST_EDIT_FIELDS[op]))
            return refuse(f"{op}: unknown field {unknown[0][:40]!r} (known: {known})")
        if self.list_edits >= LIST_EDITS_QUEUE:
            return refuse("busy: earlier list edits are still being written")
        self.list_edits += 1
        edit = EditList(list_name, op, entry, item.topic, item.response_topic, item.correlation)
        return [edit]

    def _list_done(self, item: ListEditDone) -> list[Effect]:
        self.list_edits = max(0, self.list_edits - 1)
        edit = item.edit
        if not item.ok:
            return self._refuse(
                edit.topic,
                item.message,
                response=edit.response_topic,
                corr=edit.correlation,
                status=item.status,
            )
        payload = result_payload(ok=True, status=item.status, message=item.message)
        effects: list[Effect] = [
            Log(logging.INFO, "lists: %s (over MQTT)", (loggable(item.message),)),
            Publish(self.topics.result(edit.topic), payload, kind="result"),
        ]
        if edit.response_topic:
            effects.append(
                Publish(edit.response_topic, payload, kind="result", correlation=edit.correlation)
            )
        return effects

    def _request(self, item: CommandRequest) -> list[Effect]:
        """A command from the web page: the same checks as one from MQTT."""
        if item.camera not in self.cameras:
            return [
                Log(
                    logging.WARNING,
                    "refused a command for unknown camera %s",
                    (loggable(item.camera),),
                )
            ]
        if item.kind == "trigger":
            topic = self.topics.trigger(item.camera)
        elif item.kind == "barrier":
            topic = self.topics.barrier_set(item.camera)
        else:
            topic = self.topics.output_set(item.camera, item.output or 0)
            if read_number(item.output, OUTPUT_ID) is None:
                return self._refuse(topic, f"output {item.output}: expected a number from 1 to 64")
        command = Command(item.kind, topic, item.output or 0, item.value, item.source)

        def refuse(message: str) -> list[Effect]:
            return self._refuse(topic, message)

        return self._validate(item.camera, command, refuse)

    def _validate(
        self, camera: str, command: Command, refuse: Callable[[str], list[Effect]]
    ) -> list[Effect]:
        if (problem := check_value(command.kind, command.value)) is not None:
            return refuse(problem)
        state = self.cameras[camera]
        if command.kind == "trigger":
            now = self.clock()
            interval = state.settings.trigger_interval
            if now - state.last_trigger < interval:
                return refuse(f"rate limited: at most one trigger every {interval:g} s")
            state.last_trigger = now
        return self._queue(camera, command, refuse)

    def _queue(
        self,
        camera: str,
        command: Command,
        refuse: Callable[[str], list[Effect]] | None = None,
    ) -> list[Effect]:
        state = self.cameras[camera]
        if state.commands >= COMMAND_QUEUE:
            message = "busy: earlier commands still running"
            return refuse(message) if refuse else self._refuse(command.reply_to, message)
        state.commands += 1
        return [RunCommand(camera, command)]

    def _done(self, item: CommandDone) -> list[Effect]:
        state = self.cameras.get(item.camera)
        if state is not None and state.commands > 0 and not item.command.follow_up:
            state.commands -= 1
        command = item.command
        payload = result_payload(
            ok=item.ok, status=item.status, message=item.message, **dict(item.extra)
        )
        effects: list[Effect] = [
            Publish(self.topics.result(command.reply_to), payload, kind="result")
        ]
        if command.response_topic:
            effects.append(
                Publish(
                    command.response_topic, payload, kind="result", correlation=command.correlation
                )
            )
        if item.pulse_off is not None:
            off = Command(
                "output", command.reply_to, command.output, "off", command.source, follow_up=True
            )
            effects.append(RunCommand(item.camera, off, delay=item.pulse_off))
        return effects
