"""Commands to one camera, run on that camera's command thread (never on paho's).

- ``trigger``: manual recognition, ``GET /ISAPI/Traffic/MNPR/channels/<ch>``; the read in
  the answer is published like any other (``source: manual``).
- ``output``: ``PUT /ISAPI/System/IO/outputs/<n>/trigger`` with
  ``<IOPortData><outputState>high|low</outputState></IOPortData>``
  (``shared/samples/io-output-trigger-request*.xml``); a number of seconds pulses it.
  The state the camera then reports (``GET .../outputs/<n>/status``, ``ioState``) is
  published retained on ``<prefix>/<camera>/output/<n>``.
- ``barrier``: ``PUT /ISAPI/Parking/channels/<ch>/barrierGate`` with
  ``<BarrierGate><ctrlMode>open|close</ctrlMode></BarrierGate>``, for barrier cameras
  that answer ``notSupport`` on System/IO (``barrier-gate-request-DS-TCG405-E.xml``).

Every outcome goes to the command's topic plus ``/result`` as JSON.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hik2mqtt.camera import MNPR_PATH, AuthGate, CameraClient, CameraReply, parse_response_status
from hik2mqtt.config import CameraSettings
from hik2mqtt.errors import (
    AuthError,
    CameraHTTPError,
    CameraUnreachable,
    DecodeError,
    ProtocolError,
)
from hik2mqtt.events import parse_xml
from hik2mqtt.multipart import MultipartParser, Part, boundary_from_content_type
from hik2mqtt.reads import Output, ReadArrived, ReadAssembler, is_event_part
from hik2mqtt.topics import Topics, result_payload

log = logging.getLogger(__name__)

OUTPUT_PATH = "/ISAPI/System/IO/outputs/{output}"
BARRIER_PATH = "/ISAPI/Parking/channels/{channel}/barrierGate"
XML = "application/xml"


@dataclass(frozen=True, slots=True)
class Command:
    kind: Literal["trigger", "output", "barrier"]
    reply_to: str  # the command's topic; the outcome goes to reply_to + "/result"
    output: int = 0
    value: str = ""  # output: on | off | seconds; barrier: open | close
    source: str = "mqtt"  # or "gate" for the built-in gate rule


def check_value(kind: str, value: str) -> str | None:
    """What is wrong with a command's payload, or None when it is fine."""
    text = value.strip().lower()
    if kind == "output":
        if text in ("on", "off"):
            return None
        try:
            seconds = float(text)
        except ValueError:
            return f"payload {value[:40]!r}: expected on, off or a number of seconds"
        return None if 0 < seconds <= 600 else "a pulse must be from 0 to 600 seconds"
    if kind == "barrier" and text not in ("open", "close"):
        return f"payload {value[:40]!r}: expected open or close"
    return None


class CommandRunner:
    """Runs one camera's commands in order; the outcome of each goes to its result topic."""

    def __init__(
        self,
        *,
        name: str,
        settings: CameraSettings,
        topics: Topics,
        publish: Callable[..., Any],
        sink: Callable[[Output], None],
        auth: AuthGate,
        max_part_size: int,
    ) -> None:
        self.name = name
        self.settings = settings
        self.topics = topics
        self._publish = publish
        self._sink = sink
        self.auth = auth
        self._max_part_size = max_part_size
        # Unbounded so that stop's sentinel (None) always fits; the bridge bounds it.
        self.queue: queue.Queue[Command | None] = queue.Queue()
        self._timers: list[threading.Timer] = []

    def run(self) -> None:
        client = CameraClient(name=self.name, settings=self.settings)
        try:
            while (command := self.queue.get()) is not None:
                try:
                    self.execute(client, command)
                except Exception:  # one command's bug must not stop the others
                    log.exception("camera %s: %s failed", self.name, command.kind)
                    self.reply(command, ok=False, status=None, message="internal error")
        finally:
            for timer in self._timers:
                timer.cancel()
            client.close()

    def stop(self) -> None:
        self.queue.put(None)

    def reply(self, command: Command, **fields: Any) -> None:
        self._publish(self.topics.result(command.reply_to), result_payload(**fields))

    def execute(self, client: CameraClient, command: Command) -> None:
        if (wait := self.auth.remaining()) > 0:
            self.reply(
                command,
                ok=False,
                status=None,
                message=f"the camera refused our login; not trying again for {wait:.0f} s "
                "(it locks accounts after repeated failures)",
            )
            return
        try:
            if command.kind == "trigger":
                self._trigger(client, command)
            elif command.kind == "output":
                self._output(client, command)
            else:
                self._barrier(client, command)
        except AuthError as exc:
            self.auth.refused_by(self.name, exc)
            self.reply(command, ok=False, status=401, message=str(exc))
        except CameraHTTPError as exc:
            self.reply(
                command, ok=False, status=exc.status, message=str(exc), sub_status=exc.sub_status
            )
        except CameraUnreachable as exc:
            self.reply(command, ok=False, status=None, message=str(exc))

    # -- manual recognition ---------------------------------------------------------------

    def _trigger(self, client: CameraClient, command: Command) -> None:
        log.info("camera %s: manual recognition requested", self.name)
        reply = client.request(
            MNPR_PATH.format(channel=self.settings.channel), limit=2 * self._max_part_size
        )
        parts = self._parts(reply)
        if parts is None:
            self.reply(
                command, ok=False, status=reply.status, message="unreadable multipart answer"
            )
            return
        assembler = ReadAssembler()
        plates: list[str | None] = []
        status = None
        for part in parts:
            if is_event_part(part) and (found := parse_response_status(part.body)):
                status = found
                continue
            output = assembler.handle(part)
            if isinstance(output, ReadArrived):
                plates.append(output.read.plate)
            self._sink(output)
        if plates:
            self.reply(
                command,
                ok=True,
                status=reply.status,
                message=f"read {plates[0] or 'no plate'}",
                plate=plates[0],
            )
        elif status is not None and not status.ok:
            self.reply(
                command,
                ok=False,
                status=reply.status,
                message=status.describe(),
                sub_status=status.sub_status,
            )
        else:
            self.reply(
                command,
                ok=True,
                status=reply.status,
                message=status.describe() if status else "triggered; no read in the answer",
                plate=None,
            )

    def _parts(self, reply: CameraReply) -> list[Part] | None:
        if not reply.content_type.lower().startswith("multipart/"):
            return [Part(headers={"content-type": reply.content_type}, body=reply.body)]
        parser = MultipartParser(
            boundary_from_content_type(reply.content_type), max_part_size=self._max_part_size
        )
        try:
            parser.receive_data(reply.body)
            return parser.end_of_stream()
        except ProtocolError as exc:
            log.warning("camera %s: MNPR answer: %s", self.name, exc)
            return None

    # -- outputs and barrier --------------------------------------------------------------

    def _put(self, client: CameraClient, path: str, body: str, what: str) -> CameraReply:
        reply = client.put(path, body.encode(), content_type=XML)
        status = parse_response_status(reply.body)
        if status is not None and not status.ok:
            raise CameraHTTPError(
                f"{what}: {status.describe()}", status=reply.status, sub_status=status.sub_status
            )
        return reply

    def _output(self, client: CameraClient, command: Command) -> None:
        value = command.value.strip().lower()
        level = "low" if value == "off" else "high"
        path = OUTPUT_PATH.format(output=command.output)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<IOPortData><outputState>{level}</outputState></IOPortData>"
        )
        reply = self._put(client, path + "/trigger", body, f"output {command.output}")
        state = self._output_state(client, command.output)
        pulse = None
        if value not in ("on", "off"):
            pulse = float(value)
            off = Command("output", command.reply_to, command.output, "off", command.source)
            timer = threading.Timer(pulse, self.queue.put, args=(off,))
            timer.daemon = True
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()
        log.info("camera %s: output %d %s (%s)", self.name, command.output, value, command.source)
        self.reply(
            command,
            ok=True,
            status=reply.status,
            message=f"output {command.output} {level}" + (f" for {pulse:g} s" if pulse else ""),
            state=state,
        )

    def _output_state(self, client: CameraClient, output: int) -> str | None:
        """Read back the output's state and publish it retained (None if unknown)."""
        try:
            reply = client.request(OUTPUT_PATH.format(output=output) + "/status", limit=65536)
            root, node = parse_xml(reply.body)
        except (CameraHTTPError, CameraUnreachable, DecodeError) as exc:
            log.warning("camera %s: output %d status unknown: %s", self.name, output, exc)
            return None
        io_state = str(node.get("ioState") or "").strip().lower()
        if root != "IOPortStatus" or io_state not in ("active", "inactive"):
            return None
        state = "on" if io_state == "active" else "off"
        self._publish(self.topics.output_state(self.name, output), state, retain=True)
        return state

    def _barrier(self, client: CameraClient, command: Command) -> None:
        mode = command.value.strip().lower()
        path = BARRIER_PATH.format(channel=self.settings.channel)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<BarrierGate><ctrlMode>{mode}</ctrlMode></BarrierGate>"
        )
        reply = self._put(client, path, body, "barrier")
        log.info("camera %s: barrier %s (%s)", self.name, mode, command.source)
        self.reply(command, ok=True, status=reply.status, message=f"barrier {mode}")
