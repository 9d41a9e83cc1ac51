"""The composition root: builds every piece of one bridge and owns start and stop order.

Decisions live in :mod:`hik2mqtt.pipeline` (pure), their execution in :mod:`hik2mqtt.runtime`;
docs/ARCHITECTURE.md draws the data path, the command path and every thread: paho's; the
control thread; per camera a worker (stream or poll; push cameras are served by the
listener) and a command thread; the outbox's. They share stop events, every blocking call
has a timeout, and each runs supervised (:mod:`hik2mqtt.supervise`).
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from hik2mqtt.camera import DRAIN_ON_STOP, AuthGate, CameraClient, StreamFetcher
from hik2mqtt.commands import CommandRunner
from hik2mqtt.config import ENV_PREFIX, Settings
from hik2mqtt.errors import ConfigError
from hik2mqtt.images import ImageFolder
from hik2mqtt.metrics import Metrics, MetricsListener
from hik2mqtt.mqtt import JSON, MqttLink, expiring
from hik2mqtt.outbox import Outbox
from hik2mqtt.pipeline import Connected, ListsIn, MessageIn, Pipeline, StatusIn
from hik2mqtt.plates import ListsFile
from hik2mqtt.poll import PollFetcher
from hik2mqtt.runtime import CameraHandle, Runtime
from hik2mqtt.spool import CursorStore, open_spool
from hik2mqtt.supervise import start_thread
from hik2mqtt.topics import OFFLINE, Topics
from hik2mqtt.worker import CameraWorker, Fetcher

if TYPE_CHECKING:
    from hik2mqtt.push import PushListener

log = logging.getLogger(__name__)

T = TypeVar("T")

ClientFactory = Callable[..., CameraClient]  # (name=, settings=) -> client; tests inject one


@dataclass
class Camera:
    """One camera's pieces (the worker is None for push cameras)."""

    handle: CameraHandle
    runner: CommandRunner
    worker: CameraWorker | None
    stop: threading.Event


class Bridge:
    def __init__(self, *, settings: Settings, new_client: ClientFactory = CameraClient) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix, settings.bridge_id)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        ha = settings.homeassistant
        self.link = MqttLink(
            settings=settings.mqtt,
            will_topic=self.topics.bridge_status,
            subscriptions=[
                *self.topics.command_subscriptions,
                self.topics.bridges_filter,  # ours from before, and other bridges'
                *([f"{ha.prefix}/status"] if ha.enabled else []),
            ],
            on_connect=lambda: self.runtime.post(Connected()),
            on_incoming=lambda m: self.runtime.post(
                MessageIn(m.topic, m.payload, m.retained, m.response_topic, m.correlation_data)
            ),
            on_published=lambda mid: self.outbox.on_published(mid),  # noqa: PLW0108 - made below
        )
        spool = open_spool(settings.spool_dir, max_rows=settings.spool_max_reads)
        expiry = settings.mqtt.read_expiry
        self.outbox = Outbox(
            link=self.link, spool=spool, restored=expiring(JSON, 1) if expiry else None
        )
        self.pipeline = Pipeline(settings=settings, topics=self.topics, rng=random.random)
        self.metrics = Metrics(
            broker_up=self.link.connected.is_set, spooled=lambda: self.outbox.waiting
        )
        images = settings.images
        handles = {
            name: CameraHandle(
                name=name,
                settings=cam,
                auth=AuthGate(),
                new_client=functools.partial(new_client, name=name, settings=cam),
                commands=queue.Queue(),
            )
            for name, cam in settings.cameras.items()
        }
        self.runtime = Runtime(
            pipeline=self.pipeline,
            link=self.link,
            outbox=self.outbox,
            metrics=self.metrics,
            cameras=handles,
            lists=ListsFile(settings.lists_file),
            folder=ImageFolder(images.dir, keep_days=images.keep_days) if images.dir else None,
            health_file=settings.health_file,
            stop=self._stop,
            read_expiry=expiry,
        )
        self.runtime.submit(ListsIn(self.runtime.lists.lists))
        self.web = None  # the web page; its framework is imported only when it is on
        if settings.web.enabled:
            from hik2mqtt.page import attach_page  # noqa: PLC0415

            self.web = attach_page(settings, self.runtime)
        self.cameras = {name: self._camera(handle) for name, handle in handles.items()}
        # The listeners bind their ports here: one in use fails now, before anything starts.
        # Their framework (Starlette, uvicorn) is imported only when one of them is on.
        self.listener: PushListener | None = None
        self.metrics_listener: MetricsListener | None = None
        try:
            if any(h.settings.mode == "push" for h in handles.values()):
                self.listener = self._push_listener(handles)
            if settings.metrics.port is not None:
                self.metrics_listener = _listening(
                    "METRICS__PORT",
                    settings.metrics.host,
                    settings.metrics.port,
                    lambda: MetricsListener(
                        host=settings.metrics.host,
                        port=settings.metrics.port or 0,
                        metrics=self.metrics,
                        problems=self.runtime.health_problems,
                    ),
                )
        except BaseException:
            if self.listener is not None:
                self.listener.stop()  # frees its port
            raise

    def _push_listener(self, handles: dict[str, CameraHandle]) -> PushListener:
        from hik2mqtt.push import PushCamera, PushListener  # noqa: PLC0415

        push = {
            name: PushCamera(
                name=name,
                settings=handle.settings,
                sink=self.runtime.deliver_for(name, "push"),
                on_seen=self._status_callback(name, online=True),
            )
            for name, handle in handles.items()
            if handle.settings.mode == "push"
        }
        listen = self.settings.listen
        return _listening(
            "LISTEN__PORT",
            listen.host,
            listen.port,
            lambda: PushListener(
                host=listen.host,
                port=listen.port,
                cameras=push,
                max_part_size=self.settings.max_part_size,
            ),
        )

    def _status_callback(self, name: str, *, online: bool) -> Callable[[], object]:
        return functools.partial(self._status_of(name), online)

    def _status_of(self, name: str) -> Callable[[bool], object]:
        return lambda online: self.runtime.submit(StatusIn(name, online))

    def _camera(self, handle: CameraHandle) -> Camera:
        name, settings = handle.name, handle.settings
        stop = threading.Event()
        max_part = self.settings.max_part_size
        runner = CommandRunner(
            name=name,
            client=handle.new_client(),
            auth=handle.auth,
            max_part_size=max_part,
            deliver=self.runtime.deliver_for(name, "manual"),
        )
        fetcher: Fetcher | None = None
        if settings.mode == "stream":
            fetcher = StreamFetcher(client=handle.new_client(), max_part_size=max_part)
        elif settings.mode == "poll":
            spool_dir = self.settings.spool_dir
            fetcher = PollFetcher(
                client=handle.new_client(),
                stop=stop,
                max_part_size=max_part,
                cursors=CursorStore(spool_dir) if spool_dir is not None else None,
            )
        worker = None
        if fetcher is not None:  # push cameras have no worker: the listener serves them
            worker = CameraWorker(
                name=name,
                fetcher=fetcher,
                deliver=self.runtime.deliver_for(name, settings.mode),
                on_status=self._status_of(name),
                stop=stop,
                auth=handle.auth,
            )
        return Camera(handle=handle, runner=runner, worker=worker, stop=stop)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "hik2mqtt starting: %d camera(s), broker %s, topics under %s/",
            len(self.cameras),
            self.link.where,
            self.settings.topic_prefix,
        )
        self.outbox.start()
        self.link.start()
        if self.web is not None:
            self.web.start()  # ConfigError naming HIK2MQTT_WEB__PORT when it can't listen
            log.info("web page on http://%s:%d/", self.settings.web.host, self.web.port)
        self._threads.append(
            start_thread(self.runtime.run_control, name="control", stop=self._stop)
        )
        self._threads.append(
            start_thread(self.runtime.run_list_edits, name="lists", stop=self._stop)
        )
        for server in (self.listener, self.metrics_listener):
            if server is not None:
                server.start()
        for name, camera in self.cameras.items():
            if camera.worker is not None:
                camera.worker.thread = start_thread(
                    camera.worker.run,
                    name=f"{camera.handle.settings.mode}-{name}",
                    stop=camera.stop,
                    on_crash=self._status_callback(name, online=False),
                )
            commands = functools.partial(self.runtime.run_commands, camera.runner)
            self._threads.append(start_thread(commands, name=f"commands-{name}", stop=self._stop))

    def stop(self, *, timeout: float = 4.0) -> None:
        """Stop every thread, publish offline, disconnect. Returns within about ``timeout``."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self.runtime.wake()
        for server in (self.listener, self.metrics_listener):
            if server is not None:
                server.stop()
        workers = [c.worker for c in self.cameras.values() if c.worker is not None]
        for worker in workers:
            worker.begin_stop()
        self.runtime.release_follow_ups()  # a pulse in progress ends now, not never
        for camera in self.cameras.values():
            camera.handle.commands.put(None)
        self.runtime.list_edits.put(None)
        # Streams first: every read a camera had sent is handed on before its stream ends
        # (all cameras at once, for at most DRAIN_ON_STOP).
        drain_until = time.monotonic() + DRAIN_ON_STOP
        while time.monotonic() < drain_until and not all(w.quiet() for w in workers):
            time.sleep(0.01)
        for worker in workers:
            worker.abort()
        if self.web is not None:  # after the drain: the last reads reach the history too
            self.web.stop()
        for thread in [w.thread for w in workers if w.thread is not None] + self._threads:
            thread.join(max(0.0, deadline - time.monotonic() - 2.0))
        for camera in self.cameras.values():
            camera.runner.client.close()
        self.outbox.stop(timeout=max(0.2, deadline - time.monotonic() - 1.0))
        final: list[tuple[str, bytes | str]] = [
            (self.topics.camera_status(name), OFFLINE) for name in self.cameras
        ]
        final.append((self.topics.bridge_status, OFFLINE))
        self.link.stop(final, timeout=max(0.3, min(1.0, deadline - time.monotonic())))
        self.outbox.close()
        self.runtime.write_health(stopped=True)  # `hik2mqtt health` is false from now on
        log.info("hik2mqtt stopped")


def _listening(variable: str, host: str, port: int, build: Callable[[], T]) -> T:
    """``build()``; a port that can't be listened on is one configuration line naming
    ``variable`` (as the page's HIK2MQTT_WEB__PORT is)."""
    try:
        return build()
    except OSError as exc:
        raise ConfigError(
            [f"{ENV_PREFIX}{variable}: cannot listen on {host}:{port}: {exc.strerror or exc}"]
        ) from exc
