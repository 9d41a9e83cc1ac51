"""The web page wired into the real bridge: reads from a simulated camera reach the API,
the live feed and the history; the page's buttons go through the pipeline to the camera
and their outcome is published on MQTT; Home Assistant's bridge device links to the page."""

from __future__ import annotations

import functools
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import requests

from hik2mqtt.pipeline import Recorded
from hik2mqtt.simulator import Simulator
from tests.conftest import (
    AnyBroker,
    RunBridge,
    Subscribe,
    bridge_settings,
    camera_config,
    free_port,
    wait_until,
)

PASSWORD = "page-password-1"


def test_reads_commands_and_lists_through_the_real_bridge(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    """A read appears on the live feed (with its picture) and in a search; "read now" from
    the page reaches the camera and its outcome is published on MQTT; a rate-limited second
    one is refused with the pipeline's reason; a list saved on the page is used for the
    next read."""
    port = free_port()
    lists = tmp_path / "lists.yaml"
    lists.write_text("lists:\n  allow:\n    plates: []\n")
    sub = subscribe(f"{prefix}/#", f"{prefix}-ha/#")
    run_bridge(
        bridge_settings(
            broker,
            prefix,
            {"gate": {**camera_config(simulator), "trigger_interval": 60}},
            web={"port": port, "password": PASSWORD},
            lists_file=str(lists),
            homeassistant={"enabled": True, "prefix": f"{prefix}-ha"},
        )
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    assert simulator.wait_for_streams(1)
    sub.wait_for(f"{prefix}/gate/status")

    # The live feed, opened before the read.
    live = socket.create_connection(("127.0.0.1", port), timeout=10)
    live.sendall(
        f"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {PASSWORD}\r\n\r\n".encode()
    )
    received = b""
    deadline = time.monotonic() + 10
    while b"event: cameras" not in received:  # the feed is open: now the read
        assert time.monotonic() < deadline, received[-500:]
        received += live.recv(65536)
    simulator.emit_read("AB12CDE")
    while b"AB12CDE" not in received:
        assert time.monotonic() < deadline, received[-500:]
        received += live.recv(65536)
    live.close()

    def found() -> list[dict[str, object]]:
        answer = requests.get(f"{base}/api/reads", params={"plate": "ab 12 cde"}, headers=auth)
        return list(answer.json()["reads"])

    (read,) = wait_until(found)
    assert read["camera"] == "gate"
    assert read["match"] is None
    pictures = read["pictures"]
    assert isinstance(pictures, dict)
    assert "plate" in pictures
    picture = wait_until(
        lambda: requests.get(f"{base}/api/cameras/gate/pictures/plate", headers=auth)
    )
    assert picture.headers["content-type"] == "image/jpeg"

    before = simulator.count("/ISAPI/Traffic/MNPR")
    answer = requests.post(f"{base}/api/cameras/gate/trigger", headers=auth, timeout=10)
    assert answer.status_code == 202, answer.text
    wait_until(lambda: simulator.count("/ISAPI/Traffic/MNPR") > before)
    (result,) = sub.wait_for(f"{prefix}/gate/trigger/result")
    assert json.loads(result.payload)["ok"] is True
    again = requests.post(f"{base}/api/cameras/gate/trigger", headers=auth, timeout=10)
    assert again.status_code == 409
    assert again.json()["reason"].startswith("rate limited")

    # The bridge device in Home Assistant links to the page.
    (config,) = sub.wait_for(f"{prefix}-ha/binary_sensor/hik2mqtt_bridge/connected/config")
    assert json.loads(config.payload)["device"]["configuration_url"] == f"{base}/"

    # A list saved on the page is what the next read is matched against.
    current = requests.get(f"{base}/api/lists", headers=auth, timeout=10).json()
    saved = requests.put(
        f"{base}/api/lists",
        headers=auth,
        json={
            "version": current["version"],
            "lists": [{"name": "allow", "tolerance": 0, "plates": [{"plate": "XY99 ZZZ"}]}],
        },
        timeout=10,
    )
    assert saved.status_code == 200, saved.text
    simulator.emit_read("XY99ZZZ")

    def matched() -> bool:
        reads = [json.loads(m.payload) for m in sub.on(f"{prefix}/gate/plate")]
        return any(r["plate"] == "XY99ZZZ" and r["match"] for r in reads)

    wait_until(matched)


def test_the_history_keeps_each_read_as_published_and_a_slow_page_holds_up_no_camera(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
    tmp_path: Path,
) -> None:
    """The history stores a read's JSON exactly as it went to MQTT (not encoded twice) with
    the gate's decision beside it; and the page's share of a read is taken after the
    pipeline's lock is let go: while it is held up for one camera, another camera's reads
    are still published."""
    history = tmp_path / "history"
    sub = subscribe(f"{prefix}/#")
    with Simulator(heartbeat=None) as other:
        bridge = run_bridge(
            bridge_settings(
                broker,
                prefix,
                {
                    "gate": {**camera_config(simulator), "gate": {"enabled": True}},
                    "other": camera_config(other),
                },
                web={"port": free_port()},
                history={"dir": str(history)},
            )
        )
        assert simulator.wait_for_streams(1)
        assert other.wait_for_streams(1)
        simulator.emit_read("AB12CDE")
        (published,) = sub.wait_for(f"{prefix}/gate/plate")
        db = sqlite3.connect(history / "history.sqlite3")
        try:
            row = wait_until(
                lambda: db.execute("SELECT data, gate, gate_reason FROM reads").fetchone()
            )
        finally:
            db.close()
        assert row[0].encode() == published.payload
        (decision,) = sub.wait_for(f"{prefix}/gate/gate")
        assert (bool(row[1]), row[2]) == (
            json.loads(decision.payload)["open"],
            json.loads(decision.payload)["reason"],
        )

        held, release = threading.Event(), threading.Event()

        def slow(effect: object) -> None:
            if isinstance(effect, Recorded) and effect.camera == "gate":
                held.set()
                release.wait(10)

        bridge.runtime.observers.insert(0, slow)
        try:
            simulator.emit_read("HE11LD")
            assert held.wait(10)
            other.emit_read("OT43RS")
            sub.wait_for(f"{prefix}/other/plate")  # while the gate camera's read is held
        finally:
            release.set()


def test_erasing_a_cameras_last_read_clears_its_pictures_on_the_page_and_the_broker(
    broker: AnyBroker,
    prefix: str,
    simulator: Simulator,
    run_bridge: RunBridge,
    subscribe: Subscribe,
) -> None:
    """Erasing the plate of a camera's last read drops the page's last picture of that
    camera (404) and clears the retained picture and state topics on the broker (a new
    subscriber gets neither); erasing a plate that is not the last read clears nothing."""
    port = free_port()
    sub = subscribe(f"{prefix}/#")
    run_bridge(
        bridge_settings(
            broker,
            prefix,
            {"gate": camera_config(simulator)},
            web={"port": port, "password": PASSWORD},
        )
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    assert simulator.wait_for_streams(1)
    image, state = f"{prefix}/gate/image/plate", f"{prefix}/gate/state"

    def found(plate: str) -> object:
        answer = requests.get(f"{base}/api/reads", params={"plate": plate}, headers=auth)
        return answer.json()["reads"]

    for count, plate in enumerate(("OLD1AA", "AB12CDE"), 1):
        simulator.emit_read(plate)
        sub.wait_for(image, count)
        wait_until(functools.partial(found, plate))
    picture = f"{base}/api/cameras/gate/pictures/plate"

    def erase(plate: str) -> object:
        answer = requests.delete(
            f"{base}/api/reads", params={"plate": plate}, headers=auth, timeout=10
        )
        return answer.json()

    assert erase("old1aa") == {"reads": 1, "pictures": 0}
    assert requests.get(picture, headers=auth, timeout=10).status_code == 200
    assert erase("AB 12 CDE") == {"reads": 1, "pictures": 0}
    assert requests.get(picture, headers=auth, timeout=10).status_code == 404
    wait_until(lambda: b"" in sub.payloads(state))
    pictures = sub.payloads(image)  # the empty one came before the empty state
    assert [bool(p) for p in pictures] == [True, True, False]
    assert sub.payloads(state).count(b"") == 1

    fresh = subscribe(f"{prefix}/gate/#")
    fresh.client.publish(f"{prefix}/gate/marker", b"after the retained ones", qos=1)
    fresh.wait_for(f"{prefix}/gate/marker")
    assert fresh.on(f"{prefix}/gate/status")  # retained messages do come
    assert fresh.on(image) == []
    assert fresh.on(state) == []
