"""Poll mode, for traffic cameras that keep reads in a list rather than pushing them.

Every ``poll_interval`` seconds: ``POST /ISAPI/Traffic/channels/<ch>/vehicleDetect/plates``
with ``<AfterTime><picTime>CURSOR</picTime></AfterTime>`` (``shared/samples/vehicleDetect-*``).
Entries may come unsorted and old ones may repeat, so the bridge keeps a cursor on the
largest ``picName`` (ASCII digits, compared as numbers) and publishes only entries past
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

from hik2mqtt import isapi
from hik2mqtt.camera import CameraClient, CameraReply
from hik2mqtt.errors import CameraError, DecodeError
from hik2mqtt.events import PolledPlate
from hik2mqtt.numbers import PIC_NAME, read_number
from hik2mqtt.reads import Output, PictureArrived, ReadArrived
from hik2mqtt.spool import CursorStore

log = logging.getLogger(__name__)

PLATES_PATH = "/ISAPI/Traffic/channels/{channel}/vehicleDetect/plates"
PICTURE_PATH = "/doc/ui/images/plate/{pic_name}.jpg"
XML = "application/xml"


class PollFetcher:
    """Poll mode's way of fetching reads: a session is a run of successful polls."""

    what = "polling of the plate list"

    def __init__(
        self,
        *,
        client: CameraClient,
        stop: threading.Event,
        max_part_size: int,
        cursors: CursorStore | None = None,
    ) -> None:
        self.client = client
        self.name = client.name
        self._stop = stop
        self._max = max_part_size
        self.cursors = cursors
        self.cursor: int | None = None  # the largest picName handed on (None: not yet known)
        self._backlog = False  # the next batch was made while the bridge was stopped
        if cursors is not None:
            self.cursor = read_number(cursors.get(self.name), PIC_NAME)
            self._backlog = self.cursor is not None
            if self.cursor is not None:
                log.info("camera %s: resuming after picName %s", self.name, self.cursor)

    def poll(self) -> CameraReply:
        body = f"<AfterTime><picTime>{self.cursor or 0}</picTime></AfterTime>".encode()
        path = PLATES_PATH.format(channel=self.client.settings.channel)
        return self.client.send("POST", path, body, content_type=XML, limit=self._max)

    def open(self) -> PollSession:
        return PollSession(self, self.poll())

    def close(self) -> None:
        self.client.close()

    def take(self, entries: list[PolledPlate], deliver: Callable[[Output], None]) -> bool:
        """Hand on the entries past the cursor, oldest first; True if any."""
        if self.cursor is None:  # first answer: where we start, nothing published
            last = read_number(entries[-1].pic_name, PIC_NAME) if entries else None
            self.cursor = last or 0
            log.info("camera %s: polling plates after picName %s", self.name, self.cursor)
            self._save()
            return False
        taken = False
        backlog, self._backlog = self._backlog, False
        for entry in entries:
            number = read_number(entry.pic_name, PIC_NAME)
            if number is None or number <= self.cursor:
                continue  # seen already (old entries repeat), or not a picName we can use
            self.cursor = number
            taken = True
            # Made while the bridge was stopped: history, never a live car.
            read = dataclasses.replace(entry.read, retransmitted=True) if backlog else entry.read
            arrived = ReadArrived(
                read=read, received=datetime.now().astimezone(), kinds=("picture",)
            )
            deliver(arrived)
            try:
                picture = self.client.request(PICTURE_PATH.format(pic_name=number), limit=self._max)
            except CameraError as exc:
                log.warning("camera %s: picture %s: %s", self.name, number, exc)
                continue
            deliver(PictureArrived(read=arrived, kind="picture", name=None, data=picture.body))
        if taken:
            self._save()
        return taken

    def _save(self) -> None:
        if self.cursors is not None and self.cursor is not None:
            self.cursors.set(self.name, str(self.cursor))


class PollSession:
    """Polls every ``poll_interval`` until a poll fails (which ends the session by raising)."""

    def __init__(self, fetcher: PollFetcher, first: CameraReply) -> None:
        self._fetcher = fetcher
        self._reply = first
        self.delivered = True  # an answered poll counts: the worker's backoff starts again

    def quiet(self) -> bool:
        return True  # a poll in progress is short; nothing waits in a socket

    def abort(self) -> None:
        pass  # the stop event ends the wait between polls

    def close(self) -> None:
        pass

    def pump(self, deliver: Callable[[Output], None]) -> None:
        fetcher = self._fetcher
        interval = fetcher.client.settings.poll_interval
        while True:
            try:
                fetcher.take(isapi.plates(self._reply.body), deliver)
            except DecodeError as exc:
                log.warning("camera %s: unreadable plate list: %s", fetcher.name, exc)
            if fetcher._stop.wait(interval):
                return
            self._reply = fetcher.poll()
