"""Wiring: cameras -> events -> MQTT, and MQTT commands -> cameras.

Threads: paho's network thread; one control thread (broker connects, incoming
commands, housekeeping); per camera one stream thread and one command thread. They share
one stop event; every blocking call has a timeout, so a stop takes effect within seconds.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hik2mqtt.camera import DRAIN_ON_STOP, AuthGate, CameraClient, StreamWorker
from hik2mqtt.commands import Command, CommandRunner, check_value
from hik2mqtt.config import CameraSettings, Settings
from hik2mqtt.discovery import DeviceInfo, bridge_configs, camera_configs, removal_topics
from hik2mqtt.errors import AuthError, CameraError, DecodeError
from hik2mqtt.events import parse_xml
from hik2mqtt.gate import decide
from hik2mqtt.images import ImageFolder
from hik2mqtt.metrics import Metrics, MetricsListener
from hik2mqtt.mqtt import MqttLink
from hik2mqtt.outbox import Outbox
from hik2mqtt.plates import Duplicates, ListsFile, normalize
from hik2mqtt.poll import PollWorker
from hik2mqtt.push import PushCamera, PushListener
from hik2mqtt.reads import EventArrived, Output, PictureArrived, ReadArrived, Skipped
from hik2mqtt.spool import CursorStore, MemorySpool, Spool, SqliteSpool
from hik2mqtt.topics import (
    OFFLINE,
    ONLINE,
    Topics,
    picture_path,
    plate_payload,
    read_age,
    result_payload,
    safe_file_part,
)

log = logging.getLogger(__name__)

MAX_COMMAND_PAYLOAD = 1024
COMMAND_QUEUE = 4
PRUNE_EVERY = 3600.0
LISTS_CHECK_EVERY = 2.0
HEALTH_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class _Connected:
    pass


@dataclass(frozen=True, slots=True)
class _Discover:
    """Publish Home Assistant discovery again (HA restarted, or device info arrived)."""


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    retained: bool


class _Camera:
    """One camera's threads and state."""

    def __init__(self, *, name: str, settings: CameraSettings, bridge: Bridge) -> None:
        self.name = name
        self.settings = settings
        self.auth = AuthGate()
        self.runner = CommandRunner(
            name=name,
            settings=settings,
            topics=bridge.topics,
            publish=bridge.link.publish,
            sink=bridge.sink_for(name, "manual"),
            auth=self.auth,
            max_part_size=bridge.settings.max_part_size,
        )
        self.last_trigger = float("-inf")
        self.info_asked = False
        self.clock_warned = False
        self.worker: StreamWorker | PollWorker | None = None
        worker_class = {"stream": StreamWorker, "poll": PollWorker}.get(settings.mode)
        if worker_class is not None:  # push cameras have no worker: the listener serves them
            self.worker = worker_class(
                client=CameraClient(name=name, settings=settings),
                sink=bridge.sink_for(name, settings.mode),
                on_status=lambda online: bridge.set_status(name, online),
                stop=threading.Event(),
                max_part_size=bridge.settings.max_part_size,
                auth=self.auth,
            )
        if isinstance(self.worker, PollWorker) and bridge.settings.spool_dir is not None:
            self.worker.cursors = CursorStore(bridge.settings.spool_dir)
        self.stream_thread = (
            threading.Thread(target=self.worker.run, name=f"{settings.mode}-{name}", daemon=True)
            if self.worker is not None
            else None
        )
        self.command_thread = threading.Thread(
            target=self.runner.run, name=f"commands-{name}", daemon=True
        )


class Bridge:
    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._stop = threading.Event()
        self._control: queue.Queue[_Connected | _Discover | _Message | None] = queue.Queue()
        self._device_info: dict[str, DeviceInfo] = {}
        self._registry_seen = False
        self._status: dict[str, str] = {}
        self._status_lock = threading.Lock()
        images = settings.images
        self._folder = (
            ImageFolder(images.dir, keep_days=images.keep_days) if images.dir is not None else None
        )
        self.link = MqttLink(
            settings=settings.mqtt,
            will_topic=self.topics.bridge_status,
            subscriptions=[
                *self.topics.command_subscriptions,
                *(
                    [f"{settings.homeassistant.prefix}/status", self.topics.camera_registry]
                    if settings.homeassistant.enabled
                    else []
                ),
            ],
            on_connect=lambda: self._control.put(_Connected()),
            on_message=lambda t, p, r: self._control.put(_Message(t, p, r)),
            on_published=self._on_published,
        )
        spool: Spool = (
            SqliteSpool(settings.spool_dir, max_rows=settings.spool_max_reads)
            if settings.spool_dir is not None
            else MemorySpool(max_rows=settings.spool_max_reads)
        )
        self.outbox = Outbox(link=self.link, spool=spool)
        self.lists = ListsFile(settings.lists_file)
        self._duplicates = Duplicates(settings.duplicate_window)
        self._duplicates_lock = threading.Lock()
        self.cameras = {
            name: _Camera(name=name, settings=cam, bridge=self)
            for name, cam in settings.cameras.items()
        }
        push = {
            name: PushCamera(
                name=name,
                settings=camera.settings,
                sink=self.sink_for(name, "push"),
                on_seen=self._seen_callback(name),
            )
            for name, camera in self.cameras.items()
            if camera.settings.mode == "push"
        }
        self.listener = (
            PushListener(
                host=settings.listen.host,
                port=settings.listen.port,
                cameras=push,
                max_part_size=settings.max_part_size,
            )
            if push
            else None
        )
        self.metrics = Metrics(
            broker_up=self.link.connected.is_set, spooled=lambda: self.outbox.waiting
        )
        self.metrics_listener = (
            MetricsListener(
                host=settings.metrics.host,
                port=settings.metrics.port,
                metrics=self.metrics,
                problems=self.health_problems,
            )
            if settings.metrics.port is not None
            else None
        )
        self._control_thread = threading.Thread(
            target=self._run_control, name="control", daemon=True
        )

    def _on_published(self, mid: int) -> None:
        self.outbox.on_published(mid)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "hik2mqtt starting: %d camera(s), broker %s, topics under %s/",
            len(self.cameras),
            self.link.where,
            self.settings.topic_prefix,
        )
        self.outbox.start()
        self.link.start()
        self._control_thread.start()
        if self.listener is not None:
            self.listener.start()
        if self.metrics_listener is not None:
            self.metrics_listener.start()
        for camera in self.cameras.values():
            if camera.stream_thread is not None:
                camera.stream_thread.start()
            camera.command_thread.start()

    def stop(self, *, timeout: float = 4.0) -> None:
        """Stop every thread, publish offline, disconnect. Returns within about ``timeout``."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._control.put(None)  # wake the threads that wait on their queues
        if self.listener is not None:
            self.listener.stop()
        if self.metrics_listener is not None:
            self.metrics_listener.stop()
        workers = [c.worker for c in self.cameras.values() if c.worker is not None]
        for worker in workers:
            worker.begin_stop()
        for camera in self.cameras.values():
            camera.runner.stop()
        # Streams first: every read a camera had sent is handed on before its stream ends
        # (all cameras at once, for at most DRAIN_ON_STOP).
        drain_until = time.monotonic() + DRAIN_ON_STOP
        while time.monotonic() < drain_until and not all(w.quiet() for w in workers):
            time.sleep(0.01)
        for worker in workers:
            worker.abort()
        for camera in self.cameras.values():
            if camera.stream_thread is not None:
                camera.stream_thread.join(max(0.0, deadline - time.monotonic() - 2.0))
        for camera in self.cameras.values():
            camera.command_thread.join(max(0.0, deadline - time.monotonic() - 2.0))
        self._control_thread.join(max(0.0, deadline - time.monotonic() - 2.0))
        self.outbox.stop(timeout=max(0.2, deadline - time.monotonic() - 1.0))
        final: list[tuple[str, bytes | str]] = [
            (self.topics.camera_status(name), OFFLINE) for name in self.cameras
        ]
        final.append((self.topics.bridge_status, OFFLINE))
        self.link.stop(final, timeout=max(0.3, min(1.0, deadline - time.monotonic())))
        self.outbox.close()
        log.info("hik2mqtt stopped")

    # -- status ---------------------------------------------------------------------------

    def set_status(self, camera: str, online: bool) -> None:
        value = ONLINE if online else OFFLINE
        with self._status_lock:
            if self._status.get(camera) == value:
                return
            self._status[camera] = value
            self.metrics.camera_up.labels(camera).set(1 if online else 0)
            if not online:
                self.metrics.reconnects.labels(camera).inc()
            # Published under the lock so two threads can't reorder a camera's statuses.
            self.link.publish(self.topics.camera_status(camera), value, retain=True)
            entry = self.cameras.get(camera)
            if online and entry is not None and not entry.info_asked:
                # Its login works now: ask for the device info for Home Assistant (once;
                # never while logins are refused, which would help lock the account).
                entry.info_asked = True
                if self.settings.homeassistant.enabled:
                    threading.Thread(
                        target=self._fetch_device_info, args=(entry,), name="info", daemon=True
                    ).start()
        log.info("camera %s: %s", camera, value)

    def health_problems(self) -> list[str]:
        """What keeps the bridge from being healthy (empty: broker and cameras connected)."""
        problems = [] if self.link.connected.is_set() else ["not connected to the MQTT broker"]
        with self._status_lock:
            for name in self.cameras:
                status = self._status.get(name, "starting")
                if status != ONLINE:
                    problems.append(f"camera {name} is {status}")
        return problems

    def _publish_registry(self) -> None:
        self._registry_seen = True
        registry = json.dumps(sorted(self.cameras)).encode()
        self.link.publish(self.topics.camera_registry, registry, retain=True)

    def status(self, camera: str) -> str | None:
        with self._status_lock:
            return self._status.get(camera)

    def _announce(self) -> None:
        """After every (re)connect: bridge online, each camera's status, waiting reads,
        Home Assistant discovery and the camera registry."""
        self.link.publish(self.topics.bridge_status, ONLINE, retain=True)
        self.outbox.wake()
        if self.settings.homeassistant.enabled:
            self._discover()
            # After the retained registry has been read (it arrives on subscribe, before
            # this), say which cameras are announced now.
            timer = threading.Timer(2.0, self._publish_registry)
            timer.daemon = True
            timer.start()
        with self._status_lock:
            for camera, value in self._status.items():
                self.link.publish(self.topics.camera_status(camera), value, retain=True)

    # -- reads and pictures ---------------------------------------------------------------

    def sink_for(self, camera: str, source: str) -> Callable[[Output], None]:
        def sink(output: Output) -> None:
            if isinstance(output, ReadArrived):
                self.metrics.reads.labels(camera, source).inc()
                self._publish_read(camera, source, output)
            elif isinstance(output, PictureArrived):
                self.metrics.pictures.labels(camera).inc()
                self._publish_picture(camera, output)
            elif isinstance(output, Skipped):
                self.metrics.errors.labels(camera).inc()
                log.warning("camera %s: skipped %s", camera, output.reason)
            elif isinstance(output, EventArrived):
                self._publish_event(camera, source, output)

        return sink

    def _picture_file(self, camera: str, arrived: ReadArrived, kind: str) -> str | None:
        if self._folder is None:
            return None
        return str(
            picture_path(
                self._folder.folder,
                camera=camera,
                read=arrived.read,
                kind=kind,
                received=arrived.received,
            )
        )

    def _publish_read(self, camera: str, source: str, arrived: ReadArrived) -> None:
        images: dict[str, dict[str, str | None]] = {
            kind: {
                "topic": self.topics.image(camera, kind) if self.settings.images.mqtt else None,
                "file": self._picture_file(camera, arrived, kind),
            }
            for kind in arrived.kinds
        }
        read = arrived.read
        age = read_age(read, arrived.received)
        max_age = self.settings.cameras[camera].max_age
        stale = bool(max_age) and age is not None and age > max_age
        if stale and not read.retransmitted:
            self._warn_clock(camera, age)
        retransmitted = read.retransmitted or stale
        normalized = normalize(read.plate)
        match = self.lists.lists.match(read.plate)
        with self._duplicates_lock:
            duplicate = self._duplicates.check(camera, normalized)
        payload = plate_payload(
            camera=camera,
            read=read,
            source=source,
            received=arrived.received,
            images=images,
            age=age,
            retransmitted=retransmitted,
            extra={
                "normalized": normalized,
                "match": match.as_dict() if match else None,
                "duplicate": duplicate,
            },
        )
        log.info(
            "camera %s: plate %s (confidence %s, %s)%s%s",
            camera,
            read.plate or f"not read ({read.raw_plate})",
            read.confidence,
            source,
            f" [retransmitted, {age:.0f} s old]" if retransmitted and age else "",
            " [duplicate]" if duplicate else "",
        )
        if duplicate and self.settings.duplicates == "drop":
            return
        self.outbox.read(self.topics.plate(camera), payload)
        self.outbox.picture(self.topics.state(camera), payload)  # retained: the last read
        rule = self.settings.cameras[camera].gate
        if not rule.enabled:
            return
        decision = decide(
            rule,
            plate=read.plate,
            confidence=read.confidence,
            retransmitted=retransmitted,
            duplicate=duplicate,
            age=age,
            match=match,
        )
        if decision.open:
            action = (
                "barrier open" if rule.barrier else f"output {rule.output} for {rule.pulse:g} s"
            )
        else:
            action = None
        self.link.publish(
            self.topics.gate(camera),
            json.dumps(
                {
                    "plate": read.plate,
                    "event_id": read.event_id,
                    "open": decision.open,
                    "reason": decision.reason,
                    "action": action,
                },
                ensure_ascii=False,
            ),
        )
        log.info(
            "camera %s: gate %s: %s", camera, "opens" if decision.open else "stays", decision.reason
        )
        if decision.open:
            entry = self.cameras[camera]
            if rule.barrier:
                command = Command("barrier", self.topics.barrier_set(camera), 0, "open", "gate")
            else:
                topic = self.topics.output_set(camera, rule.output)
                command = Command("output", topic, rule.output, f"{rule.pulse:g}", "gate")
            self._queue(entry, command)

    def _seen_callback(self, name: str) -> Callable[[], None]:
        return lambda: self.set_status(name, True)

    def _publish_event(self, camera: str, source: str, arrived: EventArrived) -> None:
        event = arrived.event
        wanted = self.settings.events.strip().lower()
        if wanted == "none" or (
            wanted != "all"
            and event.event_type.lower() not in {t.strip().lower() for t in wanted.split(",")}
        ):
            return
        kind = safe_file_part(event.event_type, fallback="event", limit=40)
        payload = {
            "camera": camera,
            "type": event.event_type,
            "state": event.state,
            "description": event.description,
            "channel": event.channel,
            "time": event.time,
            "source": source,
        }
        self.outbox.read(self.topics.event(camera, kind), json.dumps(payload).encode())

    def _warn_clock(self, camera: str, age: float | None) -> None:
        entry = self.cameras.get(camera)
        if entry is None or entry.clock_warned:
            return
        entry.clock_warned = True
        log.warning(
            "camera %s: a read arrived %.0f s after the camera's time for it; reads older than "
            "%.0f s are marked retransmitted. If the camera's clock is wrong, set it (NTP) or "
            "raise HIK2MQTT_CAMERAS__%s__MAX_AGE (0 turns this off)",
            camera,
            age or 0,
            entry.settings.max_age,
            camera.upper(),
        )

    def _publish_picture(self, camera: str, picture: PictureArrived) -> None:
        if self.settings.images.mqtt:
            self.outbox.picture(self.topics.image(camera, picture.kind), picture.data)
        file = self._picture_file(camera, picture.read, picture.kind)
        if self._folder is not None and file is not None:
            self._folder.write(Path(file), picture.data)

    # -- commands -------------------------------------------------------------------------

    def _write_health(self) -> None:
        """The bridge's real state, for ``hik2mqtt health`` (written atomically)."""
        path = self.settings.health_file
        if path is None:
            return
        with self._status_lock:
            cameras = {name: self._status.get(name, "starting") for name in self.cameras}
        doc = {"time": time.time(), "broker": self.link.connected.is_set(), "cameras": cameras}
        try:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(path)
        except OSError as exc:
            log.warning("cannot write the health file %s: %s", path, exc)

    def _run_control(self) -> None:
        next_prune = time.monotonic()
        next_health = time.monotonic()
        while not self._stop.is_set():
            timeout = None
            if self.settings.health_file is not None:
                if time.monotonic() >= next_health:
                    self._write_health()
                    next_health = time.monotonic() + HEALTH_EVERY
                timeout = max(0.0, next_health - time.monotonic())
            if self._folder is not None:
                if time.monotonic() >= next_prune:
                    self._folder.prune()
                    next_prune = time.monotonic() + PRUNE_EVERY
                until_prune = max(0.0, next_prune - time.monotonic())
                timeout = until_prune if timeout is None else min(timeout, until_prune)
            if self.lists.path is not None:
                self.lists.reload()
                timeout = min(timeout or LISTS_CHECK_EVERY, LISTS_CHECK_EVERY)
            try:
                item = self._control.get(timeout=timeout)
            except queue.Empty:
                continue
            if item is None:
                return
            try:
                if isinstance(item, _Connected):
                    self._announce()
                elif isinstance(item, _Discover):
                    self._discover()
                elif not self._discovery_message(item):
                    self._command(item)
            except Exception:  # keep the control thread alive whatever a command does
                log.exception("error handling %s", item)

    # -- Home Assistant discovery -------------------------------------------------------

    def _fetch_device_info(self, camera: _Camera) -> None:
        """Once, at start: the camera's model, serial and firmware for its HA device."""
        client = CameraClient(name=camera.name, settings=camera.settings)
        try:
            reply = client.request("/ISAPI/System/deviceInfo", limit=65536)
            root, node = parse_xml(reply.body)
        except AuthError as exc:
            camera.auth.refused(exc)
            return
        except (CameraError, DecodeError) as exc:
            log.debug("camera %s: no device info (%s)", camera.name, exc)
            return
        finally:
            client.close()
        if root != "DeviceInfo":
            return

        def text(key: str) -> str | None:
            value = node.get(key)
            return str(value).strip() if isinstance(value, str) and value.strip() else None

        firmware = " ".join(p for p in (text("firmwareVersion"), text("firmwareReleasedDate")) if p)
        self._device_info[camera.name] = DeviceInfo(
            model=text("model"), serial=text("serialNumber"), firmware=firmware or None
        )
        self._control.put(_Discover())

    def _discover(self) -> None:
        """Publish (retained) every camera's and the bridge's discovery configs."""
        ha = self.settings.homeassistant
        if not ha.enabled:
            return
        configs = bridge_configs(self.topics, discovery_prefix=ha.prefix)
        for name, camera in self.cameras.items():
            configs.update(
                camera_configs(
                    self.topics,
                    discovery_prefix=ha.prefix,
                    camera=name,
                    display_name=camera.settings.name or name,
                    configuration_url=camera.settings.base_url,
                    info=self._device_info.get(name, DeviceInfo()),
                )
            )
        for topic, payload in configs.items():
            self.link.publish(topic, payload, retain=True)

    def _discovery_message(self, message: _Message) -> bool:
        """Handle Home Assistant's status and our camera registry; False for anything else."""
        ha = self.settings.homeassistant
        if message.topic == f"{ha.prefix}/status":
            if message.payload.strip() == b"online":
                # HA (re)started: announce again after a short random delay, so that many
                # bridges and devices don't all answer in the same instant.
                delay = random.uniform(0.5, 3.0)  # noqa: S311 - not for security
                timer = threading.Timer(delay, self._control.put, args=(_Discover(),))
                timer.daemon = True
                timer.start()
            return True
        if message.topic != self.topics.camera_registry:
            return False
        if not self._registry_seen:
            self._registry_seen = True
            try:
                before = set(json.loads(message.payload or b"[]"))
            except (ValueError, TypeError):
                before = set()
            for gone in sorted(str(c) for c in before - set(self.cameras)):
                log.info("camera %s is no longer configured: removing it from Home Assistant", gone)
                for topic in removal_topics(ha.prefix, gone):
                    self.link.publish(topic, b"", retain=True)
        return True

    def _refuse(self, topic: str, message: str) -> None:
        log.warning("refused a command on %s: %s", topic, message)
        payload = result_payload(ok=False, status=None, message=message)
        self.link.publish(self.topics.result(topic), payload)

    def _command(self, message: _Message) -> None:
        parsed = self.topics.parse_command(message.topic)
        if parsed is None:
            log.warning("ignored a message on %s", message.topic)
            return
        name, kind, output = parsed
        if message.retained:
            log.warning(
                "ignored a retained message on %s: a command must not be retained "
                "(it would fire again at every restart); clear it with an empty retained message",
                message.topic,
            )
            return
        camera = self.cameras.get(name)
        if camera is None:
            self._refuse(message.topic, f"no camera named {name!r}")
            return
        if len(message.payload) > MAX_COMMAND_PAYLOAD:
            size = len(message.payload)
            self._refuse(message.topic, f"payload of {size} bytes is over {MAX_COMMAND_PAYLOAD}")
            return
        try:
            value = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse(message.topic, "payload is not UTF-8 text")
            return
        if (problem := check_value(kind, value)) is not None:
            self._refuse(message.topic, problem)
            return
        if output is not None and not (output.isdigit() and 1 <= int(output) <= 64):
            self._refuse(message.topic, f"output {output[:20]!r}: expected a number from 1 to 64")
            return
        if kind == "trigger":
            since = time.monotonic() - camera.last_trigger
            if since < camera.settings.trigger_interval:
                interval = camera.settings.trigger_interval
                self._refuse(
                    message.topic, f"rate limited: at most one trigger every {interval:g} s"
                )
                return
            camera.last_trigger = time.monotonic()
        command = Command(kind, message.topic, int(output or 0), value)  # type: ignore[arg-type]
        self._queue(camera, command)

    def _queue(self, camera: _Camera, command: Command) -> None:
        if camera.runner.queue.qsize() >= COMMAND_QUEUE:
            self._refuse(command.reply_to, "busy: earlier commands still running")
            return
        camera.runner.queue.put(command)
