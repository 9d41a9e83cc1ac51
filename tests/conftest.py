"""Shared fixtures: a real Mosquitto on a free port, MQTT subscribers, the simulator, bridges."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hik2mqtt.bridge import Bridge
from hik2mqtt.config import Settings
from hik2mqtt.simulator import Simulator

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout} s: {condition}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def changes(sub: Subscriber, topic: str) -> list[bytes]:
    """The payloads on ``topic`` with repeats folded (statuses are re-announced on connect)."""
    out: list[bytes] = []
    for payload in sub.payloads(topic):
        if not out or out[-1] != payload:
            out.append(payload)
    return out


class Broker:
    """A mosquitto process on its own port, which a test may stop and start again."""

    def __init__(
        self, port: int | None = None, *, persistence: bool = False, extra: str = ""
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="hik2mqtt-broker-"))
        self._conf = self._dir / "mosquitto.conf"
        keep = (
            f"persistence true\npersistence_location {self._dir}/\n"
            if persistence
            else "persistence false\n"
        )
        self._conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{keep}"
            f"log_dest none\nset_tcp_nodelay true\n"
            # A test's subscriber may fall behind a burst: keep every QoS 1 message for it.
            "max_queued_messages 0\n"
            # Started as root (CI), mosquitto would switch to its own user, which can't
            # read our temporary folders (certificates, persistence); started as anyone
            # else, this line does nothing.
            f"user root\n{extra}"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with (self._dir / "stderr").open("ab") as errors:  # read it when a broker won't start
            self._proc = subprocess.Popen([binary, "-c", str(self._conf)], stderr=errors)
        wait_until(self._accepts, timeout=10)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@dataclass
class ExternalBroker:
    host: str
    port: int


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker | ExternalBroker]:
    """The session's broker: HIK2MQTT_TEST_BROKER=host:port, else our own mosquitto."""
    named = os.environ.get("HIK2MQTT_TEST_BROKER")
    if named:
        host, _, port = named.rpartition(":")
        yield ExternalBroker(host or "127.0.0.1", int(port))
        return
    own = Broker()
    own.start()
    yield own
    own.close()


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker for this test alone (it may be stopped and restarted)."""
    own = Broker()
    own.start()
    yield own
    own.close()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.perf_counter() when it arrived


class Subscriber:
    """A plain MQTT client that records every message on its topic filters."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str],
        *,
        persistent: bool = False,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        """``persistent``: a session the broker keeps (and queues for) while we are away."""
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(1, 2)
        if tls is not None:
            ca_certs, certfile, keyfile = tls
            self.client.tls_set(ca_certs=ca_certs, certfile=certfile, keyfile=keyfile)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, timeout=10)

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):  # no Nagle: a publish after a PUBACK can't wait 40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.perf_counter())
            )

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.on(topic)]

    def wait_for(self, topic: str, count: int = 1, timeout: float = 10.0) -> list[Message]:
        """Wait until ``count`` messages came on ``topic``; return the first ``count``."""

        def enough() -> list[Message] | None:
            found = self.on(topic)
            return found[:count] if len(found) >= count else None

        return list(wait_until(enough, timeout))

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        # disconnect first: paho's network thread sends DISCONNECT and ends its loop at once;
        # loop_stop() first would wait out the thread's select timeout (~0.7 s a close).
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe(broker: Broker | ExternalBroker) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(
        *topics: str, target: Broker | ExternalBroker | None = None, persistent: bool = False
    ) -> Subscriber:
        where = target or broker
        sub = Subscriber(where.host, where.port, list(topics), persistent=persistent)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own, so tests never see each other's messages."""
    return f"test{uuid.uuid4().hex[:10]}"


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(heartbeat=None) as sim:
        yield sim


def camera_config(sim: Simulator, **extra: Any) -> dict[str, Any]:
    return {
        "host": sim.host,
        "port": sim.port,
        "username": sim.username,
        "password": sim.password,
        **extra,
    }


def bridge_settings(
    broker: Broker | ExternalBroker, prefix: str, cameras: dict[str, dict[str, Any]], **extra: Any
) -> Settings:
    return Settings.model_validate(
        {
            "mqtt": {"host": broker.host, "port": broker.port},
            "topic_prefix": prefix,
            "cameras": cameras,
            "web": {"port": 0},  # tests that want the page give it a free port
            **extra,
        }
    )


AnyBroker = Broker | ExternalBroker
ROOT = Path(__file__).resolve().parents[1]


def process_env(
    broker: AnyBroker | None = None,
    prefix: str | None = None,
    cameras: dict[str, Simulator] | None = None,
    *,
    root: Path = ROOT,
    page_off: bool = True,
    **settings: str,
) -> dict[str, str]:
    """The environment for ``python -m hik2mqtt ...`` as its own process (tests, benches):
    none of the caller's HIK2MQTT_ settings; the code of ``root``; the broker, the topic
    prefix and one camera per simulator (host, port, its password) when given; no web page
    (unless ``page_off`` is False: a checkout from before the page has no such setting);
    then ``settings`` over all of it."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HIK2MQTT_")}
    env["PYTHONPATH"] = str(root)
    if page_off:
        env["HIK2MQTT_WEB__PORT"] = "0"
    if broker is not None:
        env.update(HIK2MQTT_MQTT__HOST=broker.host, HIK2MQTT_MQTT__PORT=str(broker.port))
    if prefix is not None:
        env["HIK2MQTT_TOPIC_PREFIX"] = prefix
    for name, sim in (cameras or {}).items():
        camera = f"HIK2MQTT_CAMERAS__{name.upper()}__"
        env.update(
            {
                camera + "HOST": sim.host,
                camera + "PORT": str(sim.port),
                camera + "PASSWORD": sim.password,
            }
        )
    env.update(settings)
    return env


RunBridge = Callable[[Settings], Bridge]
Subscribe = Callable[..., Subscriber]


@pytest.fixture
def run_bridge() -> Iterator[Callable[[Settings], Bridge]]:
    started: list[Bridge] = []

    def start(settings: Settings) -> Bridge:
        bridge = Bridge(settings=settings)
        bridge.start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


# -- MQTT 5 helpers (tests/test_mqtt5.py, and bridge tests with bridge ids) ----------------


class Sub5:
    """An MQTT 5 subscriber that records messages with their properties. ``session``: a
    persistent session (the broker queues for it while it is away) under that client id."""

    def __init__(self, where: AnyBroker, topics: list[str], *, session: str | None = None) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self._where = where
        self._session = session
        self.client = self._connect()

    def _connect(self) -> paho.Client:
        self._subscribed.clear()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._session or f"test5-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in self._topics])
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._session is not None:
            properties.SessionExpiryInterval = 600
        client.connect(
            self._where.host,
            self._where.port,
            clean_start=self._session is None,
            properties=properties,
        )
        client.loop_start()
        wait_until(self._subscribed.is_set)
        return client

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def on(self, topic: str) -> list[paho.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def away(self) -> None:
        """Disconnect; a persistent session's messages now queue at the broker."""
        self.client.disconnect()
        self.client.loop_stop()

    def back(self) -> None:
        self.client = self._connect()

    def close(self) -> None:
        self.away()
        if self._session is not None:  # end the session at the broker
            end = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=self._session, protocol=paho.MQTTv5
            )
            end.connect(self._where.host, self._where.port, clean_start=True)
            end.disconnect()


@pytest.fixture
def sub5(broker: AnyBroker) -> Iterator[Any]:
    made: list[Sub5] = []

    def make(*topics: str, session: str | None = None, target: AnyBroker | None = None) -> Sub5:
        sub = Sub5(target or broker, list(topics), session=session)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def props_of(message: paho.MQTTMessage) -> dict[str, Any]:
    properties = getattr(message, "properties", None)
    return properties.json() if properties is not None else {}


def after(deadline: float) -> bool:
    return time.monotonic() >= deadline


class Stand_in:
    """A TCP proxy to a real broker that may refuse MQTT 5 CONNECTs as a 3.1.1-only broker
    does, and that can cut every connection (the broker then sees them die without a
    goodbye). ``v5_answer`` says how it refuses: ``connack`` (return code 1, "unacceptable
    protocol version", then close: Mosquitto 1.x, NATS), ``close`` (hang up with no CONNACK:
    RabbitMQ 3.10) or ``silence`` (keep the connection, say nothing: amqtt 0.12)."""

    def __init__(
        self,
        upstream: AnyBroker,
        *,
        refuse_v5: bool,
        v5_answer: Literal["connack", "close", "silence"] = "connack",
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.levels: list[int] = []  # the protocol level of every CONNECT seen
        self.firsts: list[bytes] = []
        self._upstream = upstream
        self.refuse_v5 = refuse_v5
        self._v5_answer = v5_answer
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server((self.host, self.port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            self._socks.append(conn)
        try:
            first = read_mqtt_packet(conn)
            if first is None:
                conn.close()
                return
            level = _connect_level(first)
            self.firsts.append(first[:40])
            self.levels.append(level)
            if self.refuse_v5 and level == 5:
                if self._v5_answer == "silence":
                    while conn.recv(65536):  # until the client gives up and closes
                        pass
                elif self._v5_answer == "connack":
                    conn.sendall(b"\x20\x02\x00\x01")
                conn.close()
                return
            up = socket.create_connection((self._upstream.host, self._upstream.port))
            with self._lock:
                self._socks.append(up)
            up.sendall(first)
            threading.Thread(target=_pipe, args=(up, conn), daemon=True).start()
            _pipe(conn, up)
        except OSError:
            conn.close()

    def cut(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(2)
        self.cut()


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_mqtt_packet(sock: socket.socket) -> bytes | None:
    """One whole MQTT packet (fixed header, remaining length, body)."""
    head = _read_exact(sock, 1)
    if head is None:
        return None
    raw, length, shift = b"", 0, 0
    while True:
        byte = _read_exact(sock, 1)
        if byte is None:
            return None
        raw += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = _read_exact(sock, length)
    return None if body is None else head + raw + body


def _connect_level(packet: bytes) -> int:
    index = 1
    while packet[index] & 0x80:
        index += 1
    index += 1
    name_length = int(struct.unpack("!H", packet[index : index + 2])[0])
    return packet[index + 2 + name_length]


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def refuses_v5(broker: AnyBroker) -> Iterator[Stand_in]:
    stand_in = Stand_in(broker, refuse_v5=True)
    yield stand_in
    stand_in.close()


@pytest.fixture
def hangs_up_v5(broker: AnyBroker) -> Iterator[Stand_in]:
    """A broker that closes the connection on an MQTT 5 CONNECT, no CONNACK (RabbitMQ)."""
    stand_in = Stand_in(broker, refuse_v5=True, v5_answer="close")
    yield stand_in
    stand_in.close()


@pytest.fixture
def silent_on_v5(broker: AnyBroker) -> Iterator[Stand_in]:
    """A broker that never answers an MQTT 5 CONNECT and keeps the connection (amqtt)."""
    stand_in = Stand_in(broker, refuse_v5=True, v5_answer="silence")
    yield stand_in
    stand_in.close()


def documented_entity_ids(camera: str = "gate") -> set[str]:
    """The Home Assistant entity ids the README's entity table documents, for ``camera``
    and a bridge without an id (``..._image_vehicle`` continues the id before it)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("| Entity | What it is |", 1)[1].split("\n\n", 1)[0]
    ids: set[str] = set()
    for row in table.splitlines()[2:]:
        last = ""
        for found in re.findall(r"`([a-z_]+\.[a-z0-9_<>]+|\.\.\.[a-z_]+)`", row.split(" | ")[0]):
            name = last.rsplit("_image_", 1)[0] + found[3:] if found.startswith("...") else found
            last = name
            ids.add(name.replace("<camera>", camera))
    return ids
