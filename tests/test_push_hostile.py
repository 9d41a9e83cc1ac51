"""Hostile clients against the real push and metrics listeners, over real sockets: tricklers,
clients that hang up, too many connections, garbage, hostile numbers, and handler bugs; and
what the listeners promise besides (framing, delivery after the answer, ports in use, the
web framework imported only when a listener is on)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hik2mqtt.bridge import Bridge
from hik2mqtt.config import CameraSettings, Settings
from hik2mqtt.errors import ConfigError
from hik2mqtt.metrics import Metrics, MetricsListener
from hik2mqtt.multipart import Part
from hik2mqtt.push import PushCamera, PushListener
from hik2mqtt.reads import Output, ReadArrived
from hik2mqtt.serving import ConnectionLimit
from hik2mqtt.simulator import make_read
from hik2mqtt.simulator.encoders import PUSH_BOUNDARY, push_body
from tests.conftest import free_port, wait_until

SECRET = "Push-s3cret-4471"
PATH = f"/hik2mqtt/gate/{SECRET}"


@dataclass
class Running:
    listener: PushListener
    outputs: list[Output] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.listener.port

    def reads(self) -> list[str | None]:
        return [o.read.plate for o in self.outputs if isinstance(o, ReadArrived)]


def start_listener(listener_class: type[PushListener] = PushListener, **limits: float) -> Running:
    camera_settings = CameraSettings.model_validate(
        {"host": "127.0.0.1", "password": "unused-pw-1", "mode": "push", "push_secret": SECRET}
    )
    outputs: list[Output] = []
    camera = PushCamera(
        name="gate", settings=camera_settings, sink=outputs.append, on_seen=lambda: None
    )
    listener = listener_class(
        host="127.0.0.1",
        port=0,
        cameras={"gate": camera},
        max_part_size=64 * 1024,
        **limits,  # type: ignore[arg-type]
    )
    listener.start()
    return Running(listener, outputs)


@pytest.fixture
def push() -> Iterator[Running]:
    running = start_listener(request_timeout=1.0, max_connections=6, per_client=3)
    yield running
    running.listener.stop()


def post_read(port: int, plate: str) -> int:
    body = make_read(plate, kinds=()).xml
    reply = requests.post(
        f"http://127.0.0.1:{port}{PATH}",
        data=body,
        headers={"Content-Type": "application/xml"},
        timeout=5,
    )
    return reply.status_code


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (b"" if it resets it)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The bridge's own log messages (not the test's HTTP client's)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("hik2mqtt")]


def no_raw_tracebacks(err: str) -> None:
    assert "Traceback" not in err
    assert "Exception occurred during processing" not in err


def test_connection_limit_counts_per_address_and_in_total() -> None:
    """ConnectionLimit refuses a client past its own share, and anyone past the total."""
    limit = ConnectionLimit(total=3, per_client=2)
    assert limit.acquire("a")
    assert limit.acquire("a")
    assert not limit.acquire("a")
    assert limit.acquire("b")
    assert not limit.acquire("c")  # total reached
    limit.release("a")
    assert limit.acquire("c")
    assert limit.refused == 2


def test_a_trickling_client_is_cut_off_at_the_request_deadline(
    push: Running, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client sending one header byte at a time (each well within a recv timeout) is
    disconnected once the whole request passes its deadline, and the camera's pushes go on."""
    caplog.set_level(logging.DEBUG)
    sock = connect(push.port)
    closed = threading.Event()
    sent = [0]

    def trickle() -> None:
        header = f"POST {PATH} HTTP/1.1\r\nX-Slow: ".encode() + b"a" * 10_000
        for byte in header:
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            sent[0] += 1
            # The pace is the attack: each byte comes well within any per-recv timeout.
            if closed.wait(0.05):
                break

    started = time.monotonic()
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    assert read_all(sock) == b""  # the server closed it without an answer
    elapsed = time.monotonic() - started
    closed.set()
    trickler.join(5)
    sock.close()
    assert 0.9 <= elapsed < 5, elapsed
    assert sent[0] > 10  # it really was trickling when it was cut off
    assert post_read(push.port, "AFTER 1") == 200
    wait_until(lambda: push.reads() == ["AFTER 1"])
    assert any("timed out" in r.getMessage() for r in caplog.records)
    no_raw_tracebacks(capfd.readouterr().err)
    assert all(SECRET not in m for m in ours(caplog))


def test_a_client_that_hangs_up_mid_body_costs_one_line(
    push: Running, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A push whose client hangs up after part of its body publishes nothing, logs one
    warning without traceback, and the next push is served."""
    caplog.set_level(logging.DEBUG)
    body = make_read("HALF", kinds=()).xml
    sock = connect(push.port)
    sock.sendall(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:20]
    )
    sock.close()
    wait_until(lambda: any("hung up after 20 of" in r.getMessage() for r in caplog.records))
    assert post_read(push.port, "WHOLE") == 200
    wait_until(lambda: push.reads() == ["WHOLE"])
    assert not any(r.exc_info for r in caplog.records)
    no_raw_tracebacks(capfd.readouterr().err)


def test_connections_past_the_cap_are_refused_and_the_slots_come_back(
    push: Running, capfd: pytest.CaptureFixture[str]
) -> None:
    """With its per-address share held open, a client's next connection is answered 503
    and closed; another address is still served; a freed slot serves again."""
    held = [connect(push.port) for _ in range(3)]
    for sock in held:
        sock.sendall(b"POST /hik2mqtt/gate/")  # and nothing more for now
    wait_until(lambda: push.listener.server.limit.open == 3)
    extra = connect(push.port)
    assert read_all(extra).startswith(b"HTTP/1.1 503")
    extra.close()
    other = connect(push.port, source="127.0.0.2")
    other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_all(other).startswith(b"HTTP/1.1 405")
    other.close()
    held.pop().close()
    wait_until(lambda: push.listener.server.limit.open == 2)
    assert post_read(push.port, "FREED") == 200
    for sock in held:
        sock.close()
    no_raw_tracebacks(capfd.readouterr().err)


def test_the_total_cap_holds_across_addresses(push: Running) -> None:
    """Past the listener's total (6), a connection from a fresh address is refused too."""
    held = [connect(push.port, source=f"127.0.0.{1 + i // 3}") for i in range(6)]
    for sock in held:
        sock.sendall(b"P")
    wait_until(lambda: push.listener.server.limit.open == 6)
    extra = connect(push.port, source="127.0.0.9")
    assert read_all(extra).startswith(b"HTTP/1.1 503")
    extra.close()
    for sock in held:
        sock.close()
    wait_until(lambda: push.listener.server.limit.open == 0)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",  # a TLS hello
        b"POST " + PATH.encode() + b" HTTP/9.9\r\n\r\n",  # bad version: the line is logged
        b"POST " + PATH.encode() + b"\x1b[31m\r\nforged INFO line HTTP/1.1\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",  # too long
        b"POST "
        + PATH.encode()
        + b" HTTP/1.1\r\nHost: x\r\n"
        + b"X: y\r\n" * 200
        + b"\r\n",  # headers
    ],
    ids=["tls", "version", "control", "long-line", "many-headers"],
)
def test_garbage_gets_an_error_and_one_escaped_line_without_the_secret(
    push: Running,
    raw: bytes,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Garbage is answered 4xx (or closed), logged in escaped lines that never hold the
    push secret, with no raw tracebacks, and the listener serves on."""
    caplog.set_level(logging.DEBUG)
    sock = connect(push.port)
    sock.sendall(raw)
    answer = read_all(sock)
    sock.close()
    assert b" 200 " not in answer[:20]  # an error page, or nothing (HTTP/0.9 has no status)
    assert post_read(push.port, "STILL") == 200
    messages = ours(caplog)
    assert all(SECRET not in m and "\n" not in m and "\x1b" not in m for m in messages)
    no_raw_tracebacks(capfd.readouterr().err)
    wait_until(lambda: push.reads() == ["STILL"])


@pytest.mark.parametrize(
    "lengths",
    [["\xb2"], ["9" * 5000], ["-5"], ["1e3"], ["10", "11"], [" "]],
    ids=["superscript", "huge", "negative", "exponent", "two", "blank"],
)
def test_hostile_content_lengths_are_refused_cleanly(
    push: Running, lengths: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A Content-Length that is not one plain in-range number is answered 411, no traceback."""
    caplog.set_level(logging.DEBUG)
    sock = connect(push.port)
    headers = "".join(f"Content-Length: {v}\r\n" for v in lengths)
    sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{headers}\r\n0123456789".encode("latin-1"))
    answer = read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 411"), answer[:80]
    assert not any(r.exc_info for r in caplog.records)
    assert push.reads() == []


def test_a_bug_in_the_handler_is_logged_once_answered_500_and_the_listener_serves_on(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception while handling a push is logged once with its traceback,
    answered 500, and the next push is served."""
    failures = [1]

    class Buggy(PushListener):
        def parts(self, content_type: str, body: bytes) -> list[Part]:
            if failures:
                failures.pop()
                raise RuntimeError("injected")
            return super().parts(content_type, body)

    running = start_listener(Buggy, request_timeout=2.0)
    try:
        assert post_read(running.port, "FIRST") == 500
        assert post_read(running.port, "SECOND") == 200
        wait_until(lambda: running.reads() == ["SECOND"])
    finally:
        running.listener.stop()
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert "unexpected error" in logged[0].getMessage()
    assert SECRET not in logged[0].getMessage()
    no_raw_tracebacks(capfd.readouterr().err)


def test_the_metrics_listener_survives_a_failing_health_check_and_hang_ups(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """/healthz whose check raises is answered 500 and logged once with its traceback;
    clients that hang up cost nothing; /metrics and /healthz are served afterwards."""
    calls = [0]

    def problems() -> list[str]:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("injected")
        return []

    metrics = Metrics(broker_up=lambda: True, spooled=lambda: 0)
    listener = MetricsListener(host="127.0.0.1", port=0, metrics=metrics, problems=problems)
    listener.start()
    base = f"http://127.0.0.1:{listener.port}"
    try:
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 500
        for _ in range(3):
            sock = connect(listener.port)
            sock.sendall(b"GET /metr")
            sock.close()
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert b"hik2mqtt_broker_up" in requests.get(f"{base}/metrics", timeout=5).content
    finally:
        listener.stop()
    assert len([r for r in caplog.records if r.exc_info]) == 1
    no_raw_tracebacks(capfd.readouterr().err)


def raw_exchange(port: int, raw: bytes) -> bytes:
    sock = connect(port)
    sock.sendall(raw)
    answer = read_all(sock)
    sock.close()
    return answer


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Transfer-Encoding: chunked\r\n", b"411"),  # h11 would read it; we refuse it
        ("Transfer-Encoding: gzip\r\n", b"411"),  # h11 refuses it
        ("Content-Length: 10\r\nTransfer-Encoding: chunked\r\n", b"411"),
        ("Content-Length: 99999999\r\n", b"413"),  # past 4 x the part limit: no byte read
        ("Content-Length: 99999999999999999999999\r\n", b"411"),  # not a number we take
    ],
    ids=["chunked", "gzip", "both", "too-large", "out-of-range"],
)
def test_bodies_are_framed_by_one_content_length_and_bounded_before_reading(
    push: Running, headers: str, status: bytes
) -> None:
    """Without one plain Content-Length, or with any Transfer-Encoding, a push is answered
    411; past the body limit 413, from the header alone (no body is sent here)."""
    answer = raw_exchange(push.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert post_read(push.port, "AFTER") == 200
    wait_until(lambda: push.reads() == ["AFTER"])


def test_only_post_from_the_camera_with_its_secret_is_served(push: Running) -> None:
    """GET is answered 405; a wrong secret, an unknown camera or another path 403."""
    assert raw_exchange(push.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405")
    for path in ("/hik2mqtt/gate/wrong", "/hik2mqtt/door/" + SECRET, "/other"):
        raw = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx".encode()
        assert raw_exchange(push.port, raw).startswith(b"HTTP/1.1 403"), path
    assert push.reads() == []


def test_a_body_trickled_past_the_deadline_costs_one_line(
    push: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A push whose headers came but whose body trickles is cut off at the deadline, with
    one 'timed out' line and no second line about a hang-up."""
    caplog.set_level(logging.INFO)
    sock = connect(push.port)
    sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.05):
            try:
                sock.send(b"x")
            except OSError:
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    assert read_all(sock) == b""
    stop.set()
    trickler.join(5)
    sock.close()
    wait_until(lambda: any("timed out" in m for m in ours(caplog)))
    assert not any("hung up" in m for m in ours(caplog))
    assert push.reads() == []


def test_parts_are_delivered_after_the_answer_off_the_event_loop_one_failure_costs_one_part(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The camera has its 200 while the sink is still blocked (the listener serves other
    requests meanwhile); a part whose handling raises is logged with its traceback and the
    push's other parts are delivered."""
    release = threading.Event()
    delivered: list[Output] = []
    failed = [False]

    def sink(output: Output) -> None:
        release.wait(10)
        if not failed[0]:
            failed[0] = True
            raise RuntimeError("injected")
        delivered.append(output)

    running = start_listener(request_timeout=5.0)
    camera = running.listener.cameras["gate"]
    camera.sink = sink
    try:
        read = make_read("PICS")
        reply = requests.post(
            f"http://127.0.0.1:{running.port}{PATH}",
            data=push_body(read),
            headers={"Content-Type": f"multipart/form-data; boundary={PUSH_BOUNDARY}"},
            timeout=5,
        )
        assert reply.status_code == 200
        assert delivered == []  # answered while the sink is still blocked
        assert raw_exchange(running.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 405"
        )
        release.set()
        wait_until(lambda: len(delivered) == len(read.pictures))  # all but the failed one
    finally:
        release.set()
        running.listener.stop()
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert "error handling a part" in logged[0].getMessage()


def test_pushes_past_the_waiting_ones_are_answered_busy() -> None:
    """While the sink is stuck, a push past the waiting limit is answered 503 (the camera
    sends it again) and nothing is queued for it; once unstuck, pushes are served again."""
    release = threading.Event()
    delivered: list[str | None] = []

    def sink(output: Output) -> None:
        release.wait(10)
        if isinstance(output, ReadArrived):
            delivered.append(output.read.plate)

    running = start_listener(request_timeout=5.0, waiting=1)
    running.listener.cameras["gate"].sink = sink
    try:
        assert post_read(running.port, "ONE") == 200
        assert post_read(running.port, "TWO") == 503
        release.set()
        wait_until(lambda: delivered == ["ONE"])
        wait_until(lambda: running.listener.deliveries.waiting == 0)
        assert post_read(running.port, "THREE") == 200
        wait_until(lambda: delivered == ["ONE", "THREE"])
    finally:
        release.set()
        running.listener.stop()


def test_a_port_in_use_is_one_configuration_line() -> None:
    """A push or metrics port that is taken fails the bridge as it is built, with one line
    naming the variable; a listener already bound gives its port back."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        camera = {"host": "127.0.0.1", "password": "unused-pw-1", "mode": "push"}
        base = {"mqtt": {"host": "127.0.0.1", "port": 1}, "cameras": {"gate": camera}}
        settings = Settings.model_validate({**base, "listen": {"host": "127.0.0.1", "port": port}})
        with pytest.raises(ConfigError) as failure:
            Bridge(settings=settings)
        assert failure.value.problems == [
            f"HIK2MQTT_LISTEN__PORT: cannot listen on 127.0.0.1:{port}: Address already in use"
        ]
        push_port = free_port()
        settings = Settings.model_validate(
            {
                **base,
                "listen": {"host": "127.0.0.1", "port": push_port},
                "metrics": {"host": "127.0.0.1", "port": port},
            }
        )
        with pytest.raises(ConfigError) as failure:
            Bridge(settings=settings)
        assert failure.value.problems == [
            f"HIK2MQTT_METRICS__PORT: cannot listen on 127.0.0.1:{port}: Address already in use"
        ]
    with socket.socket() as again:  # the push listener, bound first, let its port go
        again.bind(("127.0.0.1", push_port))


def test_a_stream_bridge_without_metrics_imports_no_web_framework() -> None:
    """Starlette and uvicorn are imported only by a listener that is on: a bridge of stream
    cameras without metrics or page is built without them."""
    code = (
        "import sys\n"
        "from hik2mqtt.bridge import Bridge\n"
        "from hik2mqtt.config import Settings\n"
        "camera = {'host': '127.0.0.1', 'password': 'unused-pw-1'}\n"
        "settings = Settings.model_validate({'mqtt': {'host': '127.0.0.1', 'port': 1},"
        " 'cameras': {'gate': camera}, 'web': {'port': 0}})\n"
        "Bridge(settings=settings)\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules} & {'starlette', 'uvicorn'}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIK2MQTT_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_the_metrics_listener_answers_its_two_paths_and_refuses_the_rest() -> None:
    """/metrics is Prometheus text, /healthz names the problems with 503, any other path
    is 404 and any other method 405."""
    metrics = Metrics(broker_up=lambda: False, spooled=lambda: 0)
    listener = MetricsListener(
        host="127.0.0.1", port=0, metrics=metrics, problems=lambda: ["broker: offline"]
    )
    listener.start()
    base = f"http://127.0.0.1:{listener.port}"
    try:
        scraped = requests.get(f"{base}/metrics?x=1", timeout=5)
        assert scraped.status_code == 200
        assert scraped.headers["content-type"] == CONTENT_TYPE_LATEST
        assert b"hik2mqtt_broker_up 0.0" in scraped.content
        health = requests.get(f"{base}/healthz", timeout=5)
        assert (health.status_code, health.text) == (503, "broker: offline\n")
        assert requests.get(f"{base}/other", timeout=5).status_code == 404
        assert requests.post(f"{base}/metrics", timeout=5).status_code == 405
    finally:
        listener.stop()
