"""Home Assistant MQTT discovery as published to a real broker (the JSON HA reads)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from hik2mqtt.discovery import DeviceInfo, bridge_configs, camera_configs
from hik2mqtt.simulator import Simulator
from hik2mqtt.topics import Topics
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Stand_in,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    documented_entity_ids,
    wait_until,
)


def configs(sub: Subscriber, ha: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for message in sub.messages:
        if message.topic.startswith(ha + "/") and message.topic.endswith("/config"):
            found[message.topic] = json.loads(message.payload) if message.payload else {}
    return found


def test_discovery_announces_camera_entities_with_device_info(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """Each camera gets an event, a last-plate sensor, images, a button and a connectivity
    sensor, retained, on one device filled from deviceInfo; availability needs the bridge
    and the camera; unique ids come from the camera's key, not its display name."""
    ha = f"ha{prefix}"
    sub = subscribe(f"{ha}/#")
    cam = camera_config(simulator, name="Front gate")
    run_bridge(bridge_settings(broker, prefix, {"gate": cam}, homeassistant={"prefix": ha}))
    node = f"{ha}/{{}}/hik2mqtt_gate/{{}}/config"
    wanted = {
        node.format("event", "plate"),
        node.format("sensor", "last_plate"),
        node.format("image", "image_plate"),
        node.format("image", "image_vehicle"),
        node.format("image", "image_scene"),
        node.format("button", "trigger"),
        node.format("binary_sensor", "connected"),
        f"{ha}/binary_sensor/hik2mqtt_bridge/connected/config",
    }
    wait_until(lambda: wanted <= set(configs(sub, ha)))
    wait_until(
        lambda: configs(sub, ha)[node.format("event", "plate")]["device"].get("model") == "SIM-ANPR"
    )
    found = configs(sub, ha)
    event = found[node.format("event", "plate")]
    assert event["state_topic"] == f"{prefix}/gate/plate"
    assert event["event_types"] == ["plate"]
    assert event["unique_id"] == "hik2mqtt_gate_plate"
    assert event["default_entity_id"] == "event.hik2mqtt_gate_plate"
    assert event["device"] == {
        "identifiers": ["hik2mqtt_gate"],
        "name": "Front gate",
        "manufacturer": "Hikvision",
        "model": "SIM-ANPR",
        "configuration_url": simulator.url,
        "via_device": "hik2mqtt_bridge",
        "serial_number": "SIM-ANPR0000000000000000",
        "sw_version": "V0.1.0 build 261125",
    }
    assert [a["topic"] for a in event["availability"]] == [
        f"{prefix}/bridge/status",
        f"{prefix}/gate/status",
    ]
    assert event["availability_mode"] == "all"
    assert event["origin"]["name"] == "hik2mqtt"
    assert (
        found[node.format("image", "image_vehicle")]["image_topic"]
        == f"{prefix}/gate/image/vehicle"
    )
    assert found[node.format("image", "image_vehicle")]["content_type"] == "image/jpeg"
    assert found[node.format("button", "trigger")]["command_topic"] == f"{prefix}/gate/trigger"
    connected = found[node.format("binary_sensor", "connected")]
    assert connected["device_class"] == "connectivity"
    assert [a["topic"] for a in connected["availability"]] == [f"{prefix}/bridge/status"]
    late = subscribe(node.format("event", "plate"))
    assert late.wait_for(node.format("event", "plate"))[0].retain


def test_discovery_again_when_home_assistant_restarts_and_removed_cameras_go(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """homeassistant/status online makes the bridge announce again; a camera in the retained
    registry that is no longer configured gets empty retained configs."""
    ha = f"ha{prefix}"
    sub = subscribe(f"{ha}/#", f"{prefix}/bridge/cameras")
    sub.publish(f"{prefix}/bridge/cameras", json.dumps(["gate", "old"]), retain=True)
    try:
        run_bridge(
            bridge_settings(
                broker, prefix, {"gate": camera_config(simulator)}, homeassistant={"prefix": ha}
            )
        )
        old = f"{ha}/event/hik2mqtt_old/plate/config"
        wait_until(lambda: any(m.topic == old and m.payload == b"" for m in sub.messages))
        wait_until(lambda: sub.payloads(f"{prefix}/bridge/cameras")[-1:] == [b'["gate"]'])
        event = f"{ha}/event/hik2mqtt_gate/plate/config"
        before = len(sub.on(event))
        sub.publish(f"{ha}/status", "online")
        wait_until(lambda: len(sub.on(event)) > before)
    finally:
        sub.publish(f"{prefix}/bridge/cameras", b"", retain=True)


# -- bridge ids and entity ids (pure: what discovery builds) ----------------------------


def build(topics: Topics) -> dict[str, dict[str, Any]]:
    configs = bridge_configs(topics, discovery_prefix="homeassistant")
    configs |= camera_configs(
        topics,
        discovery_prefix="homeassistant",
        camera="gate",
        display_name="Front gate",
        configuration_url="http://10.0.0.5:80",
        info=DeviceInfo(model="DS-2CD", serial="S1", firmware="V5"),
    )
    return {topic: json.loads(payload) for topic, payload in configs.items()}


def test_without_a_bridge_id_topics_and_entities_are_todays() -> None:
    """Bridge id unset: the bridge's topics, device, unique ids and availability are
    exactly those of a single bridge."""
    topics = Topics("anpr")
    assert topics == Topics("anpr", None)
    assert topics.bridge_status == "anpr/bridge/status"
    assert topics.camera_registry == "anpr/bridge/cameras"
    found = build(topics)
    bridge = found["homeassistant/binary_sensor/hik2mqtt_bridge/connected/config"]
    assert bridge["unique_id"] == "hik2mqtt_bridge_connected"
    assert bridge["device"]["identifiers"] == ["hik2mqtt_bridge"]
    assert bridge["device"]["name"] == "hik2mqtt bridge"
    assert bridge["state_topic"] == "anpr/bridge/status"
    event = found["homeassistant/event/hik2mqtt_gate/plate/config"]
    assert event["device"]["via_device"] == "hik2mqtt_bridge"
    assert [a["topic"] for a in event["availability"]] == ["anpr/bridge/status", "anpr/gate/status"]


def test_with_a_bridge_id_the_bridge_is_its_own() -> None:
    """Bridge id set: its status and registry topics, its device, unique ids and discovery
    topic carry the id; its cameras' availability lists its status; camera topics and
    camera unique ids don't change (a camera keeps its entities when it moves)."""
    topics = Topics("anpr", "north")
    assert topics.bridge_status == "anpr/bridge/north/status"
    assert topics.camera_registry == "anpr/bridge/north/cameras"
    assert topics.plate("gate") == "anpr/gate/plate"
    assert topics.command_subscriptions == Topics("anpr").command_subscriptions
    found = build(topics)
    bridge = found["homeassistant/binary_sensor/hik2mqtt_bridge_north/connected/config"]
    assert bridge["unique_id"] == "hik2mqtt_bridge_north_connected"
    assert bridge["default_entity_id"] == "binary_sensor.hik2mqtt_bridge_north_connected"
    assert bridge["device"]["identifiers"] == ["hik2mqtt_bridge_north"]
    assert bridge["device"]["name"] == "hik2mqtt bridge north"
    assert bridge["state_topic"] == "anpr/bridge/north/status"
    event = found["homeassistant/event/hik2mqtt_gate/plate/config"]
    assert event["unique_id"] == "hik2mqtt_gate_plate"
    assert event["device"]["via_device"] == "hik2mqtt_bridge_north"
    assert [a["topic"] for a in event["availability"]] == [
        "anpr/bridge/north/status",
        "anpr/gate/status",
    ]
    connected = found["homeassistant/binary_sensor/hik2mqtt_gate/connected/config"]
    assert [a["topic"] for a in connected["availability"]] == ["anpr/bridge/north/status"]


def test_every_entity_names_its_entity_id_for_old_and_new_home_assistant() -> None:
    """Each config carries default_entity_id (HA 2025.10+) and object_id (earlier), the
    same id: ``<component>.hik2mqtt_<camera>_<object>``."""
    found = build(Topics("anpr"))
    assert len(found) == 8
    for topic, doc in found.items():
        component = topic.split("/")[1]
        assert doc["default_entity_id"] == f"{component}.{doc['object_id']}"
        assert doc["object_id"] == doc["unique_id"]
    ids = {doc["default_entity_id"] for doc in found.values()}
    assert ids == documented_entity_ids("gate")  # as the README's table says


def test_bridge_topics_parse_and_answers_stay_off_our_topics() -> None:
    """parse_bridge_topic tells whose status or registry a topic is; may_answer_on keeps
    answers to requests off our own prefix and any other prefix named."""
    topics = Topics("anpr", "north")
    assert topics.bridges_filter == "anpr/bridge/#"
    assert topics.parse_bridge_topic("anpr/bridge/status") == (None, "status")
    assert topics.parse_bridge_topic("anpr/bridge/cameras") == (None, "cameras")
    assert topics.parse_bridge_topic("anpr/bridge/south/cameras") == ("south", "cameras")
    assert topics.parse_bridge_topic("anpr/bridge/south/other") is None
    assert topics.parse_bridge_topic("anpr/gate/status") is None
    assert topics.parse_bridge_topic("anpr/bridge//status") is None
    assert topics.may_answer_on("controller/replies/1")
    assert topics.may_answer_on("anprx/replies")
    assert not topics.may_answer_on("anpr/gate/plate")
    assert not topics.may_answer_on("anpr")
    assert not topics.may_answer_on("homeassistant/x", also_forbidden=("homeassistant",))


# -- two bridges with ids on one broker (issue 12) --------------------------------------


def test_restarting_one_bridge_leaves_the_other_bridges_entities(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """Two bridges with ids, one camera each: restarting one announces its own registry
    and removes nothing of the other's; each camera's availability is its own bridge's."""
    ha = f"ha{prefix}"
    sub = subscribe(f"{ha}/#", f"{prefix}/bridge/#")
    with Simulator(heartbeat=None) as other:
        north = bridge_settings(
            broker,
            prefix,
            {"gate": camera_config(simulator)},
            homeassistant={"prefix": ha},
            bridge_id="north",
        )
        south = bridge_settings(
            broker,
            prefix,
            {"exit": camera_config(other)},
            homeassistant={"prefix": ha},
            bridge_id="south",
        )
        first = run_bridge(north)
        run_bridge(south)
        wait_until(lambda: sub.payloads(f"{prefix}/bridge/south/cameras")[-1:] == [b'["exit"]'])
        wait_until(lambda: sub.payloads(f"{prefix}/bridge/north/cameras")[-1:] == [b'["gate"]'])
        first.stop()
        before = len(sub.payloads(f"{prefix}/bridge/north/cameras"))
        run_bridge(north)
        wait_until(lambda: len(sub.payloads(f"{prefix}/bridge/north/cameras")) > before)
        exit_config = f"{ha}/event/hik2mqtt_exit/plate/config"
        assert b"" not in sub.payloads(exit_config)
        config = json.loads(sub.payloads(exit_config)[-1])
        assert [a["topic"] for a in config["availability"]] == [
            f"{prefix}/bridge/south/status",
            f"{prefix}/exit/status",
        ]
        assert sub.payloads(f"{prefix}/bridge/status") == []
        assert sub.payloads(f"{prefix}/bridge/cameras") == []


def test_a_killed_bridge_takes_only_its_own_status_down(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A bridge whose connection dies (its last will) sets only its own status offline;
    the other bridge's status stays online, and reads say which bridge published them."""
    sub = subscribe(f"{prefix}/#")
    proxy = Stand_in(broker, refuse_v5=False)
    try:
        with Simulator(heartbeat=None) as other:
            north = bridge_settings(
                proxy,  # type: ignore[arg-type]
                prefix,
                {"gate": camera_config(simulator)},
                bridge_id="north",
            )
            south = bridge_settings(
                broker, prefix, {"exit": camera_config(other)}, bridge_id="south"
            )
            run_bridge(north)
            run_bridge(south)
            wait_until(lambda: sub.payloads(f"{prefix}/bridge/north/status")[-1:] == [b"online"])
            wait_until(lambda: sub.payloads(f"{prefix}/bridge/south/status")[-1:] == [b"online"])
            assert other.wait_for_streams(1)
            other.emit_read("SOUTH 1")
            (read,) = sub.wait_for(f"{prefix}/exit/plate")
            assert json.loads(read.payload)["bridge"] == "south"
            proxy.cut()
            wait_until(lambda: b"offline" in sub.payloads(f"{prefix}/bridge/north/status"))
            assert b"offline" not in sub.payloads(f"{prefix}/bridge/south/status")
            assert sub.payloads(f"{prefix}/bridge/status") == []
    finally:
        proxy.close()


def test_a_camera_on_two_live_bridges_is_reported_by_both(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same camera configured on two live bridges: each bridge warns once, naming the
    camera and the other bridge."""
    caplog.set_level(logging.WARNING, logger="hik2mqtt.pipeline")
    sub = subscribe(f"{prefix}/#")
    for bridge_id in ("east", "west"):
        run_bridge(
            bridge_settings(broker, prefix, {"gate": camera_config(simulator)}, bridge_id=bridge_id)
        )
    for bridge_id in ("east", "west"):
        sub.wait_for(f"{prefix}/bridge/{bridge_id}/cameras")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "also configured" in r.getMessage()]

    wait_until(lambda: len(warnings()) >= 2)
    assert sorted(
        w.split(" is also")[0] + " / " + w.split("live bridge ")[1].split(":")[0]
        for w in warnings()
    ) == [
        "camera gate / east",
        "camera gate / west",
    ]
