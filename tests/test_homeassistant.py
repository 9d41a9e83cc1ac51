"""Discovery proved against a real Home Assistant core (opt-in: ``pytest -m homeassistant``).

Runs on two Home Assistants: 2024.3.3 (Python 3.11) and 2025.4.4, the newest that installs
here (Python 3.13: pyenv's 3.13.0, found with ``pyenv prefix 3.13.0``). Each is installed
into its own venv under ~/.cache (reused), with HA's own package constraints and
``josepy<2`` (its HTTP API answers 500 without). The broker can't be set in YAML since
2023.4, so the MQTT config entry is written into ``.storage/core.config_entries``; the
access token comes from onboarding (owner user -> auth code -> token). HA installs the
requirements of its components at first start (PyPI), which takes a minute or two.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import requests
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from hik2mqtt.bridge import Bridge
from hik2mqtt.discovery import DeviceInfo, bridge_configs, camera_configs
from hik2mqtt.simulator import Simulator
from hik2mqtt.topics import Topics
from tests.conftest import (
    Broker,
    bridge_settings,
    camera_config,
    documented_entity_ids,
    free_port,
    wait_until,
)

# Installing and first starting Home Assistant takes minutes, not the usual 120 s.
pytestmark = [pytest.mark.homeassistant, pytest.mark.timeout(1200)]

# (Home Assistant version, the Python it runs on)
HA_VERSIONS = [("2024.3.3", "3.11"), ("2025.4.4", "3.13.0")]
CACHE = Path.home() / ".cache" / "hik2mqtt-ha"


def python_for(version: str) -> str:
    """This interpreter if it is that Python, else pyenv's (``pyenv prefix <version>``)."""
    if ".".join(map(str, sys.version_info[: version.count(".") + 1])) == version:
        return sys.executable
    pyenv = shutil.which("pyenv")
    found = (
        subprocess.run([pyenv, "prefix", version], capture_output=True, text=True, check=False)
        if pyenv
        else None
    )
    if found is None or found.returncode != 0:
        pytest.fail(f"Python {version} is needed for this Home Assistant: pyenv install {version}")
    return str(Path(found.stdout.strip()) / "bin" / "python3")


def ha_venv(ha_version: str, python: str) -> Path:
    venv = CACHE / f"venv-{ha_version}"
    hass = venv / "bin" / "hass"
    if hass.exists():
        return venv
    pip = [str(venv / "bin" / "pip"), "--disable-pip-version-check", "-q"]
    subprocess.run([python_for(python), "-m", "venv", str(venv)], check=True)
    wheels = CACHE / "wheels"
    wanted = f"homeassistant=={ha_version}"
    subprocess.run([*pip, "download", "--no-deps", "-d", str(wheels), wanted], check=True)
    wheel = next(wheels.glob(f"homeassistant-{ha_version}-*.whl"))
    constraints = CACHE / f"constraints-{ha_version}.txt"
    with zipfile.ZipFile(wheel) as archive:
        constraints.write_bytes(archive.read("homeassistant/package_constraints.txt"))
    subprocess.run([*pip, "install", str(wheel), "-c", str(constraints), "josepy<2"], check=True)
    return venv


@dataclass
class HomeAssistant:
    version: str
    url: str
    auth: dict[str, str]
    broker: Broker
    log: Path

    def states(self) -> dict[str, Any]:
        answer = requests.get(self.url + "/api/states", headers=self.auth, timeout=10).json()
        return {s["entity_id"]: s for s in answer}

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@pytest.fixture(scope="module", params=HA_VERSIONS, ids=[v for v, _ in HA_VERSIONS])
def home_assistant(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HomeAssistant]:
    ha_version, python = request.param
    venv = ha_venv(ha_version, python)
    broker = Broker()
    broker.start()
    config = tmp_path_factory.mktemp("ha")
    port = free_port()
    (config / "configuration.yaml").write_text(
        "homeassistant:\n  name: test\n  unit_system: metric\n  time_zone: UTC\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {port}\n"
        "api:\nonboarding:\nauth:\nlogger:\n  default: warning\n" + readme_script()
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
    log_path = config / "hass.log"
    log = log_path.open("wb")
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
        yield HomeAssistant(ha_version, url, {"Authorization": f"Bearer {token}"}, broker, log_path)
    finally:
        hass.terminate()
        hass.wait(timeout=60)
        log.close()
        broker.close()


def readme_script() -> str:
    """The README's Home Assistant script for lists changed by automations, as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    after = readme.split("a script that gives a visitor a pass", 1)[1]
    return after.split("```yaml\n", 1)[1].split("```", 1)[0]


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/api/onboarding", timeout=2).status_code == 200
    except requests.RequestException:
        return False


PAGE_PASSWORD = "page-password-1"

# Entity ids as the README documents them (section "Home Assistant").
DOCUMENTED = documented_entity_ids("gate")


def wait_for_entities(ha: HomeAssistant, wanted: set[str], timeout: float = 180) -> None:
    """Wait until HA has every wanted entity; else fail naming what is missing. (On a first
    start HA installs its MQTT integration's requirements before it subscribes.)"""
    deadline = time.monotonic() + timeout
    while not wanted <= (found := set(ha.states())) and time.monotonic() < deadline:
        time.sleep(0.2)
    ours = sorted(e for e in found if "hik2mqtt" in e or "gate" in e)
    assert wanted <= found, f"missing {sorted(wanted - found)}; HA has {ours}"


def our_complaints(ha: HomeAssistant) -> list[str]:
    """Warnings and errors of HA's MQTT integration, or naming us (deprecations included:
    HA 2025.10 to 2026.3 warn there about ``object_id`` sent without ``default_entity_id``)."""
    return [
        line
        for line in ha.log_lines()
        if ("WARNING" in line or "ERROR" in line)
        and ("components.mqtt" in line or "hik2mqtt" in line or "object_id" in line)
    ]


def test_home_assistant_sees_entities_events_images_and_button(
    home_assistant: HomeAssistant,
) -> None:
    """In a real Home Assistant: the camera's entities exist under the documented entity
    ids, the event entity fires with the plate, the image entity serves the JPEG, pressing
    the button reaches MNPR, and HA's log has no warning about our discovery."""
    ha = home_assistant
    states = ha.states

    page = free_port()
    with Simulator(heartbeat=None) as sim:
        bridge = Bridge(
            settings=bridge_settings(
                ha.broker,
                "anpr",
                {"gate": camera_config(sim)},
                web={"port": page, "password": PAGE_PASSWORD},
            )
        )
        bridge.start()
        try:
            wait_for_entities(ha, DOCUMENTED)
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
            picture = requests.get(ha.url + picture_url, headers=ha.auth, timeout=10)
            assert picture.status_code == 200
            assert picture.headers["content-type"] == "image/jpeg"
            assert picture.content[:2] == b"\xff\xd8"
            assert states()["binary_sensor.hik2mqtt_gate_connected"]["state"] == "on"
            before = sim.count("/ISAPI/Traffic/MNPR")
            pressed = requests.post(
                ha.url + "/api/services/button/press",
                headers=ha.auth,
                json={"entity_id": "button.hik2mqtt_gate_trigger"},
                timeout=10,
            )
            assert pressed.status_code == 200
            wait_until(lambda: sim.count("/ISAPI/Traffic/MNPR") > before, timeout=15)

            # Erasing the plate on the page empties the retained state and pictures: HA's
            # sensor has no plate and no attributes left, and HA complains of nothing.
            def last_read() -> dict[str, Any]:
                return dict(states()["sensor.hik2mqtt_gate_last_plate"]["attributes"])

            wait_until(lambda: last_read().get("source") == "manual", timeout=30)  # "read now"
            last = last_read()["plate"]
            erased = requests.delete(
                f"http://127.0.0.1:{page}/api/reads",
                params={"plate": last},
                headers={"Authorization": f"Bearer {PAGE_PASSWORD}"},
                timeout=10,
            )
            assert erased.status_code == 200, erased.text
            wait_until(
                lambda: states()["sensor.hik2mqtt_gate_last_plate"]["state"] == "unknown",
                timeout=30,
            )
            assert "plate" not in states()["sensor.hik2mqtt_gate_last_plate"]["attributes"]
        finally:
            bridge.stop()
    # No stray "gate" entities beside the documented ones (ids not taken from our keys).
    ours = {e for e in states() if "gate" in e or "hik2mqtt" in e}
    assert ours == DOCUMENTED
    assert our_complaints(ha) == []


def test_two_bridges_with_ids_have_their_own_device_and_availability(
    home_assistant: HomeAssistant,
) -> None:
    """Discovery of two bridges with ids (as each publishes it): each has its own bridge
    device and entity; a bridge going offline makes its own camera unavailable and leaves
    the other bridge's camera available."""
    ha = home_assistant
    broker = ha.broker
    prefix = f"ids{uuid.uuid4().hex[:6]}"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{prefix}")
    client.connect(broker.host, broker.port)
    client.loop_start()

    def send(topic: str, payload: bytes | str) -> None:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)

    sent: list[str] = []
    try:
        for bridge_id, camera in (("north", f"{prefix}n"), ("south", f"{prefix}s")):
            topics = Topics(prefix, bridge_id)
            configs = bridge_configs(topics, discovery_prefix="homeassistant")
            configs |= camera_configs(
                topics,
                discovery_prefix="homeassistant",
                camera=camera,
                display_name=camera,
                configuration_url="http://127.0.0.1",
                info=DeviceInfo(),
            )
            for topic, payload in configs.items():
                send(topic, payload)
                sent.append(topic)
            send(topics.bridge_status, "online")
            send(topics.camera_status(camera), "online")
        north = f"event.hik2mqtt_{prefix}n_plate"
        south = f"event.hik2mqtt_{prefix}s_plate"
        wanted = {
            north,
            south,
            "binary_sensor.hik2mqtt_bridge_north_connected",
            "binary_sensor.hik2mqtt_bridge_south_connected",
        }
        wait_for_entities(ha, wanted)
        wait_until(
            lambda: (
                ha.states()[north]["state"] != "unavailable"
                and ha.states()[south]["state"] != "unavailable"
            ),
            timeout=30,
        )
        send(Topics(prefix, "north").bridge_status, "offline")  # as its last will would
        wait_until(lambda: ha.states()[north]["state"] == "unavailable", timeout=30)
        assert ha.states()[south]["state"] != "unavailable"
        assert ha.states()["binary_sensor.hik2mqtt_bridge_north_connected"]["state"] == "off"
        assert ha.states()["binary_sensor.hik2mqtt_bridge_south_connected"]["state"] == "on"
        assert our_complaints(ha) == []
    finally:
        for topic in sent:
            send(topic, b"")
        client.disconnect()
        client.loop_stop()


def test_the_readmes_script_adds_a_pass_over_mqtt(
    home_assistant: HomeAssistant, tmp_path: Path
) -> None:
    """The README's ``visitor_pass`` script, run by a real Home Assistant, publishes a list
    edit that the bridge writes to its lists file, valid until tonight."""
    ha = home_assistant
    lists = tmp_path / "lists.yaml"
    lists.write_text("lists:\n  visitors: []\n")
    with Simulator(heartbeat=None) as sim:
        bridge = Bridge(
            settings=bridge_settings(
                ha.broker, "anpr", {"gate": camera_config(sim)}, lists_file=str(lists)
            )
        )
        bridge.start()
        try:
            wait_until(lambda: "script.visitor_pass" in ha.states(), timeout=60)
            ran = requests.post(
                ha.url + "/api/services/script/visitor_pass",
                headers=ha.auth,
                json={"plate": "VIS 42"},
                timeout=30,
            )
            assert ran.status_code == 200, ran.text
            wait_until(lambda: "VIS 42" in lists.read_text(), timeout=30)
        finally:
            bridge.stop()
    entry = next(
        e for e in yaml.safe_load(lists.read_text())["lists"]["visitors"] if e["plate"] == "VIS 42"
    )
    assert entry["name"] == "visitor"
    assert entry["valid_until"].endswith("T23:59:00+00:00")  # HA's time zone is UTC here
    assert our_complaints(ha) == []
