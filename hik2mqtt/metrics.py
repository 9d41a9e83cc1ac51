"""The optional metrics and health listener (``HIK2MQTT_METRICS__PORT``).

``/metrics``: Prometheus text (prometheus-client) with reads, pictures, reconnects and
errors per camera, camera and broker connectivity, and reads waiting in the spool.
``/healthz``: 200 only while the broker and every camera are connected, else 503 with
what is wrong, one problem per line.

The listener is served like every listener of the bridge (:mod:`hik2mqtt.serving`:
Starlette responses on uvicorn's h11 protocol, on a thread of its own) with the same
protections: a whole request must arrive within :data:`REQUEST_TIMEOUT` seconds; at most
:data:`MAX_CONNECTIONS` connections, :data:`PER_CLIENT` from one address (more are
answered 503 and closed); clients that hang up or send garbage cost one line at most; a
handler error (a health check that raises) is logged once with its traceback and
answered 500 while the listener serves on. Anything else than ``GET`` or ``HEAD`` is
answered 405, any other path 404.

Starlette and uvicorn are imported when a :class:`MetricsListener` is built, not with
this module: the bridge always counts, but serves the counts only when the port is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from starlette.types import ASGIApp

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
    """The metrics and health listener: binds its port when built (OSError when it
    can't), serves once started."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: Metrics,
        problems: Callable[[], list[str]],
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        per_client: int = PER_CLIENT,
    ) -> None:
        from hik2mqtt.serving import Server  # noqa: PLC0415 - the framework only when on

        self.server = Server(
            _app(metrics, problems),
            name="metrics",
            host=host,
            port=port,
            deadline=request_timeout,
            max_connections=max_connections,
            per_client=per_client,
        )
        self.server.bind()

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()
        log.info("metrics and health on port %d (/metrics, /healthz)", self.port)

    def stop(self) -> None:
        self.server.stop()


def _app(metrics: Metrics, problems: Callable[[], list[str]]) -> ASGIApp:
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.types import Receive, Scope, Send  # noqa: PLC0415

    def health() -> Response:
        found = problems()
        body = ("\n".join(found) if found else "ok") + "\n"
        return Response(body, status_code=503 if found else 200, media_type="text/plain")

    def answer(path: str) -> Response:  # in a worker thread: the callbacks take locks
        if path == "/metrics":
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return health()
        return Response("not found\n", status_code=404, media_type="text/plain")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.method not in ("GET", "HEAD"):
            response = Response(
                "use GET\n", status_code=405, media_type="text/plain", headers={"Allow": "GET"}
            )
        else:
            response = await run_in_threadpool(answer, request.url.path)
        await response(scope, receive, send)

    return app
