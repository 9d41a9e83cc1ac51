"""`hik2mqtt demo` on a machine with no broker, and `run`, which never brings its own."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hik2mqtt import embedded_broker
from hik2mqtt.cli import _broker_address
from tests.conftest import Broker, ExternalBroker, Subscribe, free_port, wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
COMPOSE_ENV = "COMPOSE_PROFILES=bridge\nHIK2MQTT_MQTT__HOST=mosquitto\n"


def path_without_mosquitto() -> str:
    """PATH with every folder holding a `mosquitto` left out."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and not (Path(f) / "mosquitto").exists())


def demo_env(*, path: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HIK2MQTT_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["PATH"] = path
    env.update(settings)
    return env


class Lines:
    """A child's output, read line by line as it comes."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def first(self, text: str) -> str | None:
        return next((line for line in self.lines if text in line), None)

    def join(self) -> str:
        """Everything the child wrote, once it has closed its output."""
        self._thread.join(timeout=10)
        return "".join(self.lines)


@contextmanager
def demo(
    *args: str, env: dict[str, str], cwd: Path
) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hik2mqtt", "demo", "--interval", "1", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, Lines(proc.stdout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=10)


@pytest.mark.parametrize("broker_kind", ["amqtt", "mosquitto"])
def test_demo_brings_its_own_broker_when_none_answers(broker_kind: str, tmp_path: Path) -> None:
    """With no broker at the default address and no host chosen, the demo starts one on
    loopback (amqtt, or mosquitto when it is on PATH), says so, prints a read within 10 s,
    ignores a compose .env in the folder, and leaves no broker behind after Ctrl-C."""
    (tmp_path / ".env").write_text(COMPOSE_ENV)
    port = free_port()  # the default host, on a port where nothing answers
    path = path_without_mosquitto()
    if broker_kind == "mosquitto":
        path = os.pathsep.join([str(Path(MOSQUITTO).parent), path])
    env = demo_env(path=path, HIK2MQTT_MQTT__PORT=str(port))
    started = time.monotonic()
    with demo(env=env, cwd=tmp_path) as (proc, out):
        wait_until(lambda: out.first("anpr/demo/plate {"), timeout=10)
        assert time.monotonic() - started < 10
        assert embedded_broker.answers("127.0.0.1", port)
        assert stop(proc) == 0
        text = out.join()
    assert f"started an embedded one ({broker_kind}) on 127.0.0.1:{port}" in text
    assert "ignoring ./.env" in text
    assert "Traceback" not in text
    assert '"plate": ' in (out.first("anpr/demo/plate {") or "")
    assert not embedded_broker.answers("127.0.0.1", port)


@pytest.mark.parametrize("how", ["environment", "env-file", "--broker"])
def test_demo_never_replaces_a_broker_the_user_chose(how: str, tmp_path: Path) -> None:
    """A broker host chosen by the user (environment, --env-file, --broker) that doesn't
    answer is an error naming where the host came from; no broker is started for it."""
    port = free_port()
    env = demo_env(path=os.environ.get("PATH", ""))
    args: list[str] = []
    if how == "environment":
        env.update(HIK2MQTT_MQTT__HOST="127.0.0.1", HIK2MQTT_MQTT__PORT=str(port))
        source = "HIK2MQTT_MQTT__HOST from the environment"
    elif how == "env-file":
        settings = tmp_path / "demo.env"
        settings.write_text(f"HIK2MQTT_MQTT__HOST=127.0.0.1\nHIK2MQTT_MQTT__PORT={port}\n")
        args = ["--env-file", str(settings)]
        source = f"HIK2MQTT_MQTT__HOST from {settings}"
    else:
        args = ["--broker", f"127.0.0.1:{port}"]
        source = "--broker"
    with demo(*args, env=env, cwd=tmp_path) as (proc, out):
        assert proc.wait(timeout=20) == 1
        text = out.join()
    assert f"cannot reach the MQTT broker at 127.0.0.1:{port} ({source})" in text
    assert "embedded" not in text
    assert "Traceback" not in text


def test_demo_uses_a_broker_that_answers(
    broker: Broker | ExternalBroker, subscribe: Subscribe, tmp_path: Path
) -> None:
    """A broker answering at the configured address is used as it is: the reads reach it
    and no embedded broker is started."""
    sub = subscribe("anpr/demo/plate")
    env = demo_env(
        path=os.environ.get("PATH", ""),
        HIK2MQTT_MQTT__HOST=broker.host,
        HIK2MQTT_MQTT__PORT=str(broker.port),
    )
    with demo(env=env, cwd=tmp_path) as (proc, out):
        sub.wait_for("anpr/demo/plate", timeout=10)
        assert stop(proc) == 0
        text = out.join()
    assert "embedded" not in text
    assert f"on {broker.host}:{broker.port} (HIK2MQTT_MQTT__HOST from the environment)" in text


def test_run_never_starts_a_broker_and_says_how_to_get_one(tmp_path: Path) -> None:
    """`hik2mqtt run` with no broker keeps retrying without starting one, and its log
    says how to get a broker."""
    port = free_port()
    env = demo_env(
        path=os.environ.get("PATH", ""),
        HIK2MQTT_MQTT__PORT=str(port),
        HIK2MQTT_CAMERAS__GATE__HOST="127.0.0.1",
        HIK2MQTT_CAMERAS__GATE__PORT=str(free_port()),
        HIK2MQTT_CAMERAS__GATE__PASSWORD="not-used",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hik2mqtt", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = Lines(proc.stdout)
        line = wait_until(lambda: out.first("unreachable"), timeout=20)
        assert not embedded_broker.answers("127.0.0.1", port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        text = out.join()
        assert proc.stdout is not None
        proc.stdout.close()
    assert "apt-get install mosquitto" in line
    assert "HIK2MQTT_MQTT__HOST" in line
    assert "embedded" not in text


def test_amqtt_broker_keeps_retained_messages_and_delivers_wills() -> None:
    """The Python broker the demo falls back to does what the bridge relies on with paho
    2.x: QoS 1, a retained message for a late subscriber, and a last will on a lost client."""
    broker = embedded_broker.start(free_port(), mosquitto="")
    assert broker.name == "amqtt"
    got: list[tuple[str, bytes, bool]] = []
    clients: list[paho.Client] = []
    try:
        bridge = paho.Client(CallbackAPIVersion.VERSION2, client_id="bridge")
        bridge.will_set("t/status", "offline", qos=1, retain=True)
        clients.append(bridge)
        bridge.connect(broker.host, broker.port)
        bridge.loop_start()
        bridge.publish("t/status", "online", qos=1, retain=True).wait_for_publish(5)

        watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
        clients.append(watcher)
        watcher.on_message = lambda _c, _u, m: got.append((m.topic, bytes(m.payload), m.retain))
        watcher.on_connect = lambda c, *_: c.subscribe("t/#", qos=1)
        watcher.connect(broker.host, broker.port)
        watcher.loop_start()
        wait_until(lambda: ("t/status", b"online", True) in got)
        bridge.publish("t/plate", "AB12CDE", qos=1).wait_for_publish(5)
        wait_until(lambda: ("t/plate", b"AB12CDE", False) in got)

        bridge.loop_stop()
        sock = bridge.socket()
        assert sock is not None
        sock.close()  # lost without a DISCONNECT: the broker sends the will
        wait_until(lambda: any(t == "t/status" and p == b"offline" for t, p, _ in got))
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
        broker.stop()
    assert not embedded_broker.answers(broker.host, broker.port)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("broker.lan", ("broker.lan", None)),
        ("broker.lan:8883", ("broker.lan", 8883)),
        ("[::1]:1884", ("::1", 1884)),
        ("::1", ("::1", None)),
    ],
)
def test_broker_option_reads_host_and_port(value: str, expected: tuple[str, int | None]) -> None:
    """--broker takes HOST, HOST:PORT or [IPv6]:PORT."""
    assert _broker_address(value) == expected


@pytest.mark.parametrize("value", ["broker:0", "broker:70000", "broker:１８８３", ":1883", "h:8x"])
def test_broker_option_refuses_bad_ports_and_hosts(value: str) -> None:
    """--broker refuses a port outside 1-65535, non-ASCII digits and an empty host."""
    with pytest.raises(argparse.ArgumentTypeError):
        _broker_address(value)


def test_version_is_the_installed_distributions() -> None:
    """`hik2mqtt --version` prints the version of the installed distribution."""
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "hik2mqtt", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"hik2mqtt {version('hik2mqtt')}"
