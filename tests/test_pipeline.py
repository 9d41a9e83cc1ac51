"""The pure decision core, driven directly: inputs in, effects out; no broker, no threads.

The clock (monotonic seconds) and the rng are injected; the reads' wall-clock times are
fixed values, so every decision here is deterministic.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hik2mqtt.commands import Command
from hik2mqtt.config import Settings
from hik2mqtt.core.wire import CommandKind
from hik2mqtt.discovery import DeviceInfo, removal_topics
from hik2mqtt.events import OtherEvent, PictureInfo, PlateRead, Vehicle
from hik2mqtt.pipeline import (
    COMMAND_QUEUE,
    MAX_COMMAND_PAYLOAD,
    MAX_EVENT_TOPICS,
    MAX_PICTURE_TOPICS,
    REGISTRY_DELAY,
    REMOVAL_PACE,
    CommandDone,
    CommandRequest,
    Connected,
    DeviceInfoIn,
    Effect,
    EventIn,
    FetchDeviceInfo,
    ForgetPictures,
    Later,
    ListsIn,
    Log,
    MessageIn,
    OutputStateIn,
    PictureIn,
    Pipeline,
    Publish,
    ReadIn,
    Rediscover,
    RegistryDue,
    RemoveNext,
    RunCommand,
    SkippedIn,
    StatusChanged,
    StatusIn,
    WakeOutbox,
    WriteFile,
    event_filter,
    loggable,
)
from hik2mqtt.plates import parse_lists
from hik2mqtt.reads import EventArrived, PictureArrived, ReadArrived, unique_kinds
from hik2mqtt.topics import Topics

E = TypeVar("E")

TAKEN = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)  # the camera's time of a read
LISTS = parse_lists(
    """
lists:
  allow:
    plates:
      - plate: AB12 CDE
        name: Alice
  deny:
    plates: [EVIL 1]
""",
    csv_format=False,
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pipeline(
    cameras: dict[str, dict[str, Any]] | None = None,
    *,
    clock: Clock | None = None,
    rng: float = 0.5,
    ha: bool = False,
    lists: bool = True,
    **extra: Any,
) -> Pipeline:
    """A pipeline for ``cameras`` (name -> extra camera settings), prefix ``anpr``."""
    cams = cameras if cameras is not None else {"gate": {}}
    settings = Settings.model_validate(
        {
            "topic_prefix": "anpr",
            "cameras": {
                name: {"host": f"{name}.invalid", "password": "x", **cam}
                for name, cam in cams.items()
            },
            "homeassistant": {"enabled": ha},
            **extra,
        }
    )
    pipeline = Pipeline(
        settings=settings,
        topics=Topics("anpr", settings.bridge_id),
        clock=clock or Clock(),
        rng=lambda: rng,
    )
    if lists:
        assert pipeline.handle(ListsIn(LISTS)) == []
    return pipeline


def plate_read(
    plate: str | None = "AB12 CDE",
    *,
    taken: datetime | None = TAKEN,
    confidence: int | None = 95,
    retransmitted: bool = False,
    kinds: tuple[str, ...] = ("licensePlatePicture", "vehiclePicture"),
    event_id: str = "uuid-1",
) -> PlateRead:
    return PlateRead(
        plate=plate,
        raw_plate=plate or "unknown",
        time=taken.isoformat() if taken else None,
        confidence=confidence,
        direction="forward",
        country=None,
        channel=1,
        lane=None,
        event_id=event_id,
        vehicle=Vehicle(),
        list_name=None,
        retransmitted=retransmitted,
        plate_color=None,
        pictures=tuple(PictureInfo(f"{k}.jpg", k) for k in kinds),
    )


def read_in(
    plate: str | None = "AB12 CDE",
    *,
    camera: str = "gate",
    age: float = 1.5,
    source: str = "stream",
    **kw: Any,
) -> ReadIn:
    """A read that arrives ``age`` seconds after the camera's time for it."""
    read = plate_read(plate, **kw)
    received = TAKEN + timedelta(seconds=age)
    return ReadIn(camera, source, ReadArrived(read, received, unique_kinds(read.pictures)))


def of(effects: list[Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def on(effects: list[Effect], topic: str) -> list[Publish]:
    return [e for e in of(effects, Publish) if e.topic == topic]


def one_json(effects: list[Effect], topic: str) -> dict[str, Any]:
    (message,) = on(effects, topic)
    doc = json.loads(message.payload)
    assert isinstance(doc, dict)
    return doc


def messages(effects: list[Effect], level: int = logging.WARNING) -> list[str]:
    return [e.message % e.args for e in of(effects, Log) if e.level == level]


def result(effects: list[Effect], topic: str) -> dict[str, Any]:
    return one_json(effects, f"{topic}/result")


# -- reads ----------------------------------------------------------------------------------


def test_read_is_enriched_and_published_to_spool_and_state() -> None:
    """A read gets its age (received minus the camera's time), normalized plate, list match
    and duplicate flag; it goes to the spool on plate and retained on state, and no gate
    decision is published while the rule is off."""
    pipeline = make_pipeline()
    effects = pipeline.handle(read_in("ab12-cde", age=1.5))
    doc = one_json(effects, "anpr/gate/plate")
    assert doc["age"] == 1.5
    assert doc["retransmitted"] is False
    assert doc["normalized"] == "AB12CDE"
    assert doc["match"] == {
        "list": "allow",
        "entry": {"plate": "AB12 CDE", "name": "Alice", "notes": None},
        "distance": 0,
    }
    assert doc["duplicate"] is False
    assert doc["source"] == "stream"
    assert doc["images"] == {
        "plate": {"topic": "anpr/gate/image/plate", "file": None},
        "vehicle": {"topic": "anpr/gate/image/vehicle", "file": None},
    }
    (plate,) = on(effects, "anpr/gate/plate")
    assert (plate.route, plate.kind, plate.retain, plate.event_id) == (
        "spool",
        "read",
        False,
        "uuid-1",
    )
    (state,) = on(effects, "anpr/gate/state")
    assert (state.route, state.retain, state.payload) == ("latest", True, plate.payload)
    assert on(effects, "anpr/gate/gate") == []
    assert of(effects, RunCommand) == []
    assert messages(effects) == []


def test_read_without_camera_time_has_no_age_and_unread_plate_no_match() -> None:
    """A read without a time has age null (never stale); an unread plate has no
    normalized plate, no match and is never a duplicate."""
    pipeline = make_pipeline({"gate": {"max_age": 1}})
    for _ in range(2):
        doc = one_json(pipeline.handle(read_in(None, taken=None)), "anpr/gate/plate")
        assert (doc["age"], doc["retransmitted"], doc["normalized"], doc["match"]) == (
            None,
            False,
            None,
            None,
        )
        assert doc["duplicate"] is False


def test_list_match_follows_new_lists() -> None:
    """The match uses the lists last handed in (ListsIn): a plate matched before is no
    longer matched once the lists change."""
    pipeline = make_pipeline()
    assert one_json(pipeline.handle(read_in("EVIL 1")), "anpr/gate/plate")["match"]["list"] == (
        "deny"
    )
    assert one_json(pipeline.handle(read_in("NOBODY")), "anpr/gate/plate")["match"] is None
    pipeline.handle(ListsIn(parse_lists("list,plate\nvip,NOBODY\n", csv_format=True)))
    clock = pipeline.clock
    assert isinstance(clock, Clock)
    clock.now += 60  # out of the duplicate window
    assert one_json(pipeline.handle(read_in("EVIL 1")), "anpr/gate/plate")["match"] is None
    match = one_json(pipeline.handle(read_in("nobody")), "anpr/gate/plate")["match"]
    assert match["list"] == "vip"


def test_stale_reads_are_retransmitted_with_one_clock_warning_per_camera() -> None:
    """Reads older than the camera's MAX_AGE are published retransmitted; the first gives
    one warning naming HIK2MQTT_CAMERAS__<NAME>__MAX_AGE, later ones none; a read the camera
    itself marks retransmitted warns nobody; each camera warns once on its own."""
    pipeline = make_pipeline({"gate": {"max_age": 60}, "back": {"max_age": 60}})
    hour = 3600.0
    effects = pipeline.handle(read_in("RETX 1", age=hour, retransmitted=True))
    assert one_json(effects, "anpr/gate/plate")["retransmitted"] is True
    assert messages(effects) == []

    warnings: list[str] = []
    for plate, age in [("OLD 1", hour), ("OLD 2", hour), ("EDGE 1", 60.0), ("NEW 1", 1.0)]:
        effects = pipeline.handle(read_in(plate, age=age))
        warnings += messages(effects)
        doc = one_json(effects, "anpr/gate/plate")
        assert doc["retransmitted"] is (age > 60), plate
        assert doc["age"] == age
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("camera gate: a read arrived 3600 s after")
    assert "HIK2MQTT_CAMERAS__GATE__MAX_AGE" in warnings[0]

    other = messages(pipeline.handle(read_in("OLD 3", camera="back", age=hour)))
    assert len(other) == 1
    assert "HIK2MQTT_CAMERAS__BACK__MAX_AGE" in other[0]


def test_max_age_zero_trusts_only_the_cameras_flag() -> None:
    """With MAX_AGE 0 a day-old read is live (not retransmitted) and gives no warning."""
    pipeline = make_pipeline({"gate": {"max_age": 0}})
    effects = pipeline.handle(read_in(age=86400.0))
    assert one_json(effects, "anpr/gate/plate")["retransmitted"] is False
    assert messages(effects) == []


def test_duplicates_within_the_window_by_the_injected_clock() -> None:
    """The same normalized plate on the same camera within DUPLICATE_WINDOW is flagged
    duplicate; another camera's read is not; once the window has passed it is live again."""
    clock = Clock()
    pipeline = make_pipeline({"gate": {}, "back": {}}, clock=clock, duplicate_window=10)

    def duplicate(plate: str, camera: str = "gate") -> bool:
        flag = one_json(pipeline.handle(read_in(plate, camera=camera)), f"anpr/{camera}/plate")
        return bool(flag["duplicate"])

    assert duplicate("AB12 CDE") is False
    clock.now += 5
    assert duplicate("ab12cde") is True
    assert duplicate("AB12CDE", camera="back") is False
    assert duplicate("XY99 ZZZ") is False
    clock.now += 5.5  # 10.5 s after the read that fired
    assert duplicate("AB12-CDE") is False


def test_duplicates_drop_publishes_nothing() -> None:
    """With DUPLICATES=drop a duplicate is logged but neither published nor retained on
    state, and no gate decision is made for it."""
    clock = Clock()
    pipeline = make_pipeline({"gate": {"gate": {"enabled": True}}}, clock=clock, duplicates="drop")
    first = pipeline.handle(read_in())
    assert on(first, "anpr/gate/plate")
    assert len(of(first, RunCommand)) == 1
    clock.now += 1
    second = pipeline.handle(read_in())
    assert of(second, Publish) == []
    assert of(second, RunCommand) == []
    assert any("[duplicate]" in m for m in messages(second, logging.INFO))


# -- the gate rule --------------------------------------------------------------------------


GATE = {"gate": {"enabled": True, "output": 2, "pulse": 0.5}}
RETRANSMITTED = "retransmitted read (an old read re-sent by the camera)"


def test_gate_opens_for_a_live_listed_confident_read() -> None:
    """A live read of a plate on the rule's list with enough confidence publishes an open
    decision with its reason and action, and returns a pulse of the rule's output to run."""
    pipeline = make_pipeline({"gate": GATE})
    effects = pipeline.handle(read_in())
    assert one_json(effects, "anpr/gate/gate") == {
        "plate": "AB12 CDE",
        "event_id": "uuid-1",
        "open": True,
        "reason": "on list 'allow': Alice",
        "action": "output 2 for 0.5 s",
    }
    assert of(effects, RunCommand) == [
        RunCommand("gate", Command("output", "anpr/gate/output/2/set", 2, "0.5", "gate"))
    ]
    assert "camera gate: gate opens: on list 'allow': Alice" in messages(effects, logging.INFO)


def test_gate_opens_the_barrier_when_the_rule_says_barrier() -> None:
    """With the barrier option the opening command is barrier open, not an output pulse."""
    pipeline = make_pipeline({"gate": {"gate": {"enabled": True, "barrier": True}}})
    effects = pipeline.handle(read_in())
    assert one_json(effects, "anpr/gate/gate")["action"] == "barrier open"
    assert of(effects, RunCommand) == [
        RunCommand("gate", Command("barrier", "anpr/gate/barrier/set", 0, "open", "gate"))
    ]


@pytest.mark.parametrize(
    ("read", "reason"),
    [
        (read_in(retransmitted=True), RETRANSMITTED),
        (read_in(age=400.0), RETRANSMITTED),  # stale by the camera's MAX_AGE (300)
        (read_in(age=45.0), "read is 45 s old (limit 30 s)"),
        (read_in(confidence=50), "confidence 50 below 80"),
        (read_in(confidence=None), "confidence None below 80"),
        (read_in("STRANGER"), "not on list 'allow'"),
        (read_in("EVIL 1"), "on list 'deny', not 'allow'"),
        (read_in(None), "no plate read"),
    ],
    ids=["retransmitted", "stale", "too-old", "low-confidence", "no-confidence", "unlisted",
         "other-list", "no-plate"],
)  # fmt: skip
def test_gate_stays_closed_and_says_why(read: ReadIn, reason: str) -> None:
    """Every read that fails one test of the rule is published with open false, the reason
    and no action, and no command is returned."""
    pipeline = make_pipeline({"gate": GATE})
    effects = pipeline.handle(read)
    decision = one_json(effects, "anpr/gate/gate")
    assert (decision["open"], decision["reason"], decision["action"]) == (False, reason, None)
    assert of(effects, RunCommand) == []
    assert on(effects, "anpr/gate/plate")  # the read itself is still published


def test_gate_stays_closed_for_a_duplicate() -> None:
    """The second read of a plate within the duplicate window does not open again."""
    clock = Clock()
    pipeline = make_pipeline({"gate": GATE}, clock=clock)
    assert one_json(pipeline.handle(read_in()), "anpr/gate/gate")["open"] is True
    clock.now += 2
    effects = pipeline.handle(read_in())
    decision = one_json(effects, "anpr/gate/gate")
    assert (decision["open"], decision["reason"]) == (False, "duplicate of a read moments ago")
    assert of(effects, RunCommand) == []


def test_gate_on_a_busy_camera_says_it_stays_closed() -> None:
    """When the camera already has COMMAND_QUEUE commands, the gate decision says it stays
    closed because the camera is busy (never "open" for a command that is not queued)."""
    pipeline = make_pipeline({"gate": GATE})
    for _ in range(COMMAND_QUEUE):
        assert of(pipeline.handle(output_message("on", output=2)), RunCommand)
    effects = pipeline.handle(read_in())
    decision = one_json(effects, "anpr/gate/gate")
    assert (decision["open"], decision["action"]) == (False, None)
    assert decision["reason"] == "the camera is busy with earlier commands"
    assert of(effects, RunCommand) == []


# -- commands from MQTT -----------------------------------------------------------------------


def output_message(value: str | bytes, *, output: str | int = 1, camera: str = "gate") -> MessageIn:
    payload = value.encode() if isinstance(value, str) else value
    return MessageIn(f"anpr/{camera}/output/{output}/set", payload, retained=False)


def trigger(payload: bytes = b"", camera: str = "gate") -> MessageIn:
    return MessageIn(f"anpr/{camera}/trigger", payload, retained=False)


def test_retained_command_is_ignored() -> None:
    """A retained command is only logged (it would fire at every restart): no command, no
    result."""
    pipeline = make_pipeline()
    effects = pipeline.handle(MessageIn("anpr/gate/trigger", b"", retained=True))
    assert of(effects, Publish) == []
    assert of(effects, RunCommand) == []
    (warning,) = messages(effects)
    assert warning.startswith("ignored a retained message on anpr/gate/trigger")


def test_accepted_trigger_becomes_a_command() -> None:
    """A live trigger for a known camera becomes one RunCommand replying to its topic."""
    pipeline = make_pipeline()
    assert pipeline.handle(trigger(b"x" * MAX_COMMAND_PAYLOAD)) == [
        RunCommand("gate", Command("trigger", "anpr/gate/trigger", 0, "x" * MAX_COMMAND_PAYLOAD))
    ]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (trigger(camera="nosuch"), "no camera named 'nosuch'"),
        (trigger(b"x" * (MAX_COMMAND_PAYLOAD + 1)), "payload of 1025 bytes is over 1024"),
        (trigger(b"\xff\xfe"), "payload is not UTF-8 text"),
        (output_message("sideways"), "payload 'sideways': expected on, off or a number of seconds"),
        (output_message("1e3"), "payload '1e3': expected on, off or a number of seconds"),
        (output_message("²"), "payload '²': expected on, off or a number of seconds"),
        (output_message("-1"), "payload '-1': expected on, off or a number of seconds"),
        (output_message("0"), "a pulse must be from 0 to 600 seconds"),
        (output_message("600.5"), "a pulse must be from 0 to 600 seconds"),
        (MessageIn("anpr/gate/barrier/set", b"sideways", False), "payload 'sideways': expected open or close"),
    ],
    ids=["unknown-camera", "too-long", "not-utf8", "bad-output-value", "exponent",
         "unicode-digit-value", "negative", "zero-pulse", "long-pulse", "bad-barrier-value"],
)  # fmt: skip
def test_bad_commands_are_refused_with_a_reason(message: MessageIn, reason: str) -> None:
    """A command that fails a check is refused on <topic>/result with the reason and a
    warning; nothing runs."""
    pipeline = make_pipeline()
    effects = pipeline.handle(message)
    assert of(effects, RunCommand) == []
    assert result(effects, message.topic) == {"ok": False, "status": None, "message": reason}
    assert messages(effects) == [f"refused a command on {message.topic}: {reason}"]


@pytest.mark.parametrize(
    "output",
    ["0", "65", "²", "٣", "١٢", "-1", "+1", "1.0", "0x1", "abc", "", " ", "1" * 5000,
     "0" * 5000 + "1"],
)  # fmt: skip
def test_bad_output_numbers_are_refused(output: str) -> None:
    """An output level that is not ASCII digits from 1 to 64 (Unicode digits, 5,000-digit
    strings, signs, zero) is refused with a short reason; nothing runs."""
    pipeline = make_pipeline()
    message = output_message("on", output=output)
    effects = pipeline.handle(message)
    assert of(effects, RunCommand) == []
    reason = result(effects, message.topic)["message"]
    assert reason.endswith("expected a number from 1 to 64")
    assert len(reason) < 80  # a 5,000-digit level is not echoed back


@pytest.mark.parametrize(
    ("output", "value"), [("1", "on"), ("64", "OFF"), ("07", " 0.25 "), ("3", "600")]
)
def test_good_output_commands_are_accepted(output: str, value: str) -> None:
    """Outputs 1..64 with on, off or seconds (0 < s <= 600) become RunCommand."""
    pipeline = make_pipeline()
    message = output_message(value, output=output)
    (run,) = pipeline.handle(message)
    assert run == RunCommand("gate", Command("output", message.topic, int(output), value))


@pytest.mark.parametrize("value", ["open", "close", "OPEN"])
def test_good_barrier_commands_are_accepted(value: str) -> None:
    """barrier/set takes open or close."""
    pipeline = make_pipeline()
    (run,) = pipeline.handle(MessageIn("anpr/gate/barrier/set", value.encode(), False))
    assert run == RunCommand("gate", Command("barrier", "anpr/gate/barrier/set", 0, value))


def test_refusal_also_answers_the_response_topic_with_correlation() -> None:
    """An MQTT 5 request with a response topic gets the refusal there too, with its
    correlation data."""
    pipeline = make_pipeline()
    message = MessageIn(
        "anpr/gate/output/99/set", b"on", False, response_topic="me/reply", correlation=b"c1"
    )
    effects = pipeline.handle(message)
    (reply,) = on(effects, "me/reply")
    assert reply.correlation == b"c1"
    assert reply.payload == on(effects, "anpr/gate/output/99/set/result")[0].payload


def test_messages_on_other_topics_are_ignored() -> None:
    """A message on a topic that is no command is logged and ignored."""
    pipeline = make_pipeline()
    for topic in ["anpr/gate/plate", "other/gate/trigger", "anpr//trigger", "anpr/gate/output/1"]:
        effects = pipeline.handle(MessageIn(topic, b"1", False))
        assert messages(effects) == [f"ignored a message on {topic}"]
        assert of(effects, Publish) == []


def test_trigger_rate_limit_by_the_injected_clock() -> None:
    """A second trigger within TRIGGER_INTERVAL is refused as rate limited; one after the
    interval is accepted; another camera has its own limit."""
    clock = Clock()
    pipeline = make_pipeline({"gate": {"trigger_interval": 5}, "back": {}}, clock=clock)
    assert of(pipeline.handle(trigger()), RunCommand)
    clock.now += 4.9
    effects = pipeline.handle(trigger())
    assert of(effects, RunCommand) == []
    assert result(effects, "anpr/gate/trigger")["message"] == (
        "rate limited: at most one trigger every 5 s"
    )
    assert of(pipeline.handle(trigger(camera="back")), RunCommand)
    clock.now += 0.1
    assert of(pipeline.handle(trigger()), RunCommand)


def test_busy_after_command_queue_commands_until_one_is_done() -> None:
    """COMMAND_QUEUE commands may wait or run on a camera; the next is refused as busy
    until a CommandDone comes back; another camera is not affected."""
    pipeline = make_pipeline({"gate": {}, "back": {}})
    runs = [pipeline.handle(output_message("on")) for _ in range(COMMAND_QUEUE)]
    assert all(len(of(r, RunCommand)) == 1 for r in runs)
    busy = pipeline.handle(output_message("off"))
    assert of(busy, RunCommand) == []
    assert result(busy, "anpr/gate/output/1/set")["message"] == (
        "busy: earlier commands still running"
    )
    assert of(pipeline.handle(output_message("on", camera="back")), RunCommand)
    command = of(runs[0], RunCommand)[0].command
    pipeline.handle(CommandDone("gate", command, True, 200, "output 1 high"))
    assert of(pipeline.handle(output_message("off")), RunCommand)
    assert of(pipeline.handle(output_message("off")), RunCommand) == []


def test_command_done_publishes_the_result() -> None:
    """A finished command's outcome is published on <topic>/result with its extra fields."""
    pipeline = make_pipeline()
    command = Command("output", "anpr/gate/output/1/set", 1, "on")
    effects = pipeline.handle(
        CommandDone("gate", command, True, 200, "output 1 high", (("state", "on"),))
    )
    assert effects == [
        Publish(
            "anpr/gate/output/1/set/result",
            b'{"ok":true,"status":200,"message":"output 1 high","state":"on"}',
            kind="result",
        )
    ]


def test_command_done_answers_the_response_topic_with_correlation() -> None:
    """A command that carried an MQTT 5 response topic gets its outcome there too, with
    its correlation data, as well as on <topic>/result."""
    pipeline = make_pipeline()
    message = MessageIn(
        "anpr/gate/trigger", b"", False, response_topic="app/replies", correlation=b"\x00\x01"
    )
    (run,) = of(pipeline.handle(message), RunCommand)
    assert (run.command.response_topic, run.command.correlation) == ("app/replies", b"\x00\x01")
    effects = pipeline.handle(CommandDone("gate", run.command, False, 403, "no", ()))
    (reply,) = on(effects, "app/replies")
    assert reply.correlation == b"\x00\x01"
    assert json.loads(reply.payload) == {"ok": False, "status": 403, "message": "no"}
    assert on(effects, "anpr/gate/trigger/result")[0].payload == reply.payload


def test_pulse_schedules_its_off_which_is_not_counted_as_busy() -> None:
    """A pulse's outcome returns a delayed follow-up "off" for the same output; running
    it takes no place in the camera's queue, and its outcome frees none."""
    pipeline = make_pipeline()
    runs = [of(pipeline.handle(output_message("0.3")), RunCommand)[0] for _ in range(COMMAND_QUEUE)]
    effects = pipeline.handle(
        CommandDone("gate", runs[0].command, True, 200, "output 1 high for 0.3 s", pulse_off=0.3)
    )
    (off,) = of(effects, RunCommand)
    assert off == RunCommand(
        "gate",
        Command("output", "anpr/gate/output/1/set", 1, "off", "mqtt", follow_up=True),
        delay=0.3,
    )
    # The pulse's place is free again, and the off did not take it.
    assert of(pipeline.handle(output_message("on")), RunCommand)
    assert of(pipeline.handle(output_message("on")), RunCommand) == []
    # The off's outcome is published but frees no place.
    done = pipeline.handle(CommandDone("gate", off.command, True, 200, "output 1 low"))
    assert on(done, "anpr/gate/output/1/set/result")
    assert of(done, RunCommand) == []
    assert of(pipeline.handle(output_message("on")), RunCommand) == []
    pipeline.handle(CommandDone("gate", runs[1].command, True, 200, "output 1 high"))
    assert of(pipeline.handle(output_message("on")), RunCommand)


def test_output_state_is_retained() -> None:
    """The output state the camera reports is published retained on output/<n>."""
    pipeline = make_pipeline()
    assert pipeline.handle(OutputStateIn("gate", 3, "on")) == [
        Publish("anpr/gate/output/3", b"on", retain=True, kind="output")
    ]


# -- commands from the web page -----------------------------------------------------------------


def request(
    kind: CommandKind, value: str = "", output: int | None = None, camera: str = "gate"
) -> CommandRequest:
    return CommandRequest(camera, kind, output, value)


@pytest.mark.parametrize(
    ("item", "topic", "reason"),
    [
        (request("output", "on", 0), "anpr/gate/output/0/set", "output 0: expected a number from 1 to 64"),
        (request("output", "on", 65), "anpr/gate/output/65/set", "output 65: expected a number from 1 to 64"),
        (request("output", "on", None), "anpr/gate/output/0/set", "output None: expected a number from 1 to 64"),
        (request("output", "sideways", 1), "anpr/gate/output/1/set", "payload 'sideways': expected on, off or a number of seconds"),
        (request("output", "9" * 5000, 1), "anpr/gate/output/1/set", "payload '" + "9" * 40 + "': expected on, off or a number of seconds"),
        (request("barrier", "up"), "anpr/gate/barrier/set", "payload 'up': expected open or close"),
    ],
    ids=["output-0", "output-65", "no-output", "bad-value", "huge-value", "bad-barrier"],
)  # fmt: skip
def test_web_requests_are_validated_like_mqtt_ones(
    item: CommandRequest, topic: str, reason: str
) -> None:
    """A command from the web page goes through the same checks and is refused on the
    same result topic."""
    pipeline = make_pipeline()
    effects = pipeline.handle(item)
    assert of(effects, RunCommand) == []
    assert result(effects, topic)["message"] == reason


def test_web_requests_are_queued_and_share_the_rate_limit_and_queue() -> None:
    """Accepted web commands carry source web; a web trigger right after an MQTT one is
    rate limited; web commands count towards the camera's queue; an unknown camera's
    request does nothing."""
    clock = Clock()
    pipeline = make_pipeline(clock=clock)
    assert pipeline.handle(request("output", "on", 4)) == [
        RunCommand("gate", Command("output", "anpr/gate/output/4/set", 4, "on", "web"))
    ]
    assert pipeline.handle(request("barrier", "open")) == [
        RunCommand("gate", Command("barrier", "anpr/gate/barrier/set", 0, "open", "web"))
    ]
    assert of(pipeline.handle(trigger()), RunCommand)
    limited = pipeline.handle(request("trigger"))
    assert result(limited, "anpr/gate/trigger")["message"].startswith("rate limited")
    assert of(pipeline.handle(request("output", "off", 4)), RunCommand)  # the 4th
    busy = pipeline.handle(request("output", "off", 4))
    assert result(busy, "anpr/gate/output/4/set")["message"].startswith("busy")
    unknown = pipeline.handle(request("trigger", camera="nosuch"))
    assert of(unknown, RunCommand) == []
    assert messages(unknown) == ["refused a command for unknown camera nosuch"]


# -- other events, pictures -----------------------------------------------------------------------


def event_in(event_type: str, camera: str = "gate") -> EventIn:
    event = OtherEvent(event_type, "active", "Motion alarm", 1, "2026-03-04T12:00:00+00:00")
    return EventIn(camera, "stream", EventArrived(event))


@pytest.mark.parametrize(
    ("setting", "published"),
    [
        ("all", {"VMD", "linedetection", "fielddetection", "IO"}),
        ("ALL", {"VMD", "linedetection", "fielddetection", "IO"}),
        ("none", set()),
        (" vmd , LineDetection,", {"VMD", "linedetection"}),
        ("io", {"IO"}),
    ],
)
def test_event_filter(setting: str, published: set[str]) -> None:
    """HIK2MQTT_EVENTS: all, none, or a comma-separated list matched without regard to case;
    published events go to the spool on event/<type>."""
    pipeline = make_pipeline(events=setting)
    got = set()
    for event_type in ["VMD", "linedetection", "fielddetection", "IO"]:
        effects = pipeline.handle(event_in(event_type))
        for message in of(effects, Publish):
            assert (message.topic, message.route, message.kind) == (
                f"anpr/gate/event/{event_type}",
                "spool",
                "event",
            )
            assert json.loads(message.payload) == {
                "camera": "gate",
                "type": event_type,
                "state": "active",
                "description": "Motion alarm",
                "channel": 1,
                "time": "2026-03-04T12:00:00+00:00",
                "source": "stream",
            }
            got.add(event_type)
    assert got == published
    assert event_filter(setting)("vMd") is ("VMD" in published)


def test_event_type_is_made_safe_for_the_topic() -> None:
    """An event type with topic wildcards or separators becomes a safe topic level."""
    pipeline = make_pipeline()
    (message,) = of(pipeline.handle(event_in("a/b+#c")), Publish)
    assert message.topic == "anpr/gate/event/a_b_c"


def test_picture_kinds_are_capped_per_camera_with_one_warning(tmp_path: Path) -> None:
    """A camera gets at most MAX_PICTURE_TOPICS kinds of picture (retained topics, files);
    the first kind past it gives one warning, and pictures of such kinds are dropped."""
    pipeline = make_pipeline({"gate": {}, "back": {}}, images={"dir": str(tmp_path)})
    kinds = tuple(f"kind{i}" for i in range(MAX_PICTURE_TOPICS + 3))
    arrived = read_in(kinds=kinds)
    published = arrived.arrived.kinds  # as the decoder names them: picture, picture_2 ...
    effects = pipeline.handle(arrived)
    images = one_json(effects, "anpr/gate/plate")["images"]
    assert list(images) == list(published[:MAX_PICTURE_TOPICS])
    (warning,) = messages(effects)
    assert warning.startswith(f"camera gate: sent more than {MAX_PICTURE_TOPICS} kinds")
    assert published[MAX_PICTURE_TOPICS] in warning

    assert messages(pipeline.handle(read_in(kinds=kinds))) == []  # a second read: no new warning
    assert messages(pipeline.handle(read_in("OTHER", kinds=("kind99",)))) == []

    read = read_in(kinds=kinds).arrived
    first = published[0]
    allowed = pipeline.handle(PictureIn("gate", PictureArrived(read, first, "kind0.jpg", b"J0")))
    (picture,) = of(allowed, Publish)
    assert (picture.topic, picture.payload, picture.retain, picture.route, picture.kind) == (
        f"anpr/gate/image/{first}",
        b"J0",
        True,
        "latest",
        "picture",
    )
    (written,) = of(allowed, WriteFile)
    assert written.data == b"J0"
    assert written.path.is_relative_to(tmp_path / "gate")
    assert images[first]["file"] == str(written.path)
    over = PictureIn("gate", PictureArrived(read, published[-1], "kind9.jpg", b"J9"))
    assert pipeline.handle(over) == []
    # Another camera has its own kinds.
    other = read_in(camera="back", kinds=kinds[MAX_PICTURE_TOPICS:])
    assert len(one_json(pipeline.handle(other), "anpr/back/plate")["images"]) == 3


def test_pictures_without_mqtt_go_only_to_files(tmp_path: Path) -> None:
    """With MQTT pictures off and a folder set, a picture is only written, and the read
    names no image topic."""
    pipeline = make_pipeline(images={"mqtt": False, "dir": str(tmp_path)})
    item = read_in()
    images = one_json(pipeline.handle(item), "anpr/gate/plate")["images"]
    assert images["plate"]["topic"] is None
    effects = pipeline.handle(PictureIn("gate", PictureArrived(item.arrived, "plate", None, b"P")))
    assert of(effects, Publish) == []
    (written,) = of(effects, WriteFile)
    assert str(written.path) == images["plate"]["file"]


def test_skipped_part_is_a_warning() -> None:
    """A part the camera sent that was not understood is a warning naming the camera."""
    effects = make_pipeline().handle(SkippedIn("gate", "undecodable event part"))
    assert messages(effects) == ["camera gate: skipped undecodable event part"]


FORGED = "AB1\n2026-03-04 12:00:00 ERROR hik2mqtt: forged\r\x1b[31m\u2028"


def test_camera_and_publisher_text_cannot_forge_log_lines() -> None:
    """A plate, a topic or a skip reason with newlines or other control characters is
    logged on one line, escaped; printable text (Chinese plates too) is left as it is."""
    pipeline = make_pipeline()
    effects = pipeline.handle(read_in(FORGED))
    effects += pipeline.handle(read_in(None, taken=None))
    effects += pipeline.handle(MessageIn(f"anpr/{FORGED}/trigger", b"", False))
    effects += pipeline.handle(MessageIn(f"anpr/gate/{FORGED}", b"", False))
    effects += pipeline.handle(MessageIn(f"anpr/gate/output/{FORGED}/set", b"", True))
    effects += pipeline.handle(SkippedIn("gate", FORGED))
    lines = [e.message % e.args for e in of(effects, Log)]
    assert len(lines) >= 5
    assert all(line.isprintable() for line in lines), lines
    assert "plate AB1\\n2026-03-04 12:00:00 ERROR hik2mqtt: forged\\r\\x1b[31m\\u2028 (" in lines[0]
    assert loggable("京A·12345 ÄÖ") == "京A·12345 ÄÖ"
    assert loggable(None) == "None"


# -- statuses, connection, Home Assistant ------------------------------------------------------


def test_status_is_published_only_on_change() -> None:
    """A camera's status is published (retained) when it changes, not when repeated; the
    first online asks for the device info once when Home Assistant is on."""
    pipeline = make_pipeline(ha=True)
    assert pipeline.statuses() == {"gate": "starting"}
    first = pipeline.handle(StatusIn("gate", online=True))
    assert first[:2] == [
        Publish("anpr/gate/status", b"online", retain=True),
        StatusChanged("gate", True),
    ]
    assert of(first, FetchDeviceInfo) == [FetchDeviceInfo("gate")]
    assert pipeline.handle(StatusIn("gate", online=True)) == []
    offline = pipeline.handle(StatusIn("gate", online=False))
    assert on(offline, "anpr/gate/status") == [Publish("anpr/gate/status", b"offline", retain=True)]
    assert of(offline, FetchDeviceInfo) == []
    assert pipeline.handle(StatusIn("gate", online=False)) == []
    again = pipeline.handle(StatusIn("gate", online=True))
    assert on(again, "anpr/gate/status")
    assert of(again, FetchDeviceInfo) == []
    assert pipeline.statuses() == {"gate": "online"}
    assert pipeline.handle(StatusIn("nosuch", online=True)) == []


def test_no_device_info_request_without_home_assistant() -> None:
    """With Home Assistant discovery off, going online asks for no device info."""
    pipeline = make_pipeline(ha=False)
    assert of(pipeline.handle(StatusIn("gate", online=True)), FetchDeviceInfo) == []


def test_first_status_offline_is_published() -> None:
    """A camera unreachable from the start is published offline (its first status)."""
    pipeline = make_pipeline(ha=True)
    effects = pipeline.handle(StatusIn("gate", online=False))
    assert on(effects, "anpr/gate/status") == [Publish("anpr/gate/status", b"offline", retain=True)]
    assert of(effects, FetchDeviceInfo) == []


def discovery_topics(effects: list[Effect]) -> list[str]:
    return [p.topic for p in of(effects, Publish) if p.kind == "discovery"]


def test_connected_announces_bridge_outbox_discovery_registry_and_statuses() -> None:
    """After a connect: bridge online, the outbox woken, discovery, the registry due later,
    and each known camera status again (unknown ones are not invented)."""
    pipeline = make_pipeline({"gate": {}, "back": {}}, ha=True)
    pipeline.handle(StatusIn("gate", online=True))
    effects = pipeline.handle(Connected())
    assert effects[:2] == [Publish("anpr/bridge/status", b"online", retain=True), WakeOutbox()]
    topics = discovery_topics(effects)
    assert any(t.startswith("homeassistant/") and "hik2mqtt_gate" in t for t in topics)
    assert any("hik2mqtt_back" in t for t in topics)
    assert all(p.retain for p in of(effects, Publish))
    assert of(effects, Later) == [Later(REGISTRY_DELAY, RegistryDue())]
    assert on(effects, "anpr/gate/status") == [Publish("anpr/gate/status", b"online", retain=True)]
    assert on(effects, "anpr/back/status") == []
    # Again on a reconnect.
    assert pipeline.handle(Connected())[:2] == effects[:2]


def test_connected_without_home_assistant() -> None:
    """Without Home Assistant: bridge online and the outbox woken, no discovery; the
    registry is still published (other bridges on the broker read it)."""
    pipeline = make_pipeline(ha=False)
    assert pipeline.handle(Connected()) == [
        Publish("anpr/bridge/status", b"online", retain=True),
        WakeOutbox(),
        Later(2.0, RegistryDue()),
    ]
    assert pipeline.handle(Rediscover()) == []


def test_forgetting_a_cameras_last_read_clears_what_the_broker_retains_of_it() -> None:
    """ForgetPictures (its last read was erased) clears the camera's retained pictures, of
    every kind it has sent and the kinds given (never a topic from a bad kind), and its
    retained state, through the latest-value route; an unknown camera is ignored."""
    pipeline = make_pipeline()
    pipeline.handle(read_in())
    effects = pipeline.handle(ForgetPictures("gate", ("scene", "a/#", "+", "plate")))
    cleared = of(effects, Publish)
    assert [p.topic for p in cleared] == [
        "anpr/gate/image/plate",
        "anpr/gate/image/scene",
        "anpr/gate/image/vehicle",
        "anpr/gate/state",
    ]
    assert all((p.payload, p.retain, p.route) == (b"", True, "latest") for p in cleared)
    assert messages(effects, logging.INFO) == [
        "camera gate: its last read was erased; retained pictures and state cleared"
    ]
    assert pipeline.handle(ForgetPictures("nowhere", ("plate",))) == []


def test_device_info_goes_into_discovery() -> None:
    """The device info a camera gave is used in its discovery configs."""
    pipeline = make_pipeline(ha=True)
    effects = pipeline.handle(DeviceInfoIn("gate", DeviceInfo("DS-2CD7A26", "SN1", "V5.7")))
    configs = [json.loads(p.payload) for p in of(effects, Publish) if "hik2mqtt_gate" in p.topic]
    assert configs
    assert all(c["device"]["model"] == "DS-2CD7A26" for c in configs if "device" in c)


def test_registry_removes_cameras_no_longer_configured_once() -> None:
    """The retained registry read after a connect clears the discovery of cameras that are
    gone (and only those, one camera at a time), the first time only; RegistryDue publishes
    the cameras now."""
    pipeline = make_pipeline({"gate": {}, "back": {}}, ha=True)
    registry = MessageIn("anpr/bridge/cameras", b'["gate","old","older"]', retained=True)
    first = pipeline.handle(registry)
    assert of(first, Later) == [Later(REMOVAL_PACE, RemoveNext())]
    effects = first + pipeline.handle(RemoveNext())
    assert pipeline.handle(RemoveNext()) == []
    cleared = of(effects, Publish)
    expected = removal_topics("homeassistant", "old") + removal_topics("homeassistant", "older")
    assert [p.topic for p in cleared] == expected
    assert all(p.payload == b"" and p.retain for p in cleared)
    assert messages(effects, logging.INFO) == [
        "camera old is no longer configured: removing it from Home Assistant",
        "camera older is no longer configured: removing it from Home Assistant",
    ]
    assert pipeline.handle(registry) == []
    assert pipeline.handle(RegistryDue()) == [
        Publish("anpr/bridge/cameras", b'["back", "gate"]', retain=True, kind="discovery")
    ]


def test_registry_after_our_own_is_ignored() -> None:
    """Once the bridge has published its registry, a registry message (its own, echoed
    back) removes nothing."""
    pipeline = make_pipeline(ha=True)
    pipeline.handle(RegistryDue())
    assert pipeline.handle(MessageIn("anpr/bridge/cameras", b'["gone"]', retained=True)) == []


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b'{"gone": 1}', b"[" * 100_000, b"\xff", b'"gone"', b"[1, null, [2]]"],
)
def test_hostile_registry_removes_nothing_it_should_not(payload: bytes) -> None:
    """A registry that is empty, not JSON, not a list or absurdly nested removes nothing
    and raises nothing."""
    pipeline = make_pipeline(ha=True)
    effects = pipeline.handle(MessageIn("anpr/bridge/cameras", payload, retained=True))
    assert all(t.startswith("homeassistant/") for t in discovery_topics(effects))
    assert not any("hik2mqtt_gate/" in t for t in discovery_topics(effects))
    assert pipeline.registry_seen


def test_home_assistant_online_rediscovers_after_a_random_delay() -> None:
    """Home Assistant's online status asks for discovery again after 0.5 + 2.5 * rng
    seconds (the injected rng); other payloads do nothing; Rediscover publishes it."""
    pipeline = make_pipeline(ha=True, rng=0.2)
    assert pipeline.handle(MessageIn("homeassistant/status", b"online\n", False)) == [
        Later(1.0, Rediscover())
    ]
    assert pipeline.handle(MessageIn("homeassistant/status", b"offline", False)) == []
    assert discovery_topics(pipeline.handle(Rediscover()))
    late = make_pipeline(ha=True, rng=1.0)
    assert late.handle(MessageIn("homeassistant/status", b"online", True)) == [
        Later(3.0, Rediscover())
    ]


def test_a_retransmitted_read_neither_is_nor_makes_a_duplicate() -> None:
    """A retransmitted read of a plate is not flagged duplicate, and a live read of the same
    plate moments later is not a duplicate either (the old read starts no window)."""
    pipeline = make_pipeline({"gate": GATE})
    old = one_json(pipeline.handle(read_in(retransmitted=True)), "anpr/gate/plate")
    assert (old["retransmitted"], old["duplicate"]) == (True, False)
    effects = pipeline.handle(read_in())
    assert one_json(effects, "anpr/gate/plate")["duplicate"] is False
    assert one_json(effects, "anpr/gate/gate")["open"] is True


def test_event_types_are_capped_per_camera_with_one_warning() -> None:
    """A camera publishes at most MAX_EVENT_TOPICS event types (camera-chosen topic levels);
    the first past it gives one warning naming the camera, and known types still go out."""
    pipeline = make_pipeline()
    for i in range(MAX_EVENT_TOPICS):
        assert of(pipeline.handle(event_in(f"type{i}")), Publish)
    over = pipeline.handle(event_in("one_too_many"))
    assert of(over, Publish) == []
    (warning,) = messages(over)
    assert warning.startswith(f"camera gate: sent more than {MAX_EVENT_TOPICS} types of event")
    assert messages(pipeline.handle(event_in("another"))) == []
    assert of(pipeline.handle(event_in("type0")), Publish)


def test_with_a_bridge_id_commands_for_other_cameras_are_left_to_their_bridge() -> None:
    """One of several bridges does not answer a command for a camera it does not have (the
    camera's own bridge does); a lone bridge refuses it with a reason."""
    shared = make_pipeline(bridge_id="north")
    effects = shared.handle(trigger(camera="south_gate"))
    assert of(effects, Publish) == []
    assert of(effects, RunCommand) == []
    alone = make_pipeline()
    refused = alone.handle(trigger(camera="south_gate"))
    assert result(refused, "anpr/south_gate/trigger")["message"] == "no camera named 'south_gate'"


def test_a_burst_of_home_assistant_online_gives_one_announcement() -> None:
    """Many "online" messages from Home Assistant before the announcement is due schedule
    one rediscovery, not one each; after it, the next "online" schedules another."""
    pipeline = make_pipeline(ha=True)
    online = MessageIn("homeassistant/status", b"online", retained=False)
    scheduled = [e for _ in range(50) for e in pipeline.handle(online) if isinstance(e, Later)]
    assert scheduled == [Later(1.75, Rediscover())]
    assert of(pipeline.handle(Rediscover()), Publish)
    assert of(pipeline.handle(online), Later)


def test_another_bridges_registry_is_read_once_and_warned_about_once() -> None:
    """A camera of ours in another live bridge's registry gives one warning naming both;
    repeats, registries naming no camera of ours and garbage cost nothing more."""
    pipeline = make_pipeline({"gate": {}, "yard": {}}, bridge_id="north")
    quiet = pipeline.handle(MessageIn("anpr/bridge/south/cameras", b'["gate","x"]', True))
    assert messages(quiet) == []  # not known to be online yet
    (warning,) = messages(pipeline.handle(MessageIn("anpr/bridge/south/status", b"online", True)))
    assert warning.startswith("camera gate is also configured on the live bridge south")
    again = MessageIn("anpr/bridge/south/cameras", b'["gate"]', True)
    assert messages(pipeline.handle(again)) == []
    for payload in (b"[" * 100_000, b"{}", b'["' + b"y" * 70_000 + b'"]'):
        assert messages(pipeline.handle(MessageIn("anpr/bridge/east/cameras", payload, True))) == []
    assert pipeline.other_bridges["east"] == (False, frozenset())
