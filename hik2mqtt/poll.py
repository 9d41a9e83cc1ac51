"""Poll mode, for traffic cameras that keep reads in a list rather than pushing them.

Every ``poll_interval`` seconds: ``POST /ISAPI/Traffic/channels/<ch>/vehicleDetect/plates``
with ``<AfterTime><picTime>CURSOR</picTime></AfterTime>`` (``shared/samples/vehicleDetect-*``).
Entries may come unsorted and old ones may repeat, so the bridge keeps a cursor on the
largest ``picName`` (up to 25 digits, compared as numbers) and publishes only entries past
it, oldest first, each once. The first answer after start only sets the cursor: yesterday's
reads are never replayed to a gate. With a spool folder the cursor is kept there
(:class:`~hik2mqtt.spool.CursorStore`): reads made while the bridge was stopped are published
when it returns, once, marked retransmitted (never live). Each entry's picture is
``/doc/ui/images/plate/<picName>.jpg``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from hik2mqtt.backoff import reconnect_delay
from hik2mqtt.camera import AuthGate, CameraClient
from hik2mqtt.errors import AuthError, CameraError, DecodeError
from hik2mqtt.events import PolledPlate, decode_plates
from hik2mqtt.reads import Output, PictureArrived, ReadArrived
from hik2mqtt.spool import CursorStore

log = logging.getLogger(__name__)

PLATES_PATH = "/ISAPI/Traffic/channels/{channel}/vehicleDetect/plates"
PICTURE_PATH = "/doc/ui/images/plate/{pic_name}.jpg"
XML = "application/xml"


class PollWorker:
    def __init__(
        self,
        *,
        client: CameraClient,
        sink: Callable[[Output], None],
        on_status: Callable[[bool], None],
        stop: threading.Event,
        auth: AuthGate,
        max_part_size: int,
        cursors: CursorStore | None = None,
    ) -> None:
        self.client = client
        self.name = client.name
        self._sink = sink
        self._on_status = on_status
        self._stop = stop
        self.auth = auth
        self._max = max_part_size
        self.cursor: str | None = None
        self.cursors = cursors
        self._backlog = False  # the next batch was made while the bridge was stopped
        self.last_delay = 0.0

    def begin_stop(self) -> None:
        self._stop.set()

    def quiet(self) -> bool:
        return True  # a poll in progress is short; nothing waits in a socket

    def abort(self) -> None:
        pass

    def _wait(self, delay: float) -> None:
        self.last_delay = delay
        self._stop.wait(delay)

    def run(self) -> None:
        settings = self.client.settings
        failures = 0
        in_outage = False
        if self.cursors is not None:
            self.cursor = self.cursors.get(self.name)
            self._backlog = self.cursor is not None
            if self._backlog:
                log.info("camera %s: resuming after picName %s", self.name, self.cursor)
        while not self._stop.is_set():
            if (locked_out := self.auth.remaining()) > 0:
                self._wait(locked_out)
                continue
            body = f"<AfterTime><picTime>{self.cursor or '0'}</picTime></AfterTime>".encode()
            try:
                reply = self.client.send(
                    "POST",
                    PLATES_PATH.format(channel=settings.channel),
                    body,
                    content_type=XML,
                    limit=self._max,
                )
                plates = decode_plates(reply.body)
            except AuthError as exc:
                delay = self.auth.refused_by(self.name, exc)
                self._on_status(False)
                in_outage = True
                self._wait(delay)
                continue
            except CameraError as exc:
                self._on_status(False)
                if not in_outage:
                    log.warning("camera %s: polling failed (%s); retrying", self.name, exc)
                    in_outage = True
                self._wait(reconnect_delay(failures))
                failures += 1
                continue
            except DecodeError as exc:
                log.warning("camera %s: unreadable plate list: %s", self.name, exc)
                self._wait(settings.poll_interval)
                continue
            if in_outage:
                log.info("camera %s: polling again", self.name)
            in_outage, failures = False, 0
            self.auth.accepted()
            self._on_status(True)
            self._take(plates)
            self._wait(settings.poll_interval)
        self.client.close()

    def _take(self, entries: list[PolledPlate]) -> None:
        if self.cursor is None:  # first answer: where we start, nothing published
            self.cursor = entries[-1].pic_name if entries else "0"
            log.info("camera %s: polling plates after picName %s", self.name, self.cursor)
            self._save()
            return
        before, backlog, self._backlog = self.cursor, self._backlog, False
        cursor = int(before)
        for entry in entries:
            if int(entry.pic_name) <= cursor:
                continue  # seen already (old entries repeat)
            self.cursor = entry.pic_name
            read = dataclasses.replace(entry.read, retransmitted=True) if backlog else entry.read
            arrived = ReadArrived(
                read=read, received=datetime.now().astimezone(), kinds=("picture",)
            )
            self._sink(arrived)
            try:
                picture = self.client.request(
                    PICTURE_PATH.format(pic_name=entry.pic_name), limit=self._max
                )
            except CameraError as exc:
                log.warning("camera %s: picture %s: %s", self.name, entry.pic_name, exc)
                continue
            self._sink(PictureArrived(read=arrived, kind="picture", name=None, data=picture.body))
        if self.cursor != before:
            self._save()

    def _save(self) -> None:
        if self.cursors is not None and self.cursor is not None:
            self.cursors.set(self.name, self.cursor)
