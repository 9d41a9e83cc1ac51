"""Home Assistant MQTT discovery as published to a real broker (the JSON HA reads)."""

from __future__ import annotations

import json
from typing import Any

from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
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
