"""The optional metrics and health listener (``HIK2MQTT_METRICS__PORT``).

``/metrics``: Prometheus text (prometheus-client) with reads, pictures, reconnects and
errors per camera, camera and broker connectivity, and reads waiting in the spool.
``/healthz``: 200 only while the broker and every camera are connected, else 503 with
what is wrong, one problem per line.

The listener has the push listener's protections (:mod:`hik2mqtt.guard`): a deadline per
request, a connection cap, quiet handling of clients that hang up, and a handler error
logged once with its traceback and answered 500 while the listener serves on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hik2mqtt.guard import GuardedHandler, GuardedServer

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds for a whole request
MAX_CONNECTIONS = 16
PER_CLIENT = 8


class Metrics:
    def __init__(self, *, broker_up: Callable[[], bool], spooled: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.reads = Counter(
            "hik2mqtt_reads", "Plate reads published", ["camera", "source"], registry=self.registry
        )
        self.pictures = Counter(
            "hik2mqtt_pictures", "Pictures received", ["camera"], registry=self.registry
        )
        self.reconnects = Counter(
            "hik2mqtt_camera_disconnects",
            "Times a camera went offline",
            ["camera"],
            registry=self.registry,
        )
        self.errors = Counter(
            "hik2mqtt_errors", "Parts that could not be used", ["camera"], registry=self.registry
        )
        self.camera_up = Gauge(
            "hik2mqtt_camera_up",
            "1 while the camera is connected",
            ["camera"],
            registry=self.registry,
        )
        broker = Gauge(
            "hik2mqtt_broker_up", "1 while connected to the broker", registry=self.registry
        )
        broker.set_function(lambda: float(broker_up()))
        spool = Gauge(
            "hik2mqtt_spooled_reads", "Reads waiting for the broker", registry=self.registry
        )
        spool.set_function(lambda: float(spooled()))


class MetricsListener:
    def __init__(
        self, *, host: str, port: int, metrics: Metrics, problems: Callable[[], list[str]]
    ) -> None:
        self._server = GuardedServer(
            (host, port),
            _handler(metrics, problems),
            name="metrics",
            max_connections=MAX_CONNECTIONS,
            per_client=PER_CLIENT,
            request_timeout=REQUEST_TIMEOUT,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health on port %d (/metrics, /healthz)", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(metrics: Metrics, problems: Callable[[], list[str]]) -> type[GuardedHandler]:
    class Handler(GuardedHandler):
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                found = problems()
                body = ("\n".join(found) if found else "ok").encode() + b"\n"
                self._send(503 if found else 200, body, "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler
