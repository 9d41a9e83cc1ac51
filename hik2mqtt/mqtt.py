"""The MQTT side, on paho-mqtt 2.x: publishing, the last will, command subscriptions.

paho runs its own network thread (``loop_start``). Its callbacks never do HTTP or wait:
they hand work to the caller's callbacks, which only queue it. QoS 1 messages published
while the broker is away are kept by paho, in order, up to ``queue_size``, and sent when
it is back; paho reconnects by itself.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from hik2mqtt.config import MqttSettings
from hik2mqtt.topics import OFFLINE

log = logging.getLogger(__name__)

# `run` never starts a broker of its own (production uses a real one): it says how to get one.
NO_BROKER_HINT = (
    " (no broker yet? `apt-get install mosquitto`, or `docker compose up -d mosquitto`,"
    " and set HIK2MQTT_MQTT__HOST; `hik2mqtt demo` brings its own for trying)"
)


class MqttLink:
    """One connection to the broker, kept up for the life of the bridge."""

    def __init__(
        self,
        *,
        settings: MqttSettings,
        will_topic: str,
        subscriptions: list[str],
        on_connect: Callable[[], None],
        on_message: Callable[[str, bytes, bool], None],
        on_published: Callable[[int], None] = lambda _mid: None,
    ) -> None:
        self.settings = settings
        self.connected = threading.Event()
        self._subscriptions = subscriptions
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._on_published_cb = on_published
        self._stopping = False
        self._ever_connected = False
        self._outage_logged = False
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED if settings.verify_tls else ssl.CERT_NONE,
            )
            if not settings.verify_tls:
                client.tls_insecure_set(True)
                log.warning("MQTT: the broker's certificate is not verified (VERIFY_TLS=false)")
        client.will_set(will_topic, OFFLINE, qos=1, retain=True)
        client.max_queued_messages_set(settings.queue_size)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def start(self) -> None:
        """Connect in the background; paho keeps retrying until the broker answers."""
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        self._client.loop_start()

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False
    ) -> paho.MQTTMessageInfo | None:
        """Publish at QoS 1; None when paho's queue is full and the message was not taken."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            log.warning(
                "MQTT queue full (%d messages): dropped %s", self.settings.queue_size, topic
            )
            return None
        return info

    def stop(self, final: list[tuple[str, bytes | str]], *, timeout: float = 2.0) -> None:
        """Publish ``final`` (retained), wait for them up to ``timeout``, disconnect."""
        self._stopping = True
        infos = [self._client.publish(t, p, qos=1, retain=True) for t, p in final]
        deadline = time.monotonic() + timeout
        if self.connected.is_set():
            while time.monotonic() < deadline and not all(i.is_published() for i in infos):
                time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (network thread: no waiting here) -----------------------------

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason_code.is_failure:
            if not self._outage_logged:
                log.error("MQTT broker %s refused the connection: %s", self.where, reason_code)
                self._outage_logged = True
            return
        # paho leaves Nagle's algorithm on: a small publish (a read, a trigger's result)
        # could then wait for the broker's delayed ACK, up to 40 ms. Reads go out now.
        sock = client.socket()
        if isinstance(sock, socket.socket):  # also ssl.SSLSocket
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info(
            "MQTT %s to %s", "reconnected" if self._ever_connected else "connected", self.where
        )
        self._ever_connected = True
        self._outage_logged = False
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self._on_connect_cb()

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        self.connected.clear()
        if self._stopping:
            return
        if not self._outage_logged:
            log.warning("MQTT connection to %s lost (%s); reconnecting", self.where, reason_code)
            self._outage_logged = True

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any
    ) -> None:
        self._on_published_cb(mid)

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        if not self._outage_logged:
            log.warning(
                "MQTT broker %s unreachable; retrying until it answers%s",
                self.where,
                "" if self._ever_connected else NO_BROKER_HINT,
            )
            self._outage_logged = True

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        self._on_message_cb(message.topic, bytes(message.payload), bool(message.retain))
