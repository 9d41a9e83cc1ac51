"""A throwaway MQTT broker on loopback, for ``hik2mqtt demo`` only (never for ``run``).

Mosquitto when it is on PATH (a child process), otherwise amqtt, a Python broker installed
with hik2mqtt, served from a thread of this process. Either listens on 127.0.0.1 only,
anonymous, keeps nothing on disk, and is gone when :meth:`EmbeddedBroker.stop` returns.

Errors: :class:`EmbeddedBrokerError` when neither comes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0


class EmbeddedBrokerError(Exception):
    """No embedded broker could be started."""


class EmbeddedBroker(Protocol):
    host: str
    port: int
    name: str

    def stop(self) -> None: ...


def answers(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection at host:port within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_to_use(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedBrokerError("no free port on 127.0.0.1")  # pragma: no cover - bind 0 works


def _wait_for(port: int, alive: Any) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if answers(LOOPBACK, port, timeout=0.5):
            return True
        if not alive():
            return False
        time.sleep(0.05)
    return False


class MosquittoBroker:
    """``mosquitto -c <temporary config>`` listening on 127.0.0.1:port."""

    name = "mosquitto"

    def __init__(self, binary: str, port: int) -> None:
        self.host = LOOPBACK
        self.port = port
        self._dir = Path(tempfile.mkdtemp(prefix="hik2mqtt-demo-broker-"))
        conf = self._dir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n"
            "log_dest none\nset_tcp_nodelay true\n"
        )
        self._proc = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not _wait_for(port, lambda: self._proc.poll() is None):
            self.stop()
            raise EmbeddedBrokerError(f"{binary} did not start on {LOOPBACK}:{port}")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


class AmqttBroker:
    """amqtt's broker on its own asyncio loop in a daemon thread of this process."""

    name = "amqtt"

    def __init__(self, port: int) -> None:
        self.host = LOOPBACK
        self.port = port
        # amqtt and its state machine library log every state change at INFO.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="demo-broker", daemon=True
        )
        self._thread.start()
        # Started means listening (amqtt logs an error for a bare TCP probe: none is made).
        if not self._started.wait(START_TIMEOUT) or self._error is not None:
            self.stop()
            raise EmbeddedBrokerError(f"amqtt did not start on {LOOPBACK}:{port}: {self._error}")

    async def _serve(self) -> None:
        # Made on the loop that serves it: amqtt binds its futures to the running loop.
        from amqtt.broker import Broker  # noqa: PLC0415 - only the demo needs it

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{self.port}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        }
                    },
                }
            )
            await broker.start()
        except Exception as exc:  # reported by the constructor
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await broker.shutdown()

    def stop(self) -> None:
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def start(preferred_port: int, *, mosquitto: str | None = None) -> EmbeddedBroker:
    """Start a broker on 127.0.0.1 (``preferred_port`` if free): mosquitto when found on
    PATH (or at ``mosquitto``), else amqtt."""
    binary = mosquitto if mosquitto is not None else shutil.which("mosquitto")
    if binary:
        try:
            return MosquittoBroker(binary, _port_to_use(preferred_port))
        except (OSError, EmbeddedBrokerError) as exc:
            log.warning("mosquitto would not start (%s); using amqtt instead", exc)
    return AmqttBroker(_port_to_use(preferred_port))
