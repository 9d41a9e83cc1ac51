"""End to end: simulator -> bridge -> real Mosquitto -> subscriber, and trigger -> MNPR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hik2mqtt.bridge import Bridge
from hik2mqtt.simulator import Simulator
from hik2mqtt.simulator.encoders import encode_part, heartbeat_part, make_read
from tests.conftest import (
    AnyBroker,
    Broker,
    RunBridge,
    Subscribe,
    Subscriber,
    bridge_settings,
    camera_config,
    changes,
    wait_until,
)


def plates(sub: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.payloads(topic)]


def start(
    broker: AnyBroker, prefix: str, run_bridge: RunBridge, sims: dict[str, Simulator], **extra: Any
) -> Bridge:
    cameras = {name: camera_config(sim) for name, sim in sims.items()}
    bridge = run_bridge(bridge_settings(broker, prefix, cameras, **extra))
    for sim in sims.values():
        assert sim.wait_for_streams(1, timeout=10)
    return bridge


def test_read_and_pictures_arrive(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A read reaches `plate` as JSON with every field, and its pictures reach the retained
    image topics byte for byte."""
    sub = subscribe(f"{prefix}/#")
    start(broker, prefix, run_bridge, {"gate": simulator})
    sub.wait_for(f"{prefix}/gate/status")
    sent = simulator.emit_read("AB12 CDE", retransmitted=True)
    (msg,) = sub.wait_for(f"{prefix}/gate/plate")
    assert not msg.retain
    read = json.loads(msg.payload)
    assert read["camera"] == "gate"
    assert read["plate"] == "AB12 CDE"
    assert read["raw_plate"] == "AB12 CDE"
    assert read["confidence"] == 97
    assert read["direction"] == "forward"
    assert read["country"] == "3"
    assert read["channel"] == 1
    assert read["event_id"] == sent.event_id
    assert read["vehicle"] == {"type": "vehicle", "color": "blue", "brand": "1036"}
    assert read["list"] == "otherList"
    assert read["retransmitted"] is True
    assert read["source"] == "stream"
    assert read["time"] is not None
    assert read["images"] == {
        "plate": {"topic": f"{prefix}/gate/image/plate", "file": None},
        "vehicle": {"topic": f"{prefix}/gate/image/vehicle", "file": None},
    }
    (plate_pic,) = sub.wait_for(f"{prefix}/gate/image/plate")
    (vehicle_pic,) = sub.wait_for(f"{prefix}/gate/image/vehicle")
    assert plate_pic.payload == sent.pictures["licensePlatePicture.jpg"]
    assert vehicle_pic.payload == sent.pictures["vehiclePicture.jpg"]
    assert b"--boundary" in plate_pic.payload  # the delimiter inside a picture did no harm
    # Retained pictures reach a subscriber that comes later.
    late = subscribe(f"{prefix}/gate/image/+")
    assert late.wait_for(f"{prefix}/gate/image/plate")[0].retain


def test_lone_read_is_published_without_waiting_for_more_bytes(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A read followed by silence (no heartbeat, no picture) is still published: nothing
    waits for the next part."""
    sub = subscribe(f"{prefix}/+/plate")
    start(broker, prefix, run_bridge, {"gate": simulator})
    read = make_read("LONE 1", kinds=())
    simulator.send_raw(encode_part("boundary", read.xml, content_type="application/xml"))
    (msg,) = sub.wait_for(f"{prefix}/gate/plate", timeout=5)
    assert json.loads(msg.payload)["plate"] == "LONE 1"


@pytest.mark.parametrize(
    "options",
    [
        {"chunked": True},
        {"content_length": False},
        {"boundary": "boundary", "declared_boundary": "myboundary"},
        {"boundary": "MIME_boundary"},
    ],
    ids=["chunked", "no-content-length", "boundary-mismatch", "MIME_boundary"],
)
def test_stream_variants(
    broker: AnyBroker,
    prefix: str,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    options: dict[str, Any],
) -> None:
    """Chunked HTTP/1.1, parts without Content-Length, a declared boundary the body doesn't
    use, and other tokens all deliver reads and pictures."""
    sub = subscribe(f"{prefix}/#")
    with Simulator(heartbeat=None, **options) as sim:
        start(broker, prefix, run_bridge, {"cam": sim})
        sent = sim.emit_read("VAR 1")
        # Without Content-Length the last picture ends at the next delimiter.
        sim.send_raw(heartbeat_part(sim.boundary, content_length=sim.content_length))
        sub.wait_for(f"{prefix}/cam/image/vehicle")
        assert plates(sub, f"{prefix}/cam/plate")[0]["plate"] == "VAR 1"
        assert sub.payloads(f"{prefix}/cam/image/plate") == [
            sent.pictures["licensePlatePicture.jpg"]
        ]


def test_unknown_plate_and_bad_part_do_not_stop_the_stream(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """An unread plate is published with plate null; a malformed event is skipped and the
    reads after it still arrive."""
    sub = subscribe(f"{prefix}/+/plate")
    start(broker, prefix, run_bridge, {"cam": simulator})
    simulator.emit_read("unknown")
    simulator.send_raw(
        encode_part(
            "boundary", b"<EventNotificationAlert><eventType>ANPR", content_type="application/xml"
        )
    )
    simulator.send_raw(b"--boundary\r\n--boundary\r\nnot a header line at all\r\n")
    simulator.emit_read("AFTER 1")
    sub.wait_for(f"{prefix}/cam/plate", 2)
    got = plates(sub, f"{prefix}/cam/plate")
    assert got[0]["plate"] is None
    assert got[0]["raw_plate"] == "unknown"
    assert got[1]["plate"] == "AFTER 1"


def test_camera_status_and_reconnect_after_cut(
    broker: AnyBroker, prefix: str, run_bridge: RunBridge, subscribe: Subscribe
) -> None:
    """A cut stream is reopened at once without flipping status; a camera that is gone
    goes offline, and comes back online with reads flowing when it returns."""
    sub = subscribe(f"{prefix}/#")
    sim = Simulator(heartbeat=None).start()
    port = sim.port
    start(broker, prefix, run_bridge, {"cam": sim})
    sub.wait_for(f"{prefix}/cam/status")
    sim.cut_streams()
    wait_until(lambda: sim.count("/ISAPI/Event") >= 2)
    assert sim.wait_for_streams(1)
    sim.emit_read("AFTER CUT")
    sub.wait_for(f"{prefix}/cam/plate")
    assert changes(sub, f"{prefix}/cam/status") == [b"online"]

    sim.stop()  # the camera goes away
    wait_until(lambda: sub.payloads(f"{prefix}/cam/status")[-1:] == [b"offline"])

    sim2 = Simulator(heartbeat=None, port=port).start()  # and comes back on the same port
    try:
        assert sim2.wait_for_streams(1, timeout=8)
        sub.wait_for(f"{prefix}/cam/status", 3)
        wait_until(
            lambda: changes(sub, f"{prefix}/cam/status") == [b"online", b"offline", b"online"]
        )
        sim2.emit_read("BACK 1")
        wait_until(lambda: any(p["plate"] == "BACK 1" for p in plates(sub, f"{prefix}/cam/plate")))
    finally:
        sim2.stop()


def test_idle_stream_is_reopened_quietly(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A silent stream is reopened after the idle timeout without an offline status."""
    sub = subscribe(f"{prefix}/cam/status")
    cameras = {"cam": camera_config(simulator, idle_timeout=2)}
    run_bridge(bridge_settings(broker, prefix, cameras))
    wait_until(lambda: simulator.count("/ISAPI/Event") >= 2, timeout=10)
    assert simulator.wait_for_streams(1)
    assert changes(sub, f"{prefix}/cam/status") == [b"online"]


def test_one_camera_down_does_not_stall_another(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A camera that can't be reached is offline while another camera's reads flow."""
    sub = subscribe(f"{prefix}/#")
    cameras = {
        "good": camera_config(simulator),
        "dead": {"host": "127.0.0.1", "port": 9, "password": "x"},  # nothing listens on 9
    }
    run_bridge(bridge_settings(broker, prefix, cameras))
    simulator.wait_for_streams(1)
    simulator.emit_read("GOOD 1")
    sub.wait_for(f"{prefix}/good/plate")
    wait_until(lambda: changes(sub, f"{prefix}/dead/status") == [b"offline"])


def test_refused_login_goes_offline_and_waits_a_minute(
    broker: AnyBroker, prefix: str, run_bridge: RunBridge, subscribe: Subscribe
) -> None:
    """A refused login marks the camera offline and the next try is at least 60 s away,
    longer when the camera says the account is locked."""
    sub = subscribe(f"{prefix}/#")
    with Simulator(heartbeat=None, lock_after=1) as sim:
        cameras = {"cam": {**camera_config(sim), "password": "wrong"}}
        bridge = run_bridge(bridge_settings(broker, prefix, cameras))
        sub.wait_for(f"{prefix}/cam/status")
        assert changes(sub, f"{prefix}/cam/status") == [b"offline"]
        worker = bridge.cameras["cam"].worker
        assert worker is not None
        wait_until(lambda: worker.last_delay > 0)
        assert worker.last_delay >= 211  # the simulator's account lock of 210 s
        assert sim.failed_logins == 1


def test_trigger_fires_mnpr_and_publishes_the_manual_read(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """A message on trigger calls MNPR; its read and pictures are published with source
    manual, and the outcome goes to trigger/result."""
    sub = subscribe(f"{prefix}/#")
    start(broker, prefix, run_bridge, {"cam": simulator})
    sub.wait_for(f"{prefix}/cam/status")
    sub.publish(f"{prefix}/cam/trigger", "")
    (result,) = sub.wait_for(f"{prefix}/cam/trigger/result")
    outcome = json.loads(result.payload)
    assert simulator.count("/ISAPI/Traffic/MNPR/channels/1") == 1
    assert simulator.last_mnpr is not None
    assert outcome == {
        "ok": True,
        "status": 200,
        "message": f"read {simulator.last_mnpr.plate}",
        "plate": simulator.last_mnpr.plate,
    }
    (read,) = plates(sub, f"{prefix}/cam/plate")
    assert (read["plate"], read["source"]) == (simulator.last_mnpr.plate, "manual")
    sub.wait_for(f"{prefix}/cam/image/vehicle")
    assert sub.payloads(f"{prefix}/cam/image/plate") == [
        simulator.last_mnpr.pictures["licensePlatePicture.jpg"]
    ]


def test_trigger_errors_are_reported(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """An ISAPI error, an unknown camera and a retained trigger each get handled without
    firing anything they should not."""
    sub = subscribe(f"{prefix}/+/trigger/result", f"{prefix}/bridge/status")
    start(broker, prefix, run_bridge, {"cam": simulator})
    sub.wait_for(f"{prefix}/bridge/status")  # so the bridge has subscribed to commands
    simulator.mnpr_reply = (
        403,
        "application/xml",
        b'<ResponseStatus xmlns="http://www.isapi.org/ver20/XMLSchema"><statusCode>4</statusCode>'
        b"<statusString>Invalid Operation</statusString><subStatusCode>notSupport</subStatusCode></ResponseStatus>",
    )
    sub.publish(f"{prefix}/cam/trigger", "1")
    (result,) = sub.wait_for(f"{prefix}/cam/trigger/result")
    outcome = json.loads(result.payload)
    assert outcome["ok"] is False
    assert outcome["status"] == 403
    assert outcome["sub_status"] == "notSupport"
    assert "Invalid Operation" in outcome["message"]

    sub.publish(f"{prefix}/nosuch/trigger", "1")
    (unknown,) = sub.wait_for(f"{prefix}/nosuch/trigger/result")
    assert json.loads(unknown.payload)["message"] == "no camera named 'nosuch'"

    sub.publish(f"{prefix}/cam/trigger", b"x" * 5000)  # an oversized one is refused
    wait_until(lambda: len(sub.on(f"{prefix}/cam/trigger/result")) == 2)
    assert "over 1024" in json.loads(sub.payloads(f"{prefix}/cam/trigger/result")[1])["message"]
    assert simulator.count("/ISAPI/Traffic/MNPR") == 1


def test_retained_trigger_is_not_acted_on(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A trigger left retained on the broker does not fire when the bridge (re)subscribes;
    a live one after it does."""
    sub = subscribe(f"{prefix}/+/trigger/result")
    sub.publish(f"{prefix}/cam/trigger", "stale", retain=True)
    try:
        start(broker, prefix, run_bridge, {"cam": simulator})
        wait_until(lambda: f"ignored a retained message on {prefix}/cam/trigger" in caplog.text)
        sub.publish(f"{prefix}/cam/trigger", "now")
        (result,) = sub.wait_for(f"{prefix}/cam/trigger/result")
        assert json.loads(result.payload)["ok"] is True
        assert simulator.count("/ISAPI/Traffic/MNPR") == 1
    finally:
        sub.publish(f"{prefix}/cam/trigger", b"", retain=True)  # clear it


def test_pictures_written_to_folder(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    """With a folder set, pictures are written there under sanitised names, and the read
    says where; with MQTT pictures off, no image topic is used."""
    sub = subscribe(f"{prefix}/#")
    start(
        broker, prefix, run_bridge, {"cam": simulator}, images={"mqtt": False, "dir": str(tmp_path)}
    )
    sent = simulator.emit_read("../../E V/1")
    (msg,) = sub.wait_for(f"{prefix}/cam/plate")
    images = json.loads(msg.payload)["images"]
    assert images["plate"]["topic"] is None
    plate_file = Path(images["plate"]["file"])
    wait_until(lambda: Path(images["vehicle"]["file"]).exists())
    assert plate_file.read_bytes() == sent.pictures["licensePlatePicture.jpg"]
    assert plate_file.is_relative_to(tmp_path / "cam")
    assert plate_file.name.endswith("_E_V_1_plate.jpg")
    assert not [m for m in sub.messages if "/image/" in m.topic]


def test_reads_during_broker_outage_are_delivered_in_order(
    own_broker: Broker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """Reads made while the broker is down arrive once, in order, when it is back; the
    bridge and camera are announced online again."""
    bridge = run_bridge(bridge_settings(own_broker, prefix, {"cam": camera_config(simulator)}))
    simulator.wait_for_streams(1)
    wait_until(bridge.link.connected.is_set)
    own_broker.stop()
    wait_until(lambda: not bridge.link.connected.is_set())
    sent = [simulator.emit_read(f"OUT {i}").plate for i in range(5)]
    own_broker.start()
    # A persistent session isn't used, so subscribe after the restart and before the
    # bridge reconnects is not guaranteed; the retained status shows the bridge is back.
    sub = subscribe(f"{prefix}/#", target=own_broker)
    wait_until(lambda: [p["plate"] for p in plates(sub, f"{prefix}/cam/plate")] == sent, timeout=20)
    wait_until(lambda: b"online" in sub.payloads(f"{prefix}/bridge/status"))
    wait_until(lambda: b"online" in sub.payloads(f"{prefix}/cam/status"))


def test_stop_publishes_offline(
    broker: AnyBroker, prefix: str, simulator: Simulator, subscribe: Subscribe
) -> None:
    """A clean stop leaves the bridge and its cameras offline (retained)."""
    sub = subscribe(f"{prefix}/#")
    bridge = Bridge(settings=bridge_settings(broker, prefix, {"cam": camera_config(simulator)}))
    bridge.start()
    sub.wait_for(f"{prefix}/cam/status")
    bridge.stop()
    wait_until(lambda: sub.payloads(f"{prefix}/bridge/status")[-1:] == [b"offline"])
    assert sub.payloads(f"{prefix}/cam/status")[-1] == b"offline"


def test_metrics_and_healthz(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """With the metrics listener on, /metrics counts reads and pictures per camera and
    /healthz answers 200 only while the broker and every camera are connected."""
    import requests

    from tests.conftest import free_port

    port = free_port()
    sub = subscribe(f"{prefix}/+/plate")
    run_bridge(
        bridge_settings(
            broker,
            prefix,
            {"cam": camera_config(simulator)},
            metrics={"host": "127.0.0.1", "port": port},
        )
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(base + "/healthz", timeout=2).status_code == 200)
    simulator.emit_read("METRIC 1")
    sub.wait_for(f"{prefix}/cam/plate")
    wait_until(
        lambda: (
            'hik2mqtt_pictures_total{camera="cam"} 2.0'
            in requests.get(base + "/metrics", timeout=2).text
        )
    )
    text = requests.get(base + "/metrics", timeout=2).text
    assert 'hik2mqtt_reads_total{camera="cam",source="stream"} 1.0' in text
    assert 'hik2mqtt_camera_up{camera="cam"} 1.0' in text
    assert "hik2mqtt_broker_up 1.0" in text
    simulator.stop()
    wait_until(lambda: requests.get(base + "/healthz", timeout=2).status_code == 503)
    assert "camera cam is offline" in requests.get(base + "/healthz", timeout=2).text
