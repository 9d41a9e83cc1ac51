"""Home Assistant MQTT discovery: what hik2mqtt announces so entities appear by themselves.

One device per camera (filled from ``/ISAPI/System/deviceInfo`` when the camera answers)
and one for the bridge. Per camera:

- ``event`` "Plate": fired by every read on ``<prefix>/<camera>/plate`` (``event_type``
  ``plate``; the read's fields become attributes), so the same car twice fires twice;
- ``sensor`` "Last plate": the retained ``<prefix>/<camera>/state``, fields as attributes;
- ``image`` per picture kind, from the retained picture topics (raw JPEG);
- ``button`` "Read now": publishes to ``<prefix>/<camera>/trigger``;
- ``binary_sensor`` "Connected" (connectivity) from ``<prefix>/<camera>/status``.

Every entity is available while its bridge is online and, except "Connected" (which must
be able to say *off*), while the camera is online. Unique ids are built from the camera's
configured key, so they survive restarts, changes of the display name and a move of the
camera to another bridge. Topics follow
``<discovery prefix>/<component>/hik2mqtt_<camera>/<object>/config`` and are retained; a
camera that is no longer configured gets empty retained configs, which removes it.

With a bridge id (``HIK2MQTT_BRIDGE_ID``) the bridge device, its unique ids and the
availability topic are that bridge's own (``hik2mqtt_bridge_<id>``,
``<prefix>/bridge/<id>/status``); without one, exactly what a single bridge always had.

Entity ids: ``default_entity_id`` (``"event.hik2mqtt_gate_plate"``) sets them on Home
Assistant 2025.10 and later; ``object_id`` (``"hik2mqtt_gate_plate"``) on earlier ones.
Both are sent: 2025.10 to 2026.3 use ``default_entity_id`` and warn only when ``object_id``
comes alone; 2026.4 dropped ``object_id`` from its schema, and discovery removes keys it
doesn't know, as earlier versions do with ``default_entity_id``.
Reference: https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hik2mqtt import __version__
from hik2mqtt.core.untrusted import registry_names
from hik2mqtt.topics import OFFLINE, ONLINE, Topics

PICTURE_KINDS = ("plate", "vehicle", "scene")
SUPPORT_URL = "https://github.com/hik2mqtt/hik2mqtt"
BRIDGE_ID = "hik2mqtt_bridge"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a camera says of itself (``/ISAPI/System/deviceInfo``); None when unknown."""

    model: str | None = None
    serial: str | None = None
    firmware: str | None = None


ORIGIN = {"name": "hik2mqtt", "sw_version": __version__, "support_url": SUPPORT_URL}


def bridge_node(topics: Topics) -> str:
    """The bridge device's identifier (and discovery node id)."""
    return BRIDGE_ID if topics.bridge_id is None else f"{BRIDGE_ID}_{topics.bridge_id}"


def entity_ids(component: str, object_id: str) -> dict[str, str]:
    """The keys that make Home Assistant name an entity ``<component>.<object_id>``."""
    return {"default_entity_id": f"{component}.{object_id}", "object_id": object_id}


def _availability(topics: Topics, camera: str | None) -> dict[str, Any]:
    entries = [{"topic": topics.bridge_status}]
    if camera is not None:
        entries.append({"topic": topics.camera_status(camera)})
    return {
        "availability": [
            {**e, "payload_available": ONLINE, "payload_not_available": OFFLINE} for e in entries
        ],
        "availability_mode": "all",
    }


def camera_configs(
    topics: Topics,
    *,
    discovery_prefix: str,
    camera: str,
    display_name: str,
    configuration_url: str,
    info: DeviceInfo,
) -> dict[str, bytes]:
    """Discovery topic -> retained config payload for one camera's entities."""
    node = f"hik2mqtt_{camera}"
    device: dict[str, Any] = {
        "identifiers": [node],
        "name": display_name,
        "manufacturer": "Hikvision",
        "model": info.model or "ANPR camera",
        "configuration_url": configuration_url,
        "via_device": bridge_node(topics),
    }
    if info.serial:
        device["serial_number"] = info.serial
    if info.firmware:
        device["sw_version"] = info.firmware

    def entity(
        component: str, obj: str, name: str, *, camera_availability: bool = True, **extra: Any
    ) -> tuple[str, bytes]:
        doc = {
            "name": name,
            "unique_id": f"{node}_{obj}",
            **entity_ids(component, f"{node}_{obj}"),
            "device": device,
            "origin": ORIGIN,
            **_availability(topics, camera if camera_availability else None),
            **extra,
        }
        topic = f"{discovery_prefix}/{component}/{node}/{obj}/config"
        return topic, json.dumps(doc, separators=(",", ":")).encode()

    items = [
        entity(
            "event",
            "plate",
            "Plate",
            state_topic=topics.plate(camera),
            event_types=["plate"],
            # The read's JSON, with the event type HA needs; its fields become attributes.
            value_template="{{ dict(value_json, event_type='plate') | to_json }}",
            icon="mdi:car-search",
        ),
        entity(
            "sensor",
            "last_plate",
            "Last plate",
            state_topic=topics.state(camera),
            # An empty payload (a plate's erasure cleared the topic) is no plate, and no
            # attributes, rather than a template warning in Home Assistant's log.
            value_template=(
                "{{ value_json.plate if value_json is defined and value_json.plate "
                "else 'unknown' }}"
            ),
            json_attributes_topic=topics.state(camera),
            json_attributes_template="{{ value if value else '{}' }}",
            icon="mdi:card-text-outline",
        ),
        *(
            entity(
                "image",
                f"image_{kind}",
                f"{kind.capitalize()} picture",
                image_topic=topics.image(camera, kind),
                content_type="image/jpeg",
            )
            for kind in PICTURE_KINDS
        ),
        entity(
            "button",
            "trigger",
            "Read now",
            command_topic=topics.trigger(camera),
            payload_press="trigger",
            icon="mdi:camera-iris",
        ),
        entity(
            "binary_sensor",
            "connected",
            "Connected",
            camera_availability=False,
            state_topic=topics.camera_status(camera),
            payload_on=ONLINE,
            payload_off=OFFLINE,
            device_class="connectivity",
            entity_category="diagnostic",
        ),
    ]
    return dict(items)


def bridge_configs(
    topics: Topics, *, discovery_prefix: str, configuration_url: str | None = None
) -> dict[str, bytes]:
    """The bridge's own device: a connectivity sensor for the bridge itself; its
    ``configuration_url`` is the bridge's web page, when it has one."""
    node = bridge_node(topics)
    name = "hik2mqtt bridge" if topics.bridge_id is None else f"hik2mqtt bridge {topics.bridge_id}"
    device: dict[str, Any] = {
        "identifiers": [node],
        "name": name,
        "manufacturer": "hik2mqtt",
        "model": "bridge",
        "sw_version": __version__,
    }
    if configuration_url:
        device["configuration_url"] = configuration_url
    doc = {
        "name": "Bridge connected",
        "unique_id": f"{node}_connected",
        **entity_ids("binary_sensor", f"{node}_connected"),
        "device": device,
        "origin": ORIGIN,
        "state_topic": topics.bridge_status,
        "payload_on": ONLINE,
        "payload_off": OFFLINE,
        "device_class": "connectivity",
        "entity_category": "diagnostic",
    }
    topic = f"{discovery_prefix}/binary_sensor/{node}/connected/config"
    return {topic: json.dumps(doc, separators=(",", ":")).encode()}


def removal_topics(discovery_prefix: str, camera: str) -> list[str]:
    """The config topics to clear (empty retained) for a camera no longer configured."""
    node = f"hik2mqtt_{camera}"
    objects = [("event", "plate"), ("sensor", "last_plate"), ("button", "trigger")]
    objects += [("image", f"image_{k}") for k in PICTURE_KINDS]
    objects += [("binary_sensor", "connected")]
    return [f"{discovery_prefix}/{c}/{node}/{o}/config" for c, o in objects]


def other_bridges_cameras(
    topics: Topics, retained: dict[str, bytes], ours: set[str]
) -> list[tuple[str, str]]:
    """(camera, other bridge) for our cameras in the registry of another bridge that is
    online, from the retained ``<prefix>/bridge/...`` messages (other bridge: its id, or
    ``(no id)``)."""
    online: set[str | None] = set()
    registries: dict[str | None, set[str]] = {}
    for topic, payload in retained.items():
        parsed = topics.parse_bridge_topic(topic)
        if parsed is None:
            continue
        bridge, kind = parsed
        if bridge == topics.bridge_id:
            continue
        if kind == "status" and payload == b"online":
            online.add(bridge)
        elif kind == "cameras":  # by the configuration's rule: anyone may have forged it
            registries[bridge] = set(registry_names(payload)[0])
    return sorted(
        (camera, bridge if bridge is not None else "(no id)")
        for bridge, cameras in registries.items()
        if bridge in online
        for camera in cameras & ours
    )
