"""``hik2mqtt check``: try the configuration against the real broker and cameras.

For the broker: a connection built as the bridge builds it (credentials, TLS and
``VERIFY_TLS``, MQTT 5 or the 3.1.1 fallback), and our cameras that another live bridge
announces in its retained registry (``<prefix>/bridge/<id>/cameras``). For each camera: a
login (one attempt: cameras lock accounts), its device info, whether vehicle detection is
on (``/ISAPI/Traffic/channels/<ch>/vehicleDetect``), and whether its vehicle detection
event notifies the "surveillance center" (``/ISAPI/Event/triggers/vehicledetection-<ch>``,
``notificationMethod`` ``center``), without which the camera reads plates but sends
nothing (``shared/samples/event-trigger-vehicledetection-DS-2CD4A26FWD.json``). Manual
recognition is not tried: it would make the camera read.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from hik2mqtt import isapi
from hik2mqtt.camera import CameraClient
from hik2mqtt.config import CameraSettings, Settings
from hik2mqtt.discovery import other_bridges_cameras
from hik2mqtt.errors import AuthError, CameraError, CameraHTTPError, DecodeError
from hik2mqtt.mqtt import MqttVersion, build_client, connect_kwargs, refused_mqtt5
from hik2mqtt.topics import Topics


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
    """Connect as the bridge would (the same client builder: credentials, TLS, protocol),
    say which MQTT version works, and report our cameras that another live bridge on the
    broker announces too."""
    mqtt = settings.mqtt
    where = f"broker {mqtt.host}:{mqtt.port}"
    protocol: MqttVersion = mqtt.protocol
    client, reason = _connect(settings, protocol, timeout=timeout)
    if client is not None and isinstance(reason, ReasonCode) and refused_mqtt5(reason):
        _close(client)
        protocol = "3.1.1"
        client, reason = _connect(settings, protocol, timeout=timeout)
        report.note(
            f"{where} refused MQTT 5: the bridge will fall back to MQTT 3.1.1, without "
            "message expiry (see README, MQTT 5)"
        )
    elif client is not None and reason is None and protocol == "5":
        # No CONNACK to MQTT 5 (closed, or silent): a broker that speaks 3.1.1 only, as
        # RabbitMQ and amqtt are. The bridge falls back after two such answers.
        _close(client)
        fallback, fallback_reason = _connect(settings, "3.1.1", timeout=timeout)
        if fallback is not None and isinstance(fallback_reason, ReasonCode):
            protocol, client, reason = "3.1.1", fallback, fallback_reason
            report.note(
                f"{where} did not answer MQTT 5 (no CONNACK): the bridge will fall back to "
                "MQTT 3.1.1, without message expiry (see README, MQTT 5)"
            )
        else:
            if fallback is not None:
                _close(fallback)
            client, reason = _connect(settings, protocol, timeout=timeout)
    if client is None:
        report.bad(f"{where}: {reason}")
        return
    try:
        if reason is None:
            report.bad(f"{where}: no answer within {timeout:.0f} s")
        elif isinstance(reason, ReasonCode) and reason.is_failure:
            report.bad(f"{where}: refused ({reason}); check __USERNAME and __PASSWORD")
        else:
            unverified = mqtt.tls and not mqtt.verify_tls
            extra = " (certificate not verified: VERIFY_TLS=false)" if unverified else ""
            report.ok(f"{where}: connected, MQTT {protocol}{extra}")
            for camera, other in _shared_cameras(client, settings, timeout=timeout):
                report.bad(
                    f"camera {camera}: the live bridge {other} on this broker announces it "
                    "too; a camera belongs on one bridge (see docs/mqtt5-and-bridges.md)"
                )
    finally:
        _close(client)


def _close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


def _connect(
    settings: Settings, protocol: MqttVersion, *, timeout: float
) -> tuple[paho.Client | None, ReasonCode | str | None]:
    """(client, its CONNACK reason; None: no answer), or (None, what went wrong)."""
    mqtt = settings.mqtt
    answered = threading.Event()
    outcome: dict[str, ReasonCode] = {}
    client = build_client(mqtt, client_id=f"{mqtt.client_id}-check", protocol=protocol)

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        outcome["reason"] = reason
        answered.set()

    def on_disconnect(c: paho.Client, _u: Any, _f: Any, _r: ReasonCode, _p: Any) -> None:
        if "reason" not in outcome:  # closed before any CONNACK: stop waiting, stop retrying
            c.loop_stop()
            answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(
            mqtt.host, mqtt.port, keepalive=10, **connect_kwargs(protocol, max_packet_size=None)
        )
    except (OSError, ValueError) as exc:
        hint = "HIK2MQTT_MQTT__HOST and __PORT"
        if isinstance(exc, ssl.SSLError):
            hint = "HIK2MQTT_MQTT__TLS, __CA_FILE and __VERIFY_TLS"
        return None, f"cannot connect ({exc}); check {hint}"
    client.loop_start()
    answered.wait(timeout)
    return client, outcome.get("reason")


# Retained messages arrive right after the subscription is acknowledged: this is how long
# ``check`` listens for the other bridges' statuses and registries.
_LISTEN_FOR_BRIDGES = 1.0


def _shared_cameras(
    client: paho.Client, settings: Settings, *, timeout: float
) -> list[tuple[str, str]]:
    if not settings.cameras:
        return []
    topics = Topics(settings.topic_prefix, settings.bridge_id)
    retained: dict[str, bytes] = {}
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        if message.retain and len(message.payload) <= 64 * 1024:
            with lock:
                retained[message.topic] = bytes(message.payload)

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.subscribe(topics.bridges_filter, qos=1)
    if subscribed.wait(timeout):
        time.sleep(_LISTEN_FOR_BRIDGES)
    with lock:
        found = dict(retained)
    return other_bridges_cameras(topics, found, set(settings.cameras))


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
