"""Discovery proved against a real Home Assistant core (opt-in: ``pytest -m homeassistant``).

Installs the newest Home Assistant that runs on this Python (2024.3.3 on 3.11, 2025.4.4 on
3.13) into its own venv under ~/.cache (reused), with HA's own package constraints and
``josepy<2`` (its HTTP API answers 500 without). The broker can't be set in YAML since
2023.4, so the MQTT config entry is written into ``.storage/core.config_entries``; the
access token comes from onboarding (owner user -> auth code -> token). HA installs the
requirements of its components at first start (PyPI), which takes a minute or two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hik2mqtt.bridge import Bridge
from hik2mqtt.simulator import Simulator
from tests.conftest import Broker, bridge_settings, camera_config, free_port, wait_until

# Installing and first starting Home Assistant takes minutes, not the usual 120 s.
pytestmark = [pytest.mark.homeassistant, pytest.mark.timeout(1200)]

HA_VERSION = "2025.4.4" if sys.version_info >= (3, 13) else "2024.3.3"
CACHE = Path.home() / ".cache" / "hik2mqtt-ha"


def ha_venv() -> Path:
    venv = CACHE / f"venv-{HA_VERSION}"
    hass = venv / "bin" / "hass"
    if hass.exists():
        return venv
    pip = [str(venv / "bin" / "pip"), "--disable-pip-version-check", "-q"]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheels = CACHE / "wheels"
    wanted = f"homeassistant=={HA_VERSION}"
    subprocess.run([*pip, "download", "--no-deps", "-d", str(wheels), wanted], check=True)
    wheel = next(wheels.glob(f"homeassistant-{HA_VERSION}-*.whl"))
    constraints = CACHE / f"constraints-{HA_VERSION}.txt"
    with zipfile.ZipFile(wheel) as archive:
        constraints.write_bytes(archive.read("homeassistant/package_constraints.txt"))
    subprocess.run([*pip, "install", str(wheel), "-c", str(constraints), "josepy<2"], check=True)
    return venv


@pytest.fixture(scope="module")
def home_assistant(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, str], Broker]]:
    venv = ha_venv()
    broker = Broker()
    broker.start()
    config = tmp_path_factory.mktemp("ha")
    port = free_port()
    (config / "configuration.yaml").write_text(
        "homeassistant:\n  name: test\n  unit_system: metric\n  time_zone: UTC\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {port}\n"
        "api:\nonboarding:\nauth:\nlogger:\n  default: warning\n"
    )
    storage = config / ".storage"
    storage.mkdir()
    entry = {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": "test broker",
        "data": {
            "broker": broker.host,
            "port": broker.port,
            "discovery": True,
            "discovery_prefix": "homeassistant",
        },
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    (storage / "core.config_entries").write_text(
        json.dumps(
            {
                "version": 1,
                "minor_version": 1,
                "key": "core.config_entries",
                "data": {"entries": [entry]},
            }
        )
    )
    log = (config / "hass.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIK2MQTT_")}
    hass = subprocess.Popen(
        [str(venv / "bin" / "hass"), "-c", str(config)], stdout=log, stderr=log, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), timeout=600, interval=1)
        client = url + "/"
        code = requests.post(
            url + "/api/onboarding/users",
            json={
                "client_id": client,
                "name": "t",
                "username": "t",
                "password": "pw-123456",
                "language": "en",
            },
            timeout=30,
        ).json()["auth_code"]
        token = requests.post(
            url + "/auth/token",
            data={"grant_type": "authorization_code", "code": code, "client_id": client},
            timeout=30,
        ).json()["access_token"]
        yield url, {"Authorization": f"Bearer {token}"}, broker
    finally:
        hass.terminate()
        hass.wait(timeout=60)
        log.close()
        broker.close()


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/api/onboarding", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_home_assistant_sees_entities_events_images_and_button(
    home_assistant: tuple[str, dict[str, str], Broker],
) -> None:
    """In a real Home Assistant: the camera's entities exist, the event entity fires with
    the plate, the image entity serves the JPEG, and pressing the button reaches MNPR."""
    url, auth, broker = home_assistant

    def states() -> dict[str, Any]:
        answer = requests.get(url + "/api/states", headers=auth, timeout=10).json()
        return {s["entity_id"]: s for s in answer}

    with Simulator(heartbeat=None) as sim:
        bridge = Bridge(settings=bridge_settings(broker, "anpr", {"gate": camera_config(sim)}))
        bridge.start()
        try:
            wanted = {
                "event.hik2mqtt_gate_plate",
                "sensor.hik2mqtt_gate_last_plate",
                "image.hik2mqtt_gate_image_vehicle",
                "button.hik2mqtt_gate_trigger",
                "binary_sensor.hik2mqtt_gate_connected",
            }
            wait_until(lambda: wanted <= set(states()), timeout=60)
            # HA subscribes to a new entity's topics about a second after creating it:
            # send reads until the event entity has one.
            read = None

            def fired() -> bool:
                nonlocal read
                read = sim.emit_read("HA12 TST")
                attributes = states()["event.hik2mqtt_gate_plate"]["attributes"]
                return bool(
                    attributes.get("plate") == "HA12 TST"
                    and attributes.get("event_type") == "plate"
                )

            wait_until(fired, timeout=30, interval=1)
            assert read is not None
            wait_until(
                lambda: states()["sensor.hik2mqtt_gate_last_plate"]["state"] == "HA12 TST",
                timeout=30,
            )
            picture_url = states()["image.hik2mqtt_gate_image_vehicle"]["attributes"][
                "entity_picture"
            ]
            picture = requests.get(url + picture_url, headers=auth, timeout=10)
            assert picture.status_code == 200
            assert picture.headers["content-type"] == "image/jpeg"
            assert picture.content[:2] == b"\xff\xd8"
            assert states()["binary_sensor.hik2mqtt_gate_connected"]["state"] == "on"
            before = sim.count("/ISAPI/Traffic/MNPR")
            pressed = requests.post(
                url + "/api/services/button/press",
                headers=auth,
                json={"entity_id": "button.hik2mqtt_gate_trigger"},
                timeout=10,
            )
            assert pressed.status_code == 200
            wait_until(lambda: sim.count("/ISAPI/Traffic/MNPR") > before, timeout=15)
        finally:
            bridge.stop()
