"""``hik2mqtt check``: try the configuration against the real broker and cameras.

For the broker: a connection with the configured credentials and TLS. For each camera: a
login (one attempt: cameras lock accounts), its device info, whether vehicle detection is
on (``/ISAPI/Traffic/channels/<ch>/vehicleDetect``), and whether its vehicle detection
event notifies the "surveillance center" (``/ISAPI/Event/triggers/vehicledetection-<ch>``,
``notificationMethod`` ``center``), without which the camera reads plates but sends
nothing (``shared/samples/event-trigger-vehicledetection-DS-2CD4A26FWD.json``). Manual
recognition is not tried: it would make the camera read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hik2mqtt import isapi
from hik2mqtt.camera import CameraClient
from hik2mqtt.config import CameraSettings, Settings
from hik2mqtt.errors import AuthError, CameraError, CameraHTTPError, DecodeError


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok    {text}")

    def bad(self, text: str) -> None:
        self.lines.append(f"  FAIL  {text}")
        self.problems += 1

    def note(self, text: str) -> None:
        self.lines.append(f"        {text}")


def check_broker(settings: Settings, report: Report, *, timeout: float = 5.0) -> None:
    mqtt = settings.mqtt
    where = f"broker {mqtt.host}:{mqtt.port}"
    answered = threading.Event()
    outcome: dict[str, Any] = {}
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{mqtt.client_id}-check")
    if mqtt.username is not None:
        client.username_pw_set(
            mqtt.username, mqtt.password.get_secret_value() if mqtt.password else None
        )
    if mqtt.tls:
        client.tls_set(
            ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None,
            certfile=str(mqtt.cert_file) if mqtt.cert_file else None,
            keyfile=str(mqtt.key_file) if mqtt.key_file else None,
        )

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
    except OSError as exc:
        report.bad(f"{where}: cannot connect ({exc}); check HIK2MQTT_MQTT__HOST and __PORT")
        return
    client.loop_start()
    try:
        if not answered.wait(timeout):
            report.bad(f"{where}: no answer within {timeout:.0f} s")
        elif outcome["reason"].is_failure:
            report.bad(f"{where}: refused ({outcome['reason']}); check __USERNAME and __PASSWORD")
        else:
            report.ok(f"{where}: connected")
    finally:
        client.disconnect()
        client.loop_stop()


def _get(client: CameraClient, path: str) -> bytes:
    return client.request(path, limit=256 * 1024).body


def check_camera(name: str, camera: CameraSettings, report: Report) -> None:
    where = f"camera {name} ({camera.base_url})"
    client = CameraClient(name=name, settings=camera)
    variable = f"HIK2MQTT_CAMERAS__{name.upper()}"
    try:
        info = isapi.device_info(_get(client, "/ISAPI/System/deviceInfo"))
        if info is None:
            raise DecodeError("the answer to /ISAPI/System/deviceInfo is no DeviceInfo")
    except AuthError as exc:
        report.bad(f"{where}: {exc}; check {variable}__USERNAME and __PASSWORD")
        client.close()
        return
    except (CameraError, DecodeError) as exc:
        report.bad(f"{where}: {exc}; check {variable}__HOST, __PORT and __HTTPS")
        client.close()
        return
    try:
        report.ok(
            f"{where}: {info.model or 'unknown model'}, firmware {info.firmware or 'unknown'}"
        )
        channel = camera.channel
        try:
            if isapi.vehicle_detection(
                _get(client, f"/ISAPI/Traffic/channels/{channel}/vehicleDetect")
            ):
                report.note("vehicle detection (ANPR): on")
            else:
                report.bad(f"camera {name}: vehicle detection (ANPR) is off on channel {channel}")
        except (CameraHTTPError, DecodeError) as exc:
            report.bad(f"camera {name}: no vehicle detection (ANPR) on channel {channel} ({exc})")
        try:
            trigger = _get(client, f"/ISAPI/Event/triggers/vehicledetection-{channel}")
            if isapi.notifies_center(trigger):
                report.note("notify surveillance center: on (reads reach the bridge)")
            elif camera.mode == "poll":
                report.note("notify surveillance center: off (not needed in poll mode)")
            else:
                report.bad(
                    f"camera {name}: its vehicle detection event does not notify the surveillance "
                    "center: tick 'Notify Surveillance Center' under Linkage Method, or no read "
                    "reaches the bridge"
                )
        except (CameraHTTPError, DecodeError) as exc:
            report.note(f"notify surveillance center: could not tell ({exc})")
        report.note("manual recognition (MNPR): not tried here (it would make the camera read)")
    except CameraError as exc:
        report.bad(f"{where}: {exc}")
    finally:
        client.close()


def run_checks(settings: Settings) -> Report:
    report = Report()
    check_broker(settings, report)
    for name, camera in settings.cameras.items():
        check_camera(name, camera, report)
    return report
