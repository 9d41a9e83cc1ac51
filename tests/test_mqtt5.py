"""MQTT 5 at the edge, against real Mosquitto: properties, expiry, requests, the 3.1.1
fallback (through a socket-level stand-in for a broker that refuses MQTT 5), hostile
publishers, the one client builder in ``check`` (VERIFY_TLS), and the settings."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hik2mqtt.check import Report, check_broker
from hik2mqtt.config import MqttSettings, Settings, load_settings
from hik2mqtt.discovery import other_bridges_cameras
from hik2mqtt.errors import ConfigError
from hik2mqtt.mqtt import (
    JSON,
    MAX_CORRELATION_DATA,
    Incoming,
    MqttLink,
    Props,
    expiring,
    response_topic_problem,
    subscriber,
)
from hik2mqtt.simulator import Simulator
from hik2mqtt.topics import Topics
from tests.conftest import (
    AnyBroker,
    Broker,
    RunBridge,
    Stand_in,
    Sub5,
    after,
    bridge_settings,
    camera_config,
    props_of,
    read_mqtt_packet,
    wait_until,
)

# -- helpers ----------------------------------------------------------------------------


def mqtt_settings(where: AnyBroker | Stand_in, **extra: Any) -> MqttSettings:
    return MqttSettings.model_validate({"host": where.host, "port": where.port, **extra})


@pytest.fixture
def links() -> Iterator[Any]:
    made: list[MqttLink] = []

    def make(settings: MqttSettings, subscriptions: list[str] | None = None) -> Any:
        received: list[Incoming] = []
        link = MqttLink(
            settings=settings,
            will_topic=None,
            subscriptions=subscriptions or [],
            on_connect=lambda: None,
            on_incoming=received.append,
        )
        link.start()
        made.append(link)
        return link, received

    yield make
    for link in made:
        link.stop([])


# -- properties and expiry --------------------------------------------------------------


def test_publish_properties_arrive_under_mqtt5(
    broker: AnyBroker, prefix: str, sub5: Any, links: Any
) -> None:
    """Content type, user properties, correlation data and expiry of a publish reach an
    MQTT 5 subscriber."""
    sub = sub5(f"{prefix}/#")
    link, _ = links(mqtt_settings(broker))
    wait_until(link.connected.is_set)
    assert link.protocol == "5"
    props = Props(
        content_type=JSON,
        expiry=60,
        user_properties=(("camera", "gate"), ("event_id", "42")),
        correlation_data=b"\x00\xffid",
    )
    link.publish(f"{prefix}/gate/plate", b"{}", props=props)
    wait_until(lambda: sub.on(f"{prefix}/gate/plate"))
    got = props_of(sub.on(f"{prefix}/gate/plate")[0])
    assert got["ContentType"] == JSON
    assert got["UserProperty"] == [("camera", "gate"), ("event_id", "42")]
    assert 0 < got["MessageExpiryInterval"] <= 60
    assert bytes.fromhex(got["CorrelationData"]) == b"\x00\xffid"


def test_persistent_subscriber_away_past_expiry_gets_nothing_stale(
    broker: AnyBroker, prefix: str, sub5: Any, links: Any
) -> None:
    """A persistent-session MQTT 5 subscriber away longer than a read's expiry does not
    get that read when it comes back; a fresh read arrives, with its content type."""
    topic = f"{prefix}/gate/plate"
    sub = sub5(topic, session=f"gate-controller-{prefix}")
    link, _ = links(mqtt_settings(broker))
    wait_until(link.connected.is_set)
    sub.away()
    info = link.publish(topic, b'{"plate":"OLD 1"}', props=expiring(JSON, 1, camera="gate"))
    info.wait_for_publish(5)  # the broker has it (PUBACK)
    stale_after = time.monotonic() + 2.5  # the broker counts whole seconds
    wait_until(lambda: after(stale_after), timeout=5, interval=0.05)
    link.publish(topic, b'{"plate":"NEW 1"}', props=expiring(JSON, 60, camera="gate"))
    sub.back()
    wait_until(lambda: sub.on(topic))
    # Queued messages come back in order: the stale one would have come first.
    assert [m.payload for m in sub.on(topic)] == [b'{"plate":"NEW 1"}']
    assert props_of(sub.on(topic)[0])["ContentType"] == JSON


def test_under_mqtt311_properties_are_dropped_and_nothing_expires(
    broker: AnyBroker, prefix: str, sub5: Any, links: Any
) -> None:
    """With PROTOCOL=3.1.1 the same publish goes out without properties, and a
    persistent subscriber gets the old read too: what 3.1.1 loses."""
    topic = f"{prefix}/gate/plate"
    sub = sub5(topic, session=f"gate-controller-{prefix}")
    link, _ = links(mqtt_settings(broker, protocol="3.1.1"))
    wait_until(link.connected.is_set)
    assert link.protocol == "3.1.1"
    sub.away()
    info = link.publish(topic, b'{"plate":"OLD 1"}', props=expiring(JSON, 1, camera="gate"))
    info.wait_for_publish(5)
    stale_after = time.monotonic() + 2.5
    wait_until(lambda: after(stale_after), timeout=5, interval=0.05)
    sub.back()
    wait_until(lambda: sub.on(topic))
    assert [m.payload for m in sub.on(topic)] == [b'{"plate":"OLD 1"}']
    assert "ContentType" not in props_of(sub.on(topic)[0])


def test_expiring_props() -> None:
    """expiring(): 0 means no expiry; None user values are left out; bad expiry refused."""
    assert expiring(JSON, 0, camera="gate", event_id=None) == Props(
        content_type=JSON, expiry=None, user_properties=(("camera", "gate"),)
    )
    assert Props().to_paho() is None
    with pytest.raises(ValueError, match="expiry"):
        Props(expiry=0)


# -- the 3.1.1 fallback -----------------------------------------------------------------


def test_falls_back_to_311_with_one_warning_and_keeps_reconnecting(
    broker: AnyBroker,
    prefix: str,
    refuses_v5: Stand_in,
    sub5: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker that refuses MQTT 5: one warning, then 3.1.1; messages flow (without
    properties), commands arrive, and after the connection is cut the link reconnects
    with 3.1.1 straight away, no second warning."""
    caplog.set_level(logging.INFO, logger="hik2mqtt.mqtt")
    sub = sub5(f"{prefix}/#")
    received: list[Incoming] = []
    link = MqttLink(
        settings=mqtt_settings(refuses_v5),
        will_topic=f"{prefix}/bridge/status",
        subscriptions=[f"{prefix}/+/trigger"],
        on_connect=lambda: None,
        on_incoming=received.append,
    )
    link.start()
    try:
        wait_until(link.connected.is_set)
        assert link.protocol == "3.1.1"
        assert refuses_v5.levels == [5, 4]
        link.publish(f"{prefix}/gate/plate", b"{}", props=expiring(JSON, 60, camera="gate"))
        wait_until(lambda: sub.on(f"{prefix}/gate/plate"))
        assert "ContentType" not in props_of(sub.on(f"{prefix}/gate/plate")[0])
        sub.client.publish(f"{prefix}/gate/trigger", b"x", qos=1)
        wait_until(lambda: received)
        assert received[0] == Incoming(f"{prefix}/gate/trigger", b"x", False, None, None)

        refuses_v5.cut()  # the broker publishes the last will; paho reconnects
        wait_until(lambda: [m.payload for m in sub.on(f"{prefix}/bridge/status")] == [b"offline"])
        wait_until(lambda: len(refuses_v5.levels) == 3 and link.connected.is_set())
        assert refuses_v5.levels == [5, 4, 4]
        link.publish(f"{prefix}/gate/plate", b"{}")
        wait_until(lambda: len(sub.on(f"{prefix}/gate/plate")) == 2)
    finally:
        link.stop([])
    refused = [r for r in caplog.records if "refused MQTT 5" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].levelno == logging.WARNING


@pytest.mark.parametrize("answer", ["close", "silence"])
def test_a_broker_that_hangs_up_on_mqtt5_twice_gets_311(
    broker: AnyBroker, prefix: str, answer: str, sub5: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker that answers MQTT 5 CONNECTs with no CONNACK (it closes the connection, as
    RabbitMQ does, or says nothing, as amqtt does): after two such answers in a row the link
    connects with 3.1.1 (the CONNECTs' protocol levels are 5, 5, 4), with one warning naming
    the broker and what is lost; a cut connection comes back on 3.1.1, no second warning."""
    caplog.set_level(logging.INFO, logger="hik2mqtt.mqtt")
    stand_in = Stand_in(broker, refuse_v5=True, v5_answer=answer)  # type: ignore[arg-type]
    sub = sub5(f"{prefix}/#")
    link = MqttLink(
        settings=mqtt_settings(stand_in),
        will_topic=f"{prefix}/bridge/status",
        subscriptions=[],
        on_connect=lambda: None,
        on_incoming=lambda _m: None,
        connack_timeout=0.3,
    )
    link.start()
    try:
        wait_until(link.connected.is_set)
        assert stand_in.levels == [5, 5, 4]
        assert link.protocol == "3.1.1"
        link.publish(f"{prefix}/gate/plate", b"{}", props=expiring(JSON, 60, camera="gate"))
        wait_until(lambda: sub.on(f"{prefix}/gate/plate"))
        stand_in.cut()
        wait_until(lambda: len(stand_in.levels) == 4 and link.connected.is_set())
        assert stand_in.levels == [5, 5, 4, 4]
    finally:
        link.stop([])
        stand_in.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings[1:] == [
        f"MQTT connection to {link.where} lost (Unspecified error); reconnecting"
    ]
    assert f"{stand_in.host}:{stand_in.port}" in warnings[0]
    assert "no CONNACK" in warnings[0]
    assert "message expiry" in warnings[0]
    assert "correlation data" in warnings[0]


def test_a_connack_on_mqtt5_resets_the_hang_up_count(
    broker: AnyBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Hang-ups that are not in a row (a CONNACK between them) are an outage, not a broker
    without MQTT 5: the link stays on MQTT 5 and warns about no fallback."""
    stand_in = Stand_in(broker, refuse_v5=True, v5_answer="close")
    link = MqttLink(
        settings=mqtt_settings(stand_in),
        will_topic=None,
        subscriptions=[],
        on_connect=lambda: None,
        on_incoming=lambda _m: None,
    )
    link.start()
    try:
        wait_until(lambda: stand_in.levels == [5])  # one hang-up; the next try is >= 0.5 s on
        stand_in.refuse_v5 = False
        wait_until(link.connected.is_set)
        stand_in.refuse_v5 = True
        stand_in.cut()
        wait_until(lambda: len(stand_in.levels) == 3)  # the second hang-up, not in a row
        stand_in.refuse_v5 = False
        wait_until(lambda: len(stand_in.levels) == 4 and link.connected.is_set())
        assert stand_in.levels == [5, 5, 5, 5]
        assert link.protocol == "5"
    finally:
        link.stop([])
        stand_in.close()
    assert "3.1.1" not in caplog.text


def test_check_notes_the_311_fallback_of_a_broker_that_hangs_up(hangs_up_v5: Stand_in) -> None:
    """`check` against a broker that closes MQTT 5 connections unanswered tries 3.1.1 and
    says the bridge will use it."""
    report = Report()
    check_broker(settings_for(hangs_up_v5), report)
    assert report.problems == 0, report.lines
    assert any("did not answer MQTT 5" in line for line in report.lines)
    assert any("connected, MQTT 3.1.1" in line for line in report.lines)
    assert hangs_up_v5.levels == [5, 4]


def test_run_with_default_settings_delivers_reads_through_amqtt(
    prefix: str, tmp_path: Path
) -> None:
    """`hik2mqtt run`, as its own process with default MQTT settings, against amqtt (a real
    broker that never answers an MQTT 5 CONNECT): it falls back to 3.1.1 by itself and a
    simulator's read reaches a subscriber; one warning says so."""
    import signal
    import subprocess
    import sys

    from hik2mqtt.embedded_broker import AmqttBroker
    from tests.conftest import Subscriber, free_port, process_env

    amqtt = AmqttBroker(free_port())
    try:
        sub = Subscriber(amqtt.host, amqtt.port, [f"{prefix}/#"])
        with Simulator(heartbeat=None) as sim:
            env = process_env(amqtt, prefix, {"gate": sim})  # type: ignore[arg-type]
            proc = subprocess.Popen(
                [sys.executable, "-m", "hik2mqtt", "run"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_until(lambda: sub.on(f"{prefix}/bridge/status"), timeout=40)
                assert sim.wait_for_streams(1, timeout=20)
                sim.emit_read("AMQTT 1")
                got = sub.wait_for(f"{prefix}/gate/plate", timeout=10)
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=15)
        sub.close()
    finally:
        amqtt.stop()
    assert json.loads(got[0].payload)["plate"] == "AMQTT 1"
    fallbacks = [line for line in err.splitlines() if "until restart" in line]
    assert len(fallbacks) == 1, err
    assert "no CONNACK" in fallbacks[0]


def test_broker_reconnect_waits_are_jittered_doubling_and_capped() -> None:
    """Each wait before paho reconnects lies in [half, all] of a step doubling from 1 s to
    10 s; two bridges that failed as often wait differently (jitter), so bridges that lost
    one broker together do not knock in the same second."""

    def waits() -> list[float]:
        link = MqttLink(
            settings=MqttSettings.model_validate({"host": "127.0.0.1", "port": 1}),
            will_topic=None,
            subscriptions=[],
            on_connect=lambda: None,
            on_incoming=lambda _m: None,
        )
        seen = []
        for _ in range(6):
            link._jitter_next_wait(link._client)
            seen.append(float(link._client._reconnect_min_delay))
        return seen

    first, second = waits(), waits()
    for seen in (first, second):
        for wait, step in zip(seen, [1, 2, 4, 8, 10, 10], strict=True):
            assert step / 2 <= wait <= step
    assert first != second


def test_protocol_311_setting_never_tries_5(
    broker: AnyBroker, refuses_v5: Stand_in, links: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """PROTOCOL=3.1.1 connects with 3.1.1 from the start, without a warning."""
    link, _ = links(mqtt_settings(refuses_v5, protocol="3.1.1"))
    wait_until(link.connected.is_set)
    assert refuses_v5.levels == [4]
    assert "refused MQTT 5" not in caplog.text


# -- requests and hostile publishers ----------------------------------------------------


def _request(sub: Sub5, topic: str, payload: bytes, *, response: str, correlation: bytes) -> None:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = response
    properties.CorrelationData = correlation
    sub.client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(5)


def test_request_response_topic_and_correlation_reach_the_link(
    broker: AnyBroker, prefix: str, sub5: Any, links: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A command's response topic and correlation data come with it; a wildcard response
    topic or oversized correlation data are dropped (logged), the command itself kept."""
    link, received = links(mqtt_settings(broker), [f"{prefix}/+/trigger"])
    wait_until(link.connected.is_set)
    sub = sub5(f"{prefix}/replies/#")
    topic = f"{prefix}/gate/trigger"
    _request(sub, topic, b"1", response=f"{prefix}/replies/a", correlation=b"id-1")
    _request(sub, topic, b"2", response=f"{prefix}/replies/+", correlation=b"id-2")
    big = b"x" * (MAX_CORRELATION_DATA + 1)
    _request(sub, topic, b"3", response=f"{prefix}/replies/c", correlation=big)
    wait_until(lambda: len(received) == 3)
    assert received == [
        Incoming(topic, b"1", False, f"{prefix}/replies/a", b"id-1"),
        Incoming(topic, b"2", False, None, None),
        Incoming(topic, b"3", False, None, None),
    ]
    assert "wildcard" in caplog.text
    assert f"correlation data over {MAX_CORRELATION_DATA} bytes" in caplog.text
    # An answer goes back with the correlation data, as the requester expects it.
    link.publish(
        f"{prefix}/replies/a", b"{}", props=Props(content_type=JSON, correlation_data=b"id-1")
    )
    wait_until(lambda: sub.on(f"{prefix}/replies/a"))
    assert bytes.fromhex(props_of(sub.on(f"{prefix}/replies/a")[0])["CorrelationData"]) == b"id-1"


def test_response_topic_problems() -> None:
    """Empty, wildcard, NUL and over-long response topics are not answered on."""
    assert response_topic_problem("a/b") is None
    assert response_topic_problem("") is not None
    assert response_topic_problem("a/#") is not None
    assert response_topic_problem("a\x00b") is not None
    assert response_topic_problem("é" * 200) is not None  # 400 bytes of UTF-8


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n % 128, n // 128
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _utf8(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _raw_client(where: AnyBroker) -> socket.socket:
    """A bare MQTT 5 client on a socket, connected (CONNACK read)."""
    sock = socket.create_connection((where.host, where.port), timeout=5)
    variable = _utf8(b"MQTT") + b"\x05\x02\x00\x3c" + _varint(0)
    body = variable + _utf8(f"raw-{uuid.uuid4().hex[:8]}".encode())
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    assert read_mqtt_packet(sock) is not None
    return sock


def _raw_publish(sock: socket.socket, topic: str, payload: bytes, properties: bytes = b"") -> None:
    body = _utf8(topic.encode()) + _varint(len(properties)) + properties + payload
    sock.sendall(b"\x30" + _varint(len(body)) + body)


def test_hostile_publisher_costs_only_itself(broker: AnyBroker, prefix: str, links: Any) -> None:
    """A 300 kB command never reaches the link (MQTT 5 maximum packet size), a response
    topic that is not UTF-8 gets its sender disconnected by the broker; the link stays
    connected and takes the next command."""
    link, received = links(mqtt_settings(broker), [f"{prefix}/+/trigger"])
    wait_until(link.connected.is_set)
    topic = f"{prefix}/gate/trigger"
    hostile = _raw_client(broker)
    _raw_publish(hostile, topic, b"x" * 300_000)
    _raw_publish(hostile, topic, b"bad", b"\x08" + _utf8(b"\xff\xfe/reply"))
    hostile.settimeout(5)
    assert hostile.recv(1024) in (b"", b"\xe0\x02\x81\x00", b"\xe0\x01\x81")  # dropped
    hostile.close()
    polite = _raw_client(broker)
    _raw_publish(polite, topic, b"ok")
    wait_until(lambda: received)
    polite.close()
    assert [m.payload for m in received] == [b"ok"]
    assert link.connected.is_set()


def test_subscriber_for_the_demo(broker: AnyBroker, prefix: str, sub5: Any) -> None:
    """subscriber(): a listening link with the settings' client options (for ``demo``)."""
    got: list[Incoming] = []
    watcher = subscriber(
        mqtt_settings(broker),
        client_id=f"demo-{prefix}",
        topics=[f"{prefix}/#"],
        on_incoming=got.append,
    )
    watcher.start()
    try:
        wait_until(watcher.connected.is_set)
        sender = sub5(f"{prefix}/none")
        big = b"\xff\xd8" + b"j" * 400_000  # pictures: no packet size limit here
        sender.client.publish(f"{prefix}/gate/image/vehicle", big, qos=1).wait_for_publish(5)
        wait_until(lambda: got)
        assert got[0].payload == big
    finally:
        watcher.stop([])


# -- check: the same client builder -----------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_broker(ca: trustme.CA, tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    """Mosquitto over TLS with a certificate from a private CA (no client certificate)."""
    server = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "s.pem", tmp_path / "s.key", tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    own = Broker(extra=f"certfile {cert}\nkeyfile {key}\n")
    own.start()
    yield own, ca_file
    own.close()


def settings_for(
    where: AnyBroker | Stand_in, *, mqtt: dict[str, Any] | None = None, **extra: Any
) -> Settings:
    return Settings.model_validate(
        {
            "mqtt": {"host": where.host, "port": where.port, **(mqtt or {})},
            "web": {"port": 0},
            **extra,
        }
    )


# paho-mqtt 2.2 does not close its socket when a TLS handshake fails; the warning about
# that unclosed socket is paho's, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_check_honours_verify_tls(tls_broker: tuple[Broker, Path]) -> None:
    """`check` builds its client as the bridge does: a broker with a certificate we can't
    verify fails, VERIFY_TLS=false connects (and says so), and so does the right CA."""
    broker, ca_file = tls_broker
    strict, lax, with_ca = Report(), Report(), Report()
    check_broker(settings_for(broker, mqtt={"tls": True}), strict)
    check_broker(settings_for(broker, mqtt={"tls": True, "verify_tls": False}), lax)
    check_broker(settings_for(broker, mqtt={"tls": True, "ca_file": str(ca_file)}), with_ca)
    assert strict.problems == 1
    assert "VERIFY_TLS" in strict.lines[0]
    assert lax.problems == 0
    assert lax.lines[0].startswith("  ok")
    assert "not verified" in lax.lines[0]
    assert with_ca.problems == 0


def test_check_notes_the_311_fallback(refuses_v5: Stand_in) -> None:
    """`check` against a broker that refuses MQTT 5 says the bridge will use 3.1.1."""
    report = Report()
    check_broker(settings_for(refuses_v5), report)
    assert report.problems == 0
    assert any("refused MQTT 5" in line for line in report.lines)
    assert any("connected, MQTT 3.1.1" in line for line in report.lines)


def test_check_reports_a_camera_another_live_bridge_announces(
    broker: AnyBroker, prefix: str, sub5: Any
) -> None:
    """A camera in the retained registry of another bridge that is online is a problem
    for `check`; the same registry of an offline bridge is not."""
    sender = sub5(f"{prefix}/none")
    other = Topics(prefix, "south")

    def retain(topic: str, payload: bytes) -> None:
        sender.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)

    retain(other.camera_registry, json.dumps(["gate", "exit"]).encode())
    retain(other.bridge_status, b"online")
    ours = {"gate": {"host": "127.0.0.1", "password": "x"}}
    try:
        report = Report()
        check_broker(
            settings_for(broker, topic_prefix=prefix, bridge_id="north", cameras=ours), report
        )
        assert report.problems == 1
        assert report.lines[-1].startswith("  FAIL  camera gate: the live bridge south on this")
        retain(other.bridge_status, b"offline")
        report = Report()
        check_broker(
            settings_for(broker, topic_prefix=prefix, bridge_id="north", cameras=ours), report
        )
        assert report.problems == 0
    finally:
        retain(other.camera_registry, b"")
        retain(other.bridge_status, b"")


def test_other_bridges_cameras_from_retained_topics() -> None:
    """Our cameras found in live other bridges' registries, ids or not; ours ignored."""
    topics = Topics("anpr", "north")
    retained = {
        "anpr/bridge/status": b"online",
        "anpr/bridge/cameras": b'["gate"]',
        "anpr/bridge/north/status": b"online",
        "anpr/bridge/north/cameras": b'["gate","exit"]',
        "anpr/bridge/south/status": b"offline",
        "anpr/bridge/south/cameras": b'["exit"]',
        "anpr/bridge/east/status": b"online",
        "anpr/bridge/east/cameras": b"not json",
    }
    assert other_bridges_cameras(topics, retained, {"gate", "exit"}) == [("gate", "(no id)")]


# -- settings ---------------------------------------------------------------------------


def test_settings_bridge_id_protocol_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults: no bridge id, MQTT 5, 60 s expiry; an empty BRIDGE_ID means unset."""
    for name in ("HIK2MQTT_BRIDGE_ID", "HIK2MQTT_MQTT__PROTOCOL", "HIK2MQTT_MQTT__READ_EXPIRY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(None, require_cameras=False)
    assert (settings.bridge_id, settings.mqtt.protocol, settings.mqtt.read_expiry) == (
        None,
        "5",
        60,
    )
    monkeypatch.setenv("HIK2MQTT_BRIDGE_ID", "")
    monkeypatch.setenv("HIK2MQTT_MQTT__PROTOCOL", "3.1.1")
    monkeypatch.setenv("HIK2MQTT_MQTT__READ_EXPIRY", "0")
    settings = load_settings(None, require_cameras=False)
    assert (settings.bridge_id, settings.mqtt.protocol, settings.mqtt.read_expiry) == (
        None,
        "3.1.1",
        0,
    )
    monkeypatch.setenv("HIK2MQTT_BRIDGE_ID", "North-1_a")
    assert load_settings(None, require_cameras=False).bridge_id == "North-1_a"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("HIK2MQTT_BRIDGE_ID", "north/1", "HIK2MQTT_BRIDGE_ID: letters, digits"),
        ("HIK2MQTT_BRIDGE_ID", "nörd", "HIK2MQTT_BRIDGE_ID: letters, digits"),
        ("HIK2MQTT_BRIDGE_ID", "x" * 65, "HIK2MQTT_BRIDGE_ID: letters, digits"),
        ("HIK2MQTT_MQTT__PROTOCOL", "4", "HIK2MQTT_MQTT__PROTOCOL"),
        ("HIK2MQTT_MQTT__READ_EXPIRY", "-1", "HIK2MQTT_MQTT__READ_EXPIRY"),
    ],
)
def test_bad_new_settings_fail_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    """A bad bridge id, protocol or expiry is one line naming the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings(None, require_cameras=False)
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith(problem)


def test_tls_context_is_real_tls(tls_broker: tuple[Broker, Path]) -> None:
    """The TLS broker above really speaks TLS with our CA (the check tests rely on it)."""
    broker, ca_file = tls_broker
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((broker.host, broker.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() is not None


def test_bridge_reads_carry_content_type_user_properties_and_expiry(
    broker: AnyBroker, prefix: str, simulator: Simulator, run_bridge: RunBridge, sub5: Any
) -> None:
    """A read from the bridge arrives with application/json, the user properties camera
    and event_id, and an expiry of READ_EXPIRY; its retained state does not expire."""
    sub = sub5(f"{prefix}/gate/plate", f"{prefix}/gate/state")
    run_bridge(bridge_settings(broker, prefix, {"gate": camera_config(simulator)}))
    assert simulator.wait_for_streams(1)
    simulator.emit_read("PROP 1")
    wait_until(lambda: sub.on(f"{prefix}/gate/plate") and sub.on(f"{prefix}/gate/state"))
    read = sub.on(f"{prefix}/gate/plate")[0]
    got = props_of(read)
    assert got["ContentType"] == JSON
    users = dict(got["UserProperty"])
    assert users["camera"] == "gate"
    assert users["event_id"] == json.loads(read.payload)["event_id"]
    assert 0 < got["MessageExpiryInterval"] <= 60
    state = props_of(sub.on(f"{prefix}/gate/state")[0])
    assert "MessageExpiryInterval" not in state
    assert state["ContentType"] == JSON


def test_trigger_with_a_response_topic_is_answered_there_correlated(
    broker: AnyBroker, prefix: str, simulator: Simulator, run_bridge: RunBridge, sub5: Any
) -> None:
    """A trigger carrying a response topic and correlation data is answered on that topic
    with the same correlation data, and on <command topic>/result as always."""
    sub = sub5(f"replies-{prefix}/#", f"{prefix}/gate/trigger/result", f"{prefix}/bridge/status")
    run_bridge(bridge_settings(broker, prefix, {"gate": camera_config(simulator)}))
    # The bridge subscribes to commands before it says it is online.
    wait_until(lambda: sub.on(f"{prefix}/bridge/status"))
    assert simulator.wait_for_streams(1)
    reply = f"replies-{prefix}/controller"
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = reply
    properties.CorrelationData = b"req-1"
    sub.client.publish(f"{prefix}/gate/trigger", b"", qos=1, properties=properties)
    wait_until(lambda: sub.on(reply))
    answer = sub.on(reply)[0]
    assert bytes.fromhex(props_of(answer)["CorrelationData"]) == b"req-1"
    assert props_of(answer)["ContentType"] == JSON
    assert json.loads(answer.payload)["ok"] is True
    wait_until(lambda: sub.on(f"{prefix}/gate/trigger/result"))
