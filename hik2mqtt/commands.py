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

Each command's outcome is handed back as a :class:`~hik2mqtt.pipeline.CommandDone`-shaped
:class:`Outcome` (the pipeline publishes it on the command's topic plus ``/result``); reads
in an MNPR answer are handed on like any other camera output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from hik2mqtt import isapi
from hik2mqtt.camera import MNPR_PATH, AuthGate, CameraClient, CameraReply
from hik2mqtt.core.wire import CommandKind
from hik2mqtt.errors import AuthError, CameraHTTPError, CameraUnreachable, ProtocolError
from hik2mqtt.multipart import Part, parts_of
from hik2mqtt.reads import Output, ReadArrived, ReadAssembler, is_event_part

log = logging.getLogger(__name__)

OUTPUT_PATH = "/ISAPI/System/IO/outputs/{output}"
BARRIER_PATH = "/ISAPI/Parking/channels/{channel}/barrierGate"
XML = "application/xml"


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    reply_to: str  # the command's topic; the outcome goes to reply_to + "/result"
    output: int = 0
    value: str = ""  # output: on | off | seconds; barrier: open | close
    source: str = "mqtt"  # or "gate" for the built-in gate rule, "web" for the page
    response_topic: str | None = None  # MQTT 5: also answer here, with the correlation data
    correlation: bytes | None = None
    follow_up: bool = False  # the "off" that ends a pulse (not counted as a new command)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status: int | None
    message: str
    extra: tuple[tuple[str, str | int | None], ...] = ()
    pulse_off: float | None = None  # switch the output off after this many seconds
    output_state: str | None = None  # the state the camera reported after the command


def check_value(kind: str, value: str) -> str | None:
    """What is wrong with a command's payload, or None when it is fine."""
    text = value.strip().lower()
    if kind == "output":
        if text in ("on", "off"):
            return None
        if not _is_seconds(text):
            return f"payload {value[:40]!r}: expected on, off or a number of seconds"
        return None if 0 < float(text) <= 600 else "a pulse must be from 0 to 600 seconds"
    if kind == "barrier" and text not in ("open", "close"):
        return f"payload {value[:40]!r}: expected open or close"
    return None


def _is_seconds(text: str) -> bool:
    """A plain decimal number of seconds (ASCII digits, one optional point)."""
    whole, _, fraction = text.partition(".")
    digits = whole + fraction
    return 0 < len(digits) <= 12 and digits.isascii() and digits.isdigit()


class CommandRunner:
    """Runs one camera's commands over HTTP and says how each went (no publishing here)."""

    def __init__(
        self,
        *,
        name: str,
        client: CameraClient,
        auth: AuthGate,
        max_part_size: int,
        deliver: Callable[[Output], None],
    ) -> None:
        self.name = name
        self.client = client
        self.settings = client.settings
        self.auth = auth
        self._max_part_size = max_part_size
        self._deliver = deliver  # reads in an MNPR answer go where the stream's go

    def execute(self, command: Command) -> Outcome:
        if (wait := self.auth.remaining()) > 0:
            return Outcome(
                False,
                None,
                f"the camera refused our login; not trying again for {wait:.0f} s "
                "(it locks accounts after repeated failures)",
            )
        try:
            if command.kind == "trigger":
                return self._trigger()
            if command.kind == "output":
                return self._output(command)
            return self._barrier(command)
        except AuthError as exc:
            self.auth.refused_by(self.name, exc)
            return Outcome(False, 401, str(exc))
        except CameraHTTPError as exc:
            return Outcome(False, exc.status, str(exc), (("sub_status", exc.sub_status),))
        except CameraUnreachable as exc:
            return Outcome(False, None, str(exc))

    # -- manual recognition ---------------------------------------------------------------

    def _trigger(self) -> Outcome:
        log.info("camera %s: manual recognition requested", self.name)
        reply = self.client.request(
            MNPR_PATH.format(channel=self.settings.channel), limit=2 * self._max_part_size
        )
        parts = self._parts(reply)
        if parts is None:
            return Outcome(False, reply.status, "unreadable multipart answer")
        assembler = ReadAssembler()
        plates: list[str | None] = []
        status = None
        for part in parts:
            if is_event_part(part) and (found := isapi.response_status(part.body)):
                status = found
                continue
            output = assembler.handle(part)
            if isinstance(output, ReadArrived):
                plates.append(output.read.plate)
            self._deliver(output)
        if plates:
            message = f"read {plates[0] or 'no plate'}"
            return Outcome(True, reply.status, message, (("plate", plates[0]),))
        if status is not None and not status.ok:
            return Outcome(
                False, reply.status, status.describe(), (("sub_status", status.sub_status),)
            )
        message = status.describe() if status else "triggered; no read in the answer"
        return Outcome(True, reply.status, message, (("plate", None),))

    def _parts(self, reply: CameraReply) -> list[Part] | None:
        try:
            return parts_of(reply.content_type, reply.body, max_part_size=self._max_part_size)
        except ProtocolError as exc:
            log.warning("camera %s: MNPR answer: %s", self.name, exc)
            return None

    # -- outputs and barrier --------------------------------------------------------------

    def _put(self, path: str, body: str, what: str) -> CameraReply:
        reply = self.client.put(path, body.encode(), content_type=XML)
        status = isapi.response_status(reply.body)
        if status is not None and not status.ok:
            raise CameraHTTPError(
                f"{what}: {status.describe()}", status=reply.status, sub_status=status.sub_status
            )
        return reply

    def _output(self, command: Command) -> Outcome:
        value = command.value.strip().lower()
        level = "low" if value == "off" else "high"
        path = OUTPUT_PATH.format(output=command.output)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<IOPortData><outputState>{level}</outputState></IOPortData>"
        )
        reply = self._put(path + "/trigger", body, f"output {command.output}")
        state = self._output_state(command.output)
        pulse = None if value in ("on", "off") else float(value)
        log.info("camera %s: output %d %s (%s)", self.name, command.output, value, command.source)
        return Outcome(
            True,
            reply.status,
            f"output {command.output} {level}" + (f" for {pulse:g} s" if pulse else ""),
            (("state", state),),
            pulse_off=pulse,
            output_state=state,
        )

    def _output_state(self, output: int) -> str | None:
        """The output's state as the camera reports it (None if unknown)."""
        try:
            reply = self.client.request(OUTPUT_PATH.format(output=output) + "/status", limit=65536)
        except (CameraHTTPError, CameraUnreachable) as exc:
            log.warning("camera %s: output %d status unknown: %s", self.name, output, exc)
            return None
        return isapi.io_state(reply.body)

    def _barrier(self, command: Command) -> Outcome:
        mode = command.value.strip().lower()
        path = BARRIER_PATH.format(channel=self.settings.channel)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<BarrierGate><ctrlMode>{mode}</ctrlMode></BarrierGate>"
        )
        reply = self._put(path, body, "barrier")
        log.info("camera %s: barrier %s (%s)", self.name, mode, command.source)
        return Outcome(True, reply.status, f"barrier {mode}")
