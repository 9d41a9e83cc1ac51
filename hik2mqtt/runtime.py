"""The thin runtime: carries out the pipeline's effects (threads, the outbox, files, timers).

- :meth:`Runtime.submit` hands an input to the pipeline under one lock and carries out the
  quick effects (publishes, logs, metrics, queueing a command, timers) before releasing
  it, so that a camera's statuses and reads go out in the order they were decided; slow
  ones (picture files, the device-info request) run after, on the caller's thread or
  their own.
- The control thread takes what paho's callbacks queued (connects, messages), runs the
  timers (:class:`~hik2mqtt.pipeline.Later`, delayed commands) and the housekeeping
  (plate lists reload, health file, picture folder pruning).
- One command thread per camera runs its commands in order over HTTP and hands each
  outcome back to the pipeline.

Every thread here runs under :func:`hik2mqtt.supervise.supervise`.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hik2mqtt import isapi, listsfile
from hik2mqtt.camera import AuthGate, CameraClient
from hik2mqtt.commands import Command, CommandRunner
from hik2mqtt.config import CameraSettings
from hik2mqtt.errors import AuthError, CameraError
from hik2mqtt.images import ImageFolder
from hik2mqtt.metrics import Metrics
from hik2mqtt.mqtt import JPEG, JSON, TEXT, MqttLink, Props, expiring
from hik2mqtt.outbox import Outbox
from hik2mqtt.pipeline import (
    CommandDone,
    DeviceInfoIn,
    EditList,
    Effect,
    EventIn,
    FetchDeviceInfo,
    Input,
    Later,
    ListEditDone,
    ListsIn,
    Log,
    MessageIn,
    OutputStateIn,
    PictureIn,
    PictureSeen,
    Pipeline,
    Publish,
    ReadIn,
    Recorded,
    RunCommand,
    SkippedIn,
    StatusChanged,
    WakeOutbox,
    WriteFile,
)
from hik2mqtt.plates import ListsFile
from hik2mqtt.reads import (
    Dropped,
    EventArrived,
    HeartbeatArrived,
    Output,
    PictureArrived,
    ReadArrived,
)
from hik2mqtt.supervise import supervise

log = logging.getLogger(__name__)
decisions = logging.getLogger("hik2mqtt.pipeline")
_RETAINED_PROPS: dict[str, Props] = {
    "picture": Props(content_type=JPEG),
    "state": Props(content_type=JSON),
    "discovery": Props(content_type=JSON),
    "status": Props(content_type=TEXT),
    "output": Props(content_type=TEXT),
}

PRUNE_EVERY = 3600.0
LISTS_CHECK_EVERY = 2.0
HEALTH_EVERY = 5.0
MAX_CONTROL_QUEUE = 10_000  # MQTT messages waiting for the control thread, at most
DEVICE_INFO_LIMIT = 65536


@dataclass
class CameraHandle:
    """What the runtime needs of one camera: its settings, its shared login gate, its
    command queue and a way to make an HTTP client for it."""

    name: str
    settings: CameraSettings
    auth: AuthGate
    new_client: Callable[[], CameraClient]
    # Unbounded so that stop's sentinel (None) always fits; the pipeline bounds it.
    commands: queue.Queue[Command | None]


class Runtime:
    def __init__(
        self,
        *,
        pipeline: Pipeline,
        link: MqttLink,
        outbox: Outbox,
        metrics: Metrics,
        cameras: dict[str, CameraHandle],
        lists: ListsFile,
        folder: ImageFolder | None,
        health_file: Path | None,
        stop: threading.Event,
        read_expiry: int = 0,
    ) -> None:
        self.read_expiry = read_expiry
        self.pipeline = pipeline
        self.link = link
        self.outbox = outbox
        self.metrics = metrics
        self.cameras = cameras
        self.lists = lists
        self.folder = folder
        self.health_file = health_file
        self._stop = stop
        self._lock = threading.Lock()
        self._control: queue.Queue[Input | None] = queue.Queue()
        self._dropped = 0
        self._dropped_logged = float("-inf")
        self._timers: list[tuple[float, int, Callable[[], object]]] = []
        self._timers_lock = threading.Lock()
        self._seq = itertools.count()
        self._lists_lock = threading.Lock()
        self._follow_ups: dict[int, tuple[CameraHandle, Command]] = {}
        # List edits from MQTT, written in order on their own thread (the pipeline lets at
        # most LIST_EDITS_QUEUE wait); None stops it.
        self.list_edits: queue.Queue[EditList | None] = queue.Queue()
        # More reasons the bridge is not healthy (the web page's server, when it runs).
        self.extra_problems: list[Callable[[], str | None]] = []
        self._health_lock = threading.Lock()
        self._health_final = False  # the bridge stopped: its last word is written
        # Who else sees each published read and picture (the web page and its history);
        # called on the thread that brought the read, after the pipeline's lock is let go,
        # so they must only queue what they get.
        self.observers: list[Callable[[Recorded | PictureSeen], None]] = []

    # -- inputs -----------------------------------------------------------------------------

    def post(self, item: Input) -> None:
        """From paho's thread (or any that must not wait): handled on the control thread.
        Past MAX_CONTROL_QUEUE waiting, MQTT messages are dropped (a flood of commands
        costs only its sender), with a line at most once a minute."""
        if isinstance(item, MessageIn) and self._control.qsize() >= MAX_CONTROL_QUEUE:
            self._dropped += 1
            now = time.monotonic()
            if now - self._dropped_logged >= 60:
                self._dropped_logged = now
                log.warning(
                    "MQTT messages arrive faster than the bridge handles them: %d dropped",
                    self._dropped,
                )
            return
        self._control.put(item)

    def wake(self) -> None:
        self._control.put(None)

    def submit(self, item: Input) -> list[Effect]:
        """Hand ``item`` to the pipeline, carry out what it decides, and return that."""
        later: list[Effect] = []
        with self._lock:
            try:
                effects = self.pipeline.handle(item)
            except Exception:  # a bug costs this input, never the thread that brought it
                log.exception("error deciding about %s", type(item).__name__)
                return []
            for effect in effects:
                # Files, threads and the page's copy of a read need no decision's lock:
                # they are carried out after it, on this same thread.
                if isinstance(effect, WriteFile | FetchDeviceInfo | Recorded | PictureSeen):
                    later.append(effect)
                else:
                    self._apply_safely(effect)
        for effect in later:
            self._apply_safely(effect)
        return effects

    def _apply_safely(self, effect: Effect) -> None:
        """One effect that fails (a full disk under the spool, say) costs only itself: the
        others of the same input (the gate's command above all) are still carried out."""
        try:
            self._apply(effect)
        except Exception:
            log.exception("could not carry out %s", type(effect).__name__)

    def reload_lists(self) -> bool:
        """Read the lists file again if it changed (control thread, or the page after an
        edit); True when new lists took effect."""
        with self._lists_lock:
            if not self.lists.reload():
                return False
            lists = self.lists.lists
        self.submit(ListsIn(lists))
        return True

    def deliver_for(self, camera: str, source: str) -> Callable[[Output], None]:
        """Where a camera's outputs (reads, pictures, events) go."""
        reads = self.metrics.reads.labels(camera, source)
        pictures = self.metrics.pictures.labels(camera)
        errors = self.metrics.errors.labels(camera)

        def deliver(output: Output) -> None:
            if isinstance(output, ReadArrived):
                reads.inc()
                self.submit(ReadIn(camera, source, output))
            elif isinstance(output, PictureArrived):
                pictures.inc()
                self.submit(PictureIn(camera, output))
            elif isinstance(output, EventArrived):
                self.submit(EventIn(camera, source, output))
            elif isinstance(output, Dropped):
                errors.inc()  # its reason was logged once, by the Skipped before it
            elif not isinstance(output, HeartbeatArrived):
                errors.inc()
                self.submit(SkippedIn(camera, output.reason))

        return deliver

    def statuses(self) -> dict[str, str]:
        with self._lock:
            return self.pipeline.statuses()

    # -- effects ----------------------------------------------------------------------------

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, Publish):
            self._publish(effect)
        elif isinstance(effect, Log):
            decisions.log(effect.level, effect.message, *effect.args)
        elif isinstance(effect, StatusChanged):
            self.metrics.camera_up.labels(effect.camera).set(1 if effect.online else 0)
            if not effect.online:
                self.metrics.reconnects.labels(effect.camera).inc()
        elif isinstance(effect, RunCommand):
            handle = self.cameras[effect.camera]
            if effect.delay > 0:  # a pulse's "off": also sent at once if the bridge stops
                key = next(self._seq)
                self._follow_ups[key] = (handle, effect.command)
                self._at(effect.delay, lambda: self._follow_up(key))
            else:
                handle.commands.put(effect.command)
        elif isinstance(effect, EditList):
            self.list_edits.put(effect)
        elif isinstance(effect, Later):
            self._at(effect.delay, lambda: self.submit(effect.input))
        elif isinstance(effect, WriteFile):
            if self.folder is not None:
                self.folder.write(effect.path, effect.data)
        elif isinstance(effect, FetchDeviceInfo):
            work = functools.partial(self._device_info, effect.camera)
            threading.Thread(
                target=supervise(work, name=f"info-{effect.camera}", stop=self._stop),
                name="info",
                daemon=True,
            ).start()
        elif isinstance(effect, WakeOutbox):
            self.outbox.wake()
        elif isinstance(effect, Recorded | PictureSeen):
            for observer in self.observers:
                observer(effect)

    def _publish(self, effect: Publish) -> None:
        props = self.props(effect)
        if effect.route == "now" and props.expiry and not self.link.connected.is_set():
            # Broker away: a gate decision or a command's outcome waits in the spool, where
            # its expiry counts down (paho's own queue would send it later as if new).
            self.outbox.read(effect.topic, effect.payload, props)
        elif effect.route == "spool":
            self.outbox.read(effect.topic, effect.payload, props)
        elif effect.route == "latest":
            self.outbox.latest(effect.topic, effect.payload, props)
        else:
            self.link.publish(effect.topic, effect.payload, retain=effect.retain, props=props)

    def props(self, effect: Publish) -> Props:
        """MQTT 5 properties of a message (dropped under 3.1.1): its content type; an expiry
        on every non-retained message a gate might act on (reads, events, gate decisions,
        command results), so that a subscriber that was away gets nothing stale; user
        properties ``camera`` and ``event_id`` on reads; the request's correlation data on
        an answer to a response topic."""
        kind = effect.kind
        if kind == "read":
            user = {"camera": effect.camera, "event_id": effect.event_id}
            return expiring(JSON, self.read_expiry, **user)
        if kind in ("event", "gate", "result"):
            props = expiring(JSON, self.read_expiry)
            if effect.correlation is not None:
                props = replace(props, correlation_data=effect.correlation)
            return props
        return _RETAINED_PROPS[kind]

    def _follow_up(self, key: int) -> None:
        with self._timers_lock:
            found = self._follow_ups.pop(key, None)
        if found is not None:
            found[0].commands.put(found[1])

    def release_follow_ups(self) -> None:
        """Stopping: queue every pending pulse's "off" now (before the command threads'
        stop), so no output is left on when the bridge stops during a pulse."""
        with self._timers_lock:
            pending = list(self._follow_ups.values())
            self._follow_ups.clear()
        for handle, command in pending:
            handle.commands.put(command)

    def _at(self, delay: float, action: Callable[[], object]) -> None:
        with self._timers_lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), action))
        self.wake()

    def _device_info(self, camera: str) -> None:
        """Once a login has worked: the camera's model, serial and firmware for its HA device."""
        handle = self.cameras[camera]
        client = handle.new_client()
        try:
            reply = client.request("/ISAPI/System/deviceInfo", limit=DEVICE_INFO_LIMIT)
        except AuthError as exc:
            handle.auth.refused(exc)
            return
        except CameraError as exc:
            log.debug("camera %s: no device info (%s)", camera, exc)
            return
        finally:
            client.close()
        info = isapi.device_info(reply.body)
        if info is not None:
            self.post(DeviceInfoIn(camera, info))

    # -- threads ----------------------------------------------------------------------------

    def run_control(self) -> None:
        """The control thread: queued inputs, timers and housekeeping until the stop."""
        now = time.monotonic()
        next_prune = now
        next_health = now
        next_lists = now
        while not self._stop.is_set():
            now = time.monotonic()
            due: list[float] = []
            if self.health_file is not None:
                if now >= next_health:
                    self.write_health()
                    next_health = now + HEALTH_EVERY
                due.append(next_health)
            if self.folder is not None:
                if now >= next_prune:
                    self.folder.prune()
                    next_prune = now + PRUNE_EVERY
                due.append(next_prune)
            if self.lists.path is not None:
                if now >= next_lists:
                    self.reload_lists()
                    next_lists = now + LISTS_CHECK_EVERY
                due.append(next_lists)
            for action in self._due_timers(now):
                action()
            with self._timers_lock:
                if self._timers:
                    due.append(self._timers[0][0])
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            try:
                item = self._control.get(timeout=timeout)
            except queue.Empty:
                continue
            if item is not None:
                self.submit(item)

    def _due_timers(self, now: float) -> list[Callable[[], object]]:
        actions = []
        with self._timers_lock:
            while self._timers and self._timers[0][0] <= now:
                actions.append(heapq.heappop(self._timers)[2])
        return actions

    def run_commands(self, runner: CommandRunner) -> None:
        """One camera's command thread: its commands in order, until the stop sentinel."""
        handle = self.cameras[runner.name]
        while (command := handle.commands.get()) is not None:
            try:
                outcome = runner.execute(command)
            except Exception:  # one command's bug must not stop the others
                log.exception("camera %s: %s failed", runner.name, command.kind)
                self.submit(CommandDone(runner.name, command, False, None, "internal error"))
                continue
            if outcome.output_state is not None:
                self.submit(OutputStateIn(runner.name, command.output, outcome.output_state))
            self.submit(
                CommandDone(
                    runner.name,
                    command,
                    outcome.ok,
                    outcome.status,
                    outcome.message,
                    outcome.extra,
                    outcome.pulse_off,
                )
            )

    def run_list_edits(self) -> None:
        """The lists thread: each list edit from MQTT written like the page writes it, then
        the lists reloaded and the outcome handed to the pipeline; until the stop sentinel."""
        while (edit := self.list_edits.get()) is not None:
            try:
                done = self._edit_list(edit)
            except Exception:  # one edit's bug must not stop the others
                log.exception("lists: the edit on %s failed", edit.topic)
                done = ListEditDone(edit, False, 500, "internal error")
            self.submit(done)

    def _edit_list(self, edit: EditList) -> ListEditDone:
        if self.lists.path is None:
            return ListEditDone(edit, False, 409, "no lists file configured (HIK2MQTT_LISTS_FILE)")
        try:
            message = listsfile.edit(self.lists.path, edit.list_name, edit.op, edit.entry)
        except listsfile.ListsRefused as exc:
            return ListEditDone(edit, False, exc.status, exc.reason)
        self.reload_lists()
        return ListEditDone(edit, True, 200, message)

    # -- health -----------------------------------------------------------------------------

    def health_problems(self) -> list[str]:
        """What keeps the bridge from being healthy (empty: broker and cameras connected)."""
        problems = [] if self.link.connected.is_set() else ["not connected to the MQTT broker"]
        for name, status in self.statuses().items():
            if status != "online":
                problems.append(f"camera {name} is {status}")
        problems += [p for check in self.extra_problems if (p := check()) is not None]
        return problems

    def write_health(self, *, stopped: bool = False) -> None:
        """The bridge's real state, for ``hik2mqtt health`` (written atomically); with
        ``stopped`` (a clean stop), that the bridge has stopped, written once and last."""
        path = self.health_file
        if path is None:
            return
        with self._health_lock:
            if self._health_final:
                return
            if stopped:
                self._health_final = True
                doc: dict[str, object] = {"time": time.time(), "stopped": True}
            else:
                doc = {
                    "time": time.time(),
                    "broker": self.link.connected.is_set(),
                    "cameras": self.statuses(),
                    "problems": [p for check in self.extra_problems if (p := check()) is not None],
                }
            try:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(json.dumps(doc))
                tmp.replace(path)
            except OSError as exc:
                log.warning("cannot write the health file %s: %s", path, exc)
                if stopped:  # no stale "healthy" left behind for up to --max-age
                    with contextlib.suppress(OSError):
                        path.unlink()
