"""Every way a camera delivers reads: push (the simulator POSTs to the bridge), poll (it
serves an unsorted plate list with repeats), and other events; through a real broker."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
import requests

from hik2mqtt.events import decode_plates
from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import make_read
from tests.conftest import (
    SAMPLES,
    AnyBroker,
    RunBridge,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    free_port,
    wait_until,
)


def plates(sub: Subscriber, topic: str) -> list[dict[str, object]]:
    return [json.loads(p) for p in sub.payloads(topic)]


def test_push_read_with_pictures(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A camera that POSTs multipart/form-data (anpr.xml and pictures) to its path gets 200
    and its read and pictures are published with source push."""
    port = free_port()
    sub = subscribe(f"{prefix}/#")
    cam = camera_config(simulator, mode="push", push_secret="s3cret-path")
    run_bridge(
        bridge_settings(broker, prefix, {"gate": cam}, listen={"host": "127.0.0.1", "port": port})
    )
    url = f"http://127.0.0.1:{port}/hik2mqtt/gate/s3cret-path"
    wait_until(lambda: _accepts(port))
    read = make_read("PUSH 1")
    assert simulator.push(url, read) == 200
    (msg,) = sub.wait_for(f"{prefix}/gate/plate")
    got = json.loads(msg.payload)
    assert (got["plate"], got["source"]) == ("PUSH 1", "push")
    sub.wait_for(f"{prefix}/gate/image/vehicle")
    assert sub.payloads(f"{prefix}/gate/image/plate") == [read.pictures["licensePlatePicture.jpg"]]
    assert sub.payloads(f"{prefix}/gate/status")[-1:] == [b"online"]


def _accepts(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.RequestException:
        return False
    return True


def test_forged_pushes_are_refused_and_publish_nothing(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    """A POST to an unknown camera, with a wrong secret, from another address, or too big is
    refused, and publishes nothing; a plain-XML push still works."""
    port = free_port()
    sub = subscribe(f"{prefix}/#")
    cameras = {
        "gate": camera_config(simulator, mode="push", push_secret="right"),
        "elsewhere": {"host": "192.0.2.7", "password": "x", "mode": "push"},  # TEST-NET: never us
    }
    run_bridge(bridge_settings(broker, prefix, cameras, listen={"host": "127.0.0.1", "port": port}))
    wait_until(lambda: _accepts(port))
    base = f"http://127.0.0.1:{port}/hik2mqtt"
    read = make_read("FORGED")
    assert simulator.push(f"{base}/nosuch/right", read) == 403
    assert simulator.push(f"{base}/gate/wrong", read) == 403
    assert simulator.push(f"{base}/gate", read) == 403
    assert simulator.push(f"{base}/elsewhere", read) == 403  # we are not 192.0.2.7
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.putrequest("POST", "/hik2mqtt/gate/right")
    conn.putheader("Content-Length", str(10**12))  # and never sends it
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    ok = requests.post(
        f"{base}/gate/right",
        data=make_read("PLAIN", kinds=()).xml,
        headers={"Content-Type": "application/xml"},
        timeout=5,
    )
    assert ok.status_code == 200
    sub.wait_for(f"{prefix}/gate/plate")
    assert [p["plate"] for p in plates(sub, f"{prefix}/gate/plate")] == ["PLAIN"]


def test_poll_publishes_new_plates_once_in_order_and_never_the_backlog(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """Plates already in the list at start are not published; new ones are, once each,
    oldest first, though the camera answers unsorted with repeats; each with its picture."""
    simulator.add_plate("YESTERDAY 1")
    simulator.add_plate("YESTERDAY 2")
    sub = subscribe(f"{prefix}/#")
    cam = camera_config(simulator, mode="poll", poll_interval=0.2)
    bridge = run_bridge(bridge_settings(broker, prefix, {"traffic": cam}))
    worker = bridge.cameras["traffic"].worker
    assert worker is not None
    wait_until(lambda: getattr(worker.fetcher, "cursor", None) is not None)
    new = [simulator.add_plate(f"NEW {i}") for i in range(5)]
    sub.wait_for(f"{prefix}/traffic/plate", 5)
    wait_until(lambda: simulator.count("/ISAPI/Traffic/channels/1/vehicleDetect") >= 3 + 3)
    got = plates(sub, f"{prefix}/traffic/plate")
    assert [p["plate"] for p in got] == [f"NEW {i}" for i in range(5)]
    assert [p["event_id"] for p in got] == new
    assert {p["source"] for p in got} == {"poll"}
    wait_until(lambda: len(sub.on(f"{prefix}/traffic/image/picture")) == 5)
    assert sub.payloads(f"{prefix}/traffic/image/picture")[-1] == simulator.plate_pictures[new[-1]]
    assert sub.payloads(f"{prefix}/traffic/status")[-1:] == [b"online"]


def test_other_events_published_by_type(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """Non-ANPR events are published on event/<type>, filtered by HIK2MQTT_EVENTS;
    heartbeats never are."""
    sub = subscribe(f"{prefix}/#")
    run_bridge(
        bridge_settings(
            broker, prefix, {"cam": camera_config(simulator)}, events="linedetection,VMD"
        )
    )
    simulator.wait_for_streams(1)
    simulator.emit_event("fielddetection")  # not chosen
    simulator.emit_event("videoloss", state="inactive")  # a heartbeat
    simulator.emit_event("linedetection")
    (msg,) = sub.wait_for(f"{prefix}/cam/event/linedetection")
    event = json.loads(msg.payload)
    assert (event["type"], event["state"], event["channel"], event["source"]) == (
        "linedetection",
        "active",
        1,
        "stream",
    )
    assert not msg.retain
    assert not [m for m in sub.messages if "/event/" in m.topic and "linedetection" not in m.topic]


def test_plate_list_samples_decode() -> None:
    """The captured plate lists decode, sorted by picName, each entry once."""
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is not here (it is beside the project in CI)")
    entries = decode_plates((SAMPLES / "vehicleDetect-plates-response.xml").read_bytes())
    assert [(e.pic_name, e.read.plate, e.read.time) for e in entries] == [
        ("203401090941300600", "A 39837", "2034-01-09T09:41:30+04:00")
    ]
    assert decode_plates((SAMPLES / "vehicleDetect-plates-response-empty.xml").read_bytes()) == []
