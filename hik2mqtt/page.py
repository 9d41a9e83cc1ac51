"""The web page as one more consumer of the pipeline (``hik2mqtt.web`` knows no bridge).

:class:`PageBackend` answers the page's questions and carries its buttons to the pipeline
(as :class:`~hik2mqtt.pipeline.CommandRequest`, checked exactly like an MQTT command, the
outcome published on MQTT too); :meth:`PageBackend.observe` turns each published read
(:class:`~hik2mqtt.pipeline.Recorded`) into a history record and keeps each camera's last
picture per kind (:class:`~hik2mqtt.pipeline.PictureSeen`), until an erasure takes the
camera's last read (:class:`~hik2mqtt.pipeline.ForgetPictures` then clears what the broker
retains of it too).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from hik2mqtt.config import Settings
from hik2mqtt.core.wire import CommandKind
from hik2mqtt.pipeline import (
    CommandRequest,
    ForgetPictures,
    PictureSeen,
    Publish,
    Recorded,
    RunCommand,
)
from hik2mqtt.runtime import Runtime
from hik2mqtt.web import CameraView, CommandOutcome, WebService

log = logging.getLogger(__name__)


class PageBackend:
    def __init__(self, *, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.service: WebService | None = None
        # (camera, kind) -> the event id of the read it belongs to, and the picture
        self._pictures: dict[tuple[str, str], tuple[str | None, bytes]] = {}
        self._lock = threading.Lock()

    # -- what the pipeline hands on (on the thread that brought the read: quick work only) -

    def observe(self, effect: Recorded | PictureSeen) -> None:
        if isinstance(effect, PictureSeen):
            with self._lock:
                self._pictures[(effect.camera, effect.kind)] = (effect.event_id, effect.data)
            return
        if self.service is not None:
            gate = effect.gate
            self.service.published(
                effect.doc,
                effect.payload,
                None if gate is None else gate.get("open"),
                None if gate is None else gate.get("reason"),
            )

    # -- WebBackend -------------------------------------------------------------------------

    def cameras(self) -> list[CameraView]:
        statuses = self.runtime.statuses()
        views = []
        for name, camera in self.settings.cameras.items():
            gate = camera.gate
            views.append(
                CameraView(
                    name=name,
                    display_name=camera.name or name,
                    online=statuses.get(name) == "online",
                    mode=camera.mode,
                    status=statuses.get(name, "starting"),
                    outputs=() if gate.barrier else (gate.output,),
                    barrier=gate.barrier,
                    gate=gate.enabled,
                )
            )
        return views

    def latest_picture(self, camera: str, kind: str, event_id: str | None = None) -> bytes | None:
        with self._lock:
            found = self._pictures.get((camera, kind))
        if found is None or (event_id is not None and found[0] != event_id):
            return None  # none yet, or the one before (a read comes before its pictures)
        return found[1]

    def forget_pictures(self, camera: str, kinds: Collection[str] = ()) -> None:
        with self._lock:
            for key in [key for key in self._pictures if key[0] == camera]:
                del self._pictures[key]
        self.runtime.submit(ForgetPictures(camera, tuple(kinds)))

    def submit(
        self,
        camera: str,
        kind: CommandKind,
        output: int | None,
        value: str,
    ) -> CommandOutcome:
        effects = self.runtime.submit(CommandRequest(camera, kind, output, value))
        if any(isinstance(e, RunCommand) for e in effects):
            return CommandOutcome(True)
        for effect in effects:
            if isinstance(effect, Publish) and effect.kind == "result":
                return CommandOutcome(False, str(json.loads(effect.payload).get("message", "")))
        return CommandOutcome(False, f"no camera named {camera!r}")

    def lists_file(self) -> tuple[Path | None, Literal["yaml", "csv"]]:
        path = self.settings.lists_file
        return path, "csv" if path is not None and path.suffix.lower() == ".csv" else "yaml"

    def reload_lists(self) -> bool:
        return self.runtime.reload_lists()


def attach_page(settings: Settings, runtime: Runtime) -> WebService | None:
    """The web page for ``settings`` fed by ``runtime`` (None when the page is off): it sees
    every published read and picture, and its health counts in the bridge's."""
    page = PageBackend(settings=settings, runtime=runtime)
    web = WebService.from_settings(settings, page)
    if web is None:
        return None
    page.service = web
    runtime.observers.append(page.observe)
    runtime.extra_problems.append(lambda: web.problem)
    return web
