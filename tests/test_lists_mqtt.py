"""Lists changed over MQTT (issue 21): ``<prefix>/lists/<list>/add`` and ``/remove``.

The message is checked by the pipeline (retained, size, UTF-8, a JSON object of known
fields, how many edits wait); the entry by the same rules as the page's editor where the
file is written; the outcome is on ``<topic>/result`` (and an MQTT 5 response topic).
End to end against the real broker and the simulator: an added pass opens the gate while
it is valid, is refused once expired, and a removed one no longer opens it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hik2mqtt.pipeline import (
    LIST_EDITS_QUEUE,
    MAX_LIST_PAYLOAD,
    EditList,
    ListEditDone,
    Log,
    MessageIn,
    Publish,
)
from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Subscribe,
    bridge_settings,
    camera_config,
    props_of,
    wait_until,
)
from tests.test_pipeline import make_pipeline

LISTS_FILE = "/nonexistent/lists.yaml"  # the pipeline never reads it: the edge does


def results(effects: list[Any], topic: str) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in effects if isinstance(e, Publish) and e.topic == topic]


# -- the pipeline's checks -------------------------------------------------------------------


def test_a_good_add_becomes_one_edit_and_its_outcome_is_published() -> None:
    pipeline = make_pipeline(lists_file=LISTS_FILE)
    topic = "anpr/lists/visitors/add"
    body = {"plate": "AB12 CDE", "name": "Bob", "valid_until": "2030-01-01T18:00"}
    (edit,) = pipeline.handle(MessageIn(topic, json.dumps(body).encode(), retained=False))
    assert edit == EditList("visitors", "add", body, topic)
    done = pipeline.handle(ListEditDone(edit, True, 200, "AB12 CDE added on list 'visitors'"))
    assert results(done, f"{topic}/result") == [
        {"ok": True, "status": 200, "message": "AB12 CDE added on list 'visitors'"}
    ]
    refused = pipeline.handle(ListEditDone(edit, False, 404, "AB12 CDE is not on list 'x'"))
    assert results(refused, f"{topic}/result") == [
        {"ok": False, "status": 404, "message": "AB12 CDE is not on list 'x'"}
    ]
    assert pipeline.list_edits == 0


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("anpr/lists/v/add", b"x" * (MAX_LIST_PAYLOAD + 1), "over 1024"),
        ("anpr/lists/v/add", b'{"plate": "\xff"}', "not UTF-8"),
        ("anpr/lists/v/add", b"AB12CDE", "not JSON"),
        ("anpr/lists/v/add", b"[" * 500 + b"]" * 500, "JSON object"),
        ("anpr/lists/v/add", b"[" * 1020 + b"]", "not JSON"),
        ("anpr/lists/v/add", b'"AB12CDE"', "JSON object"),
        ("anpr/lists/v/add", b'{"plate": "A1", "colour": "red"}', "unknown field 'colour'"),
        ("anpr/lists/v/remove", b'{"plate": "A1", "name": "x"}', "unknown field 'name'"),
    ],
    ids=["big", "utf8", "text", "deep", "deeper", "string", "field", "remove-field"],
)
def test_a_bad_message_is_refused_with_its_reason_and_writes_nothing(
    topic: str, payload: bytes, reason: str
) -> None:
    pipeline = make_pipeline(lists_file=LISTS_FILE)
    effects = pipeline.handle(MessageIn(topic, payload, retained=False))
    assert not [e for e in effects if isinstance(e, EditList)]
    (result,) = results(effects, f"{topic}/result")
    assert result["ok"] is False
    assert result["status"] is None
    assert reason in result["message"]


def test_retained_edits_are_never_acted_on_nor_answered() -> None:
    pipeline = make_pipeline(lists_file=LISTS_FILE)
    effects = pipeline.handle(MessageIn("anpr/lists/v/add", b'{"plate": "A1"}', retained=True))
    assert [type(e) for e in effects] == [Log]
    assert "must not be retained" in effects[0].message  # type: ignore[union-attr]


def test_edits_past_the_queue_are_refused_busy_until_one_is_done() -> None:
    pipeline = make_pipeline(lists_file=LISTS_FILE)
    topic = "anpr/lists/v/add"
    edits = [
        pipeline.handle(MessageIn(topic, b'{"plate": "A%d"}' % i, retained=False))[0]
        for i in range(LIST_EDITS_QUEUE)
    ]
    assert all(isinstance(e, EditList) for e in edits)
    busy = pipeline.handle(MessageIn(topic, b'{"plate": "B1"}', retained=False))
    assert "busy" in results(busy, f"{topic}/result")[0]["message"]
    pipeline.handle(ListEditDone(edits[0], True, 200, "done"))  # type: ignore[arg-type]
    (again,) = pipeline.handle(MessageIn(topic, b'{"plate": "B1"}', retained=False))
    assert isinstance(again, EditList)


def test_without_a_lists_file_an_edit_is_refused_or_left_to_another_bridge() -> None:
    alone = make_pipeline()
    effects = alone.handle(MessageIn("anpr/lists/v/add", b'{"plate": "A1"}', retained=False))
    assert "HIK2MQTT_LISTS_FILE" in results(effects, "anpr/lists/v/add/result")[0]["message"]
    one_of_several = make_pipeline(bridge_id="north")
    effects = one_of_several.handle(
        MessageIn("anpr/lists/v/add", b'{"plate": "A1"}', retained=False)
    )
    assert [e.level for e in effects if isinstance(e, Log)] == [logging.DEBUG]
    assert not [e for e in effects if isinstance(e, Publish)]


def test_a_correlated_request_is_answered_on_its_response_topic_too() -> None:
    pipeline = make_pipeline(lists_file=LISTS_FILE)
    topic = "anpr/lists/v/remove"
    (edit,) = pipeline.handle(
        MessageIn(topic, b'{"plate": "A1"}', False, response_topic="app/reply", correlation=b"7")
    )
    done = pipeline.handle(ListEditDone(edit, True, 200, "A1 removed"))  # type: ignore[arg-type]
    reply = [e for e in done if isinstance(e, Publish) and e.topic == "app/reply"]
    assert [(e.correlation, json.loads(e.payload)["ok"]) for e in reply] == [(b"7", True)]


# -- end to end ------------------------------------------------------------------------------


def test_a_pass_added_over_mqtt_opens_the_gate_while_valid_and_not_once_removed_or_expired(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    lists = tmp_path / "lists.yaml"
    lists.write_text("lists:\n  allow:\n    plates:\n      - plate: OWNER 1\n")
    cam = camera_config(simulator, gate={"enabled": True, "output": 1, "pulse": 0.1})
    sub = subscribe(f"{prefix}/#")
    settings = bridge_settings(
        broker, prefix, {"cam": cam}, lists_file=str(lists), duplicate_window=0
    )
    run_bridge(settings)
    wait_until(lambda: sub.on(f"{prefix}/bridge/status"))
    assert simulator.wait_for_streams(1)
    add, remove = f"{prefix}/lists/allow/add", f"{prefix}/lists/allow/remove"
    until = (datetime.now() + timedelta(hours=2)).replace(microsecond=0).isoformat()

    def edit(topic: str, body: dict[str, str]) -> dict[str, Any]:
        before = len(sub.on(f"{topic}/result"))
        sub.publish(topic, json.dumps(body))
        return json.loads(sub.wait_for(f"{topic}/result", before + 1)[-1].payload)  # type: ignore[no-any-return]

    def gate_for(plate: str) -> dict[str, Any]:
        before = len(sub.on(f"{prefix}/cam/gate"))
        simulator.emit_read(plate)
        return json.loads(sub.wait_for(f"{prefix}/cam/gate", before + 1)[-1].payload)  # type: ignore[no-any-return]

    answer = edit(add, {"plate": "VIS 42", "name": "Visitor", "valid_until": until})
    assert answer == {"ok": True, "status": 200, "message": "VIS 42 added on list 'allow'"}
    doc = yaml.safe_load(lists.read_text())
    assert {"plate": "VIS 42", "name": "Visitor", "valid_until": until} in doc["lists"]["allow"]
    assert "OWNER 1" in doc["lists"]["allow"]  # the rest of the file kept
    # The outcome is published once the new lists are in effect: the next read sees them.
    assert gate_for("VIS42")["open"] is True

    expired = (datetime.now() - timedelta(minutes=1)).replace(microsecond=0).isoformat()
    assert edit(add, {"plate": "VIS 42", "valid_until": expired})["message"].endswith(
        "replaced on list 'allow'"
    )
    decision = gate_for("VIS42")
    assert decision["open"] is False
    assert decision["reason"].startswith("pass expired (list 'allow': VIS 42, valid until")

    assert edit(remove, {"plate": "vis-42"})["ok"] is True
    assert "VIS 42" not in lists.read_text()
    decision = gate_for("VIS42")
    assert decision["open"] is False
    assert "not on list" in decision["reason"]

    refused = edit(remove, {"plate": "VIS 42"})
    assert (refused["ok"], refused["status"]) == (False, 404)
    bad = edit(add, {"plate": "VIS 43", "valid_until": "next tuesday"})
    assert (bad["ok"], bad["status"]) == (False, 400)
    assert "valid_until" in bad["message"]
    assert "VIS 43" not in lists.read_text()
    assert gate_for("OWNER1")["open"] is True  # the owner's entry was never touched


def test_an_mqtt5_list_edit_is_answered_correlated(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    sub5: Any,
    tmp_path: Path,
) -> None:
    lists = tmp_path / "lists.csv"
    lists.write_text("list,plate,name,notes\nallow,OWNER 1,,\n")
    sub = sub5(f"replies-{prefix}/#", f"{prefix}/bridge/status")
    run_bridge(
        bridge_settings(broker, prefix, {"cam": camera_config(simulator)}, lists_file=str(lists))
    )
    wait_until(lambda: sub.on(f"{prefix}/bridge/status"))
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = f"replies-{prefix}/automation"
    properties.CorrelationData = b"req-9"
    body = b'{"plate": "NEW 7", "notes": "courier"}'
    sub.client.publish(f"{prefix}/lists/couriers/add", body, qos=1, properties=properties)
    wait_until(lambda: sub.on(f"replies-{prefix}/automation"))
    answer = sub.on(f"replies-{prefix}/automation")[0]
    assert bytes.fromhex(props_of(answer)["CorrelationData"]) == b"req-9"
    assert json.loads(answer.payload)["message"] == "NEW 7 added on list 'couriers'"
    assert "couriers,NEW 7,,courier" in lists.read_text()
