"""The MQTT side, on paho-mqtt 2.x: the one client builder, publishing, the last will,
command subscriptions, MQTT 5 properties.

- ``build_client`` is the only place a paho client is made (``run``, ``check``, ``demo``):
  credentials, TLS (``VERIFY_TLS``), the protocol and the last will are the same everywhere.
- ``MqttLink`` is one connection kept up for the life of the bridge (or of the demo's
  subscriber). It speaks MQTT 5 unless told ``3.1.1``; a broker that refuses 5 ("unsupported
  protocol version"), or that answers an MQTT 5 CONNECT twice in a row with no CONNACK (it
  closes the connection, or says nothing for ``CONNACK_TIMEOUT``), gets one warning and a
  3.1.1 client from then on (reconnects included), until the bridge restarts.
- ``Props`` are MQTT 5 publish properties (content type, message expiry, user properties,
  correlation data); under 3.1.1 they are dropped, since the protocol has no place for them.
- What arrives is handed on as ``Incoming`` with its response topic and correlation data,
  both bounded (see ``MAX_RESPONSE_TOPIC`` and ``MAX_CORRELATION_DATA``); under MQTT 5 the
  link also tells the broker the largest packet it takes (``max_packet_size``), so a hostile
  publisher's huge command never reaches us.

paho runs its own network thread (``loop_start``). Its callbacks never do HTTP or wait:
they hand work to the caller's callbacks, which only queue it. QoS 1 messages published
while the broker is away are kept by paho, in order, up to ``queue_size``, and sent when
it is back; paho reconnects by itself.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hik2mqtt import backoff
from hik2mqtt.config import MqttSettings
from hik2mqtt.core.untrusted import topic_problem
from hik2mqtt.topics import OFFLINE

log = logging.getLogger(__name__)

# `run` never starts a broker of its own (production uses a real one): it says how to get one.
NO_BROKER_HINT = (
    " (no broker yet? `apt-get install mosquitto`, or `docker compose up -d mosquitto`,"
    " and set HIK2MQTT_MQTT__HOST; `hik2mqtt demo` brings its own for trying)"
)
MqttVersion = Literal["5", "3.1.1"]

JSON = "application/json"
JPEG = "image/jpeg"
TEXT = "text/plain"

# CONNACK reason "Unsupported Protocol Version" (MQTT 5 0x84; paho maps a 3.1.1 broker's
# return code 1, "unacceptable protocol version", to the same reason).
UNSUPPORTED_PROTOCOL_VERSION = 0x84
# A response topic or correlation data past these is not answered (a request/response id
# is a few dozen bytes; nothing a publisher sends may make us echo kilobytes).
# Broker reconnects: 1 s doubling to 10 s, each wait jittered to [half, all] of its step.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10
MAX_RESPONSE_TOPIC = 256
MAX_CORRELATION_DATA = 256
# Largest packet the bridge takes from the broker under MQTT 5: commands are at most a few
# hundred bytes and the camera registry a list of names. The broker drops bigger ones.
MAX_INCOMING_PACKET = 256 * 1024
MAX_EXPIRY = 4_294_967_295  # a four-byte integer in MQTT 5
MAX_REFUSED_LOGGED = 1000  # refused topics remembered (one warning each), at most
# A CONNECT with no CONNACK after this long is given up (the socket closed, as MQTT 5's
# 3.1.4 asks of a client); on MQTT 5 that counts as the broker hanging up.
CONNACK_TIMEOUT = 5.0
# MQTT 5 CONNECTs in a row answered by a hang-up (no CONNACK) before trying 3.1.1.
HANGUPS_BEFORE_311 = 2
# What the bridge gives up under 3.1.1, for the one fallback warning.
LOST_UNDER_311 = (
    "without message expiry, content types, user properties, answers on response topics "
    "with correlation data, or the bound on incoming packet size"
)


@dataclass(frozen=True, slots=True)
class Will:
    """The last will: published by the broker when the connection dies without a goodbye."""

    topic: str
    payload: bytes | str = OFFLINE
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Props:
    """MQTT 5 properties of one publish (all optional); ignored under MQTT 3.1.1.

    ``expiry``: seconds after which the broker discards the message instead of delivering
    it (to a subscriber that was away, or from the retained store); None: never.
    """

    content_type: str | None = None
    expiry: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    correlation_data: bytes | None = None

    def __post_init__(self) -> None:
        if self.expiry is not None and not 0 < self.expiry <= MAX_EXPIRY:
            msg = f"expiry must be 1..{MAX_EXPIRY} seconds or None, not {self.expiry}"
            raise ValueError(msg)
        if self.correlation_data is not None and len(self.correlation_data) > 65535:
            msg = "correlation data is at most 65535 bytes"
            raise ValueError(msg)

    def to_paho(self) -> Properties | None:
        """paho's PUBLISH properties (None when there are none).

        paho builds and checks a ``Properties`` slowly (a name table per object, a search
        per attribute): the content type and expiry are set once per pair, through paho's
        checks, and copied; a read's own user properties and correlation data are added to
        the copy as paho stores them.
        """
        if (
            self.content_type is None
            and self.expiry is None
            and not self.user_properties
            and self.correlation_data is None
        ):
            return None
        properties = copy.copy(_base_properties(self.content_type, self.expiry))
        if self.user_properties:
            object.__setattr__(properties, "UserProperty", list(self.user_properties))
        if self.correlation_data is not None:
            object.__setattr__(properties, "CorrelationData", self.correlation_data)
        return properties


@functools.lru_cache(maxsize=64)
def _base_properties(content_type: str | None, expiry: int | None) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if content_type is not None:
        properties.ContentType = content_type
    if expiry is not None:
        properties.MessageExpiryInterval = expiry
    return properties


@functools.lru_cache(maxsize=64)
def _shared_properties(props: Props) -> Properties | None:
    """paho's PUBLISH properties for ``props``, built once (paho only reads them)."""
    return props.to_paho()


def expiring(content_type: str, expiry: int, **user: str | None) -> Props:
    """Props for a message a gate might act on: ``expiry`` seconds (0: never expires)
    and user properties from ``user`` (None values left out), e.g. camera and event_id."""
    return Props(
        content_type=content_type,
        expiry=expiry or None,
        user_properties=tuple((k, v) for k, v in user.items() if v is not None),
    )


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message from the broker. ``response_topic`` and ``correlation_data`` come with an
    MQTT 5 request that wants an answer (None otherwise, and always under 3.1.1)."""

    topic: str
    payload: bytes
    retained: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


def response_topic_problem(topic: str) -> str | None:
    """Why a request's response topic can't be answered on (None: it can)."""
    if not topic:
        return "empty response topic"
    if len(topic.encode("utf-8", "replace")) > MAX_RESPONSE_TOPIC:
        return f"response topic over {MAX_RESPONSE_TOPIC} bytes"
    if any(c in topic for c in "+#\x00"):
        return "response topic with a wildcard or NUL"
    return None


def build_client(
    settings: MqttSettings,
    *,
    client_id: str,
    protocol: MqttVersion,
    will: Will | None = None,
) -> paho.Client:
    """A paho client (not connected) with the settings' credentials and TLS.

    Every command builds its clients here. ``settings.verify_tls`` false accepts any
    certificate and host name (the caller says so in its own log or report).
    """
    if protocol == "5":
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    else:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
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
    if will is not None:
        client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
    return client


def connect_kwargs(protocol: MqttVersion, *, max_packet_size: int | None) -> dict[str, Any]:
    """The extra arguments of ``connect``/``connect_async`` for a fresh session."""
    if protocol != "5":
        return {}
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if max_packet_size is not None:
        properties.MaximumPacketSize = max_packet_size
    return {"clean_start": True, "properties": properties}


def refused_mqtt5(reason_code: ReasonCode) -> bool:
    """True for the CONNACK of a broker that does not speak MQTT 5."""
    return bool(reason_code.value == UNSUPPORTED_PROTOCOL_VERSION)


class MqttLink:
    """One connection to the broker, kept up for the life of the bridge.

    ``on_incoming`` gets every message as an ``Incoming``; the older ``on_message(topic,
    payload, retained)`` still works (give one of the two). ``protocol`` says what is in
    use now: the settings' choice, or ``3.1.1`` after the broker refused 5.
    """

    def __init__(
        self,
        *,
        settings: MqttSettings,
        will_topic: str | None,
        subscriptions: list[str],
        on_connect: Callable[[], None],
        on_message: Callable[[str, bytes, bool], None] | None = None,
        on_incoming: Callable[[Incoming], None] | None = None,
        on_published: Callable[[int], None] = lambda _mid: None,
        client_id: str | None = None,
        max_packet_size: int | None = MAX_INCOMING_PACKET,
        connack_timeout: float = CONNACK_TIMEOUT,
    ) -> None:
        if (on_message is None) == (on_incoming is None):
            msg = "give MqttLink one of on_message and on_incoming"
            raise TypeError(msg)
        self.settings = settings
        self.connected = threading.Event()
        self.protocol: MqttVersion = settings.protocol
        self._client_id = client_id or settings.client_id
        self._will = Will(will_topic) if will_topic is not None else None
        self._max_packet_size = max_packet_size
        self._subscriptions = subscriptions
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._on_incoming_cb = on_incoming
        self._on_published_cb = on_published
        self._stopping = False
        self._started = False
        self._ever_connected = False
        self._outage_logged = False
        self._failed_attempts = 0  # connection attempts lost or failed since the last CONNACK
        self._connack_timeout = connack_timeout
        self._attempt = 0  # sockets opened (each carries one CONNECT)
        self._awaiting_connack = False  # the current socket's CONNECT is unanswered
        self._hangups = 0  # MQTT 5 CONNECTs in a row answered by a hang-up, no CONNACK
        self._swap_lock = threading.Lock()
        self._refused: set[str] = set()  # topics refused and logged
        if settings.tls and not settings.verify_tls:
            log.warning("MQTT: the broker's certificate is not verified (VERIFY_TLS=false)")
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        client = build_client(
            self.settings, client_id=self._client_id, protocol=self.protocol, will=self._will
        )
        client.max_queued_messages_set(self.settings.queue_size)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_socket_open = self._on_socket_open
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def start(self) -> None:
        """Connect in the background; paho keeps retrying until the broker answers."""
        with self._swap_lock:
            self._started = True
            self._connect(self._client)

    def _connect(self, client: paho.Client) -> None:
        client.connect_async(
            self.settings.host,
            self.settings.port,
            self.settings.keepalive,
            **connect_kwargs(self.protocol, max_packet_size=self._max_packet_size),
        )
        client.loop_start()

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        retain: bool = False,
        props: Props | None = None,
    ) -> paho.MQTTMessageInfo | None:
        """Publish at QoS 1; None when paho's queue is full and the message was not taken.

        ``props`` go out under MQTT 5 and are dropped under 3.1.1. A topic paho or the broker
        would refuse (see ``refuses``) is not published: None, and one warning per topic.
        """
        if self.refuses(topic):
            return None
        client = self._client
        properties = None
        if props is not None and client.protocol == paho.MQTTv5:
            # The same few property sets (content types, expiry) recur on every message:
            # built once each; a read's own (its event_id) is built for it.
            shared = not props.user_properties and props.correlation_data is None
            properties = _shared_properties(props) if shared else props.to_paho()
        info = client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            log.warning(
                "MQTT queue full (%d messages): dropped %s", self.settings.queue_size, topic
            )
            return None
        return info

    def refuses(self, topic: str) -> bool:
        """Whether ``topic`` is one no message may be published on (core/untrusted.py):
        paho raises on a wildcard, and a broker drops the whole connection on a NUL or a
        control character, and paho would send that message first on every reconnect. One
        warning per topic (the first MAX_REFUSED_LOGGED), and never published."""
        problem = topic_problem(topic)
        if problem is None:
            return False
        with self._swap_lock:
            first = topic not in self._refused and len(self._refused) < MAX_REFUSED_LOGGED
            if first:
                self._refused.add(topic)
        if first:
            log.warning("MQTT: not publishing on %s: %s", ascii(topic[:200]), problem)
        return True

    def stop(self, final: list[tuple[str, bytes | str]], *, timeout: float = 2.0) -> None:
        """Publish ``final`` (retained), wait for them up to ``timeout``, disconnect."""
        with self._swap_lock:
            self._stopping = True
        client = self._client
        infos = [client.publish(t, p, qos=1, retain=True) for t, p in final if not self.refuses(t)]
        deadline = time.monotonic() + timeout
        if self.connected.is_set():
            while time.monotonic() < deadline and not all(i.is_published() for i in infos):
                time.sleep(0.01)
        client.disconnect()
        client.loop_stop()

    # -- falling back to MQTT 3.1.1 ------------------------------------------------------

    def _fall_back(self, old: paho.Client, why: str) -> None:
        """paho's thread: the broker refused MQTT 5. One warning; from now on 3.1.1."""
        log.warning(
            "MQTT broker %s %s: using MQTT 3.1.1 until restart, %s (see README, MQTT 5)",
            self.where,
            why,
            LOST_UNDER_311,
        )
        self.protocol = "3.1.1"
        self._client = self._make_client()
        threading.Thread(
            target=self._replace, args=(old,), name="mqtt-fallback", daemon=True
        ).start()

    def _replace(self, old: paho.Client) -> None:
        """Stop the refused client's thread, then start the 3.1.1 one (unless stopping)."""
        try:
            old.loop_stop()
            with contextlib.suppress(Exception):
                old.disconnect()
            with self._swap_lock:
                if self._started and not self._stopping:
                    self._connect(self._client)
        except Exception:  # a thread that dies must say so
            log.exception("MQTT: could not switch to MQTT 3.1.1")

    # -- paho callbacks (network thread: no waiting here) -----------------------------

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        if client is not self._client:
            return
        # A CONNACK, whatever its reason: this broker answers MQTT 5 CONNECTs.
        self._awaiting_connack = False
        self._hangups = 0
        if reason_code.is_failure:
            if refused_mqtt5(reason_code) and client.protocol == paho.MQTTv5 and not self._stopping:
                client.loop_stop()  # from its own thread: ends the loop, no join
                self._fall_back(client, f"refused MQTT 5 ({reason_code})")
                return
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
            "MQTT %s to %s (MQTT %s)",
            "reconnected" if self._ever_connected else "connected",
            self.where,
            self.protocol,
        )
        self._ever_connected = True
        self._outage_logged = False
        self._failed_attempts = 0
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self._on_connect_cb()

    def _on_disconnect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        if client is not self._client:
            return
        self.connected.clear()
        unanswered, self._awaiting_connack = self._awaiting_connack, False
        if self._stopping:
            return
        if unanswered and client.protocol == paho.MQTTv5:
            # The broker hung up on (or never answered) an MQTT 5 CONNECT: RabbitMQ's and
            # amqtt's way of saying they speak 3.1.1 only.
            self._hangups += 1
            if self._hangups >= HANGUPS_BEFORE_311:
                client.loop_stop()  # from its own thread: ends the loop, no join
                why = (
                    f"answered {self._hangups} MQTT 5 connections in a row with no CONNACK "
                    "(closed, or silent)"
                )
                self._fall_back(client, why)
                return
            self._jitter_next_wait(client)
            log.info(
                "MQTT broker %s closed the connection without answering the MQTT 5 CONNECT; "
                "trying again",
                self.where,
            )
            return
        self._jitter_next_wait(client)
        if not self._outage_logged:
            log.warning("MQTT connection to %s lost (%s); reconnecting", self.where, reason_code)
            self._outage_logged = True

    def _on_publish(
        self, client: paho.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any
    ) -> None:
        if client is self._client:
            self._on_published_cb(mid)

    def _jitter_next_wait(self, client: paho.Client) -> None:
        """Set the wait before paho's next reconnect: capped exponential with jitter, so
        bridges that lost one broker together do not all knock in the same second.

        paho's own delay doubles without jitter; its callbacks run before it waits, and
        ``reconnect_delay_set`` makes the next wait exactly ``min_delay``."""
        delay = backoff.reconnect_delay(
            self._failed_attempts, base=RECONNECT_MIN_S, cap=RECONNECT_MAX_S
        )
        self._failed_attempts += 1
        client.reconnect_delay_set(min_delay=delay, max_delay=RECONNECT_MAX_S)  # type: ignore[arg-type]

    def _on_socket_open(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        """A new socket, its CONNECT about to go: give the broker CONNACK_TIMEOUT to answer."""
        if client is not self._client:
            return
        self._attempt += 1
        self._awaiting_connack = True
        timer = threading.Timer(
            self._connack_timeout, self._no_connack, args=(client, sock, self._attempt)
        )
        timer.daemon = True
        timer.start()

    def _no_connack(self, client: paho.Client, sock: Any, attempt: int) -> None:
        """Timer thread: the CONNECT of ``attempt`` is still unanswered: close its socket
        (paho then sees the connection lost, reports it, and reconnects)."""
        if client is not self._client or attempt != self._attempt or not self._awaiting_connack:
            return
        if self._stopping:
            return
        log.debug("MQTT broker %s: no CONNACK within %g s", self.where, self._connack_timeout)
        if isinstance(sock, socket.socket):  # also ssl.SSLSocket
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _on_connect_fail(self, client: paho.Client, _userdata: Any) -> None:
        if client is not self._client:
            return
        self._jitter_next_wait(client)
        if not self._outage_logged:
            log.warning(
                "MQTT broker %s unreachable; retrying until it answers%s",
                self.where,
                "" if self._ever_connected else NO_BROKER_HINT,
            )
            self._outage_logged = True

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        payload = bytes(message.payload)
        retained = bool(message.retain)
        if self._on_message_cb is not None:
            self._on_message_cb(message.topic, payload, retained)
            return
        response_topic, correlation = _request_of(message)
        if self._on_incoming_cb is not None:
            self._on_incoming_cb(
                Incoming(message.topic, payload, retained, response_topic, correlation)
            )


def _request_of(message: paho.MQTTMessage) -> tuple[str | None, bytes | None]:
    """The response topic and correlation data of an MQTT 5 request, when both are sane."""
    properties = getattr(message, "properties", None)
    if properties is None:
        return None, None
    topic = getattr(properties, "ResponseTopic", None)
    if not isinstance(topic, str):
        return None, None
    correlation = getattr(properties, "CorrelationData", None)
    if correlation is not None and not isinstance(correlation, bytes | bytearray):
        correlation = None
    problem = response_topic_problem(topic)
    if problem is None and correlation is not None and len(correlation) > MAX_CORRELATION_DATA:
        problem = f"correlation data over {MAX_CORRELATION_DATA} bytes"
    if problem is not None:
        log.warning(
            "MQTT: not answering the request on %r on its response topic: %s",
            message.topic[:200],
            problem,
        )
        return None, None
    return topic, bytes(correlation) if correlation is not None else None


def subscriber(
    settings: MqttSettings,
    *,
    client_id: str,
    topics: list[str],
    on_incoming: Callable[[Incoming], None],
    on_connect: Callable[[], None] = lambda: None,
) -> MqttLink:
    """A link that only listens (no last will, any packet size), e.g. the demo's watcher:
    same credentials, TLS, protocol and 3.1.1 fallback as the bridge. ``start()`` it, and
    ``stop([])`` at the end."""
    return MqttLink(
        settings=settings,
        will_topic=None,
        subscriptions=topics,
        on_connect=on_connect,
        on_incoming=on_incoming,
        client_id=client_id,
        max_packet_size=None,
    )
