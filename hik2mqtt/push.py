"""Push mode: the camera POSTs each event to the bridge ("alarm server" / HTTP listening).

The camera's HTTP host points at ``http://<bridge>:<port>/hik2mqtt/<camera>`` (or
``.../<camera>/<secret>`` when the camera has a ``PUSH_SECRET``). The body is
``multipart/form-data`` with an ``anpr.xml`` part and pictures named by file name
(``shared/samples/push-*``), or plain ``application/xml`` for events without pictures.

A request is refused with 403, logged, and publishes nothing when its path names no push
camera, its secret is wrong, or it does not come from the camera's address: a forged POST
must not open a gate. Only POST is served (405 otherwise). Bodies are bounded: one single
valid ``Content-Length`` is required and no ``Transfer-Encoding`` (411), at most the part
limit times four (413, decided from the header before a body byte is read; h11 frames the
body by that length, so nothing past it is read). A body that is not valid multipart is
answered 400. The answer is sent as soon as the body is parsed; the parts are then handed
to the camera's sink by one delivery thread (``push-delivery``), in the order the pushes
were answered, off the listener's event loop: publishing never makes a camera wait. At
most :data:`WAITING` answered pushes wait for it; past that a push is answered 503 and the
camera sends it again later. A part whose handling fails is logged with its traceback and
costs only that part.

The listener is served like every listener of the bridge (:mod:`hik2mqtt.serving`:
Starlette requests on uvicorn's h11 protocol, on a thread of its own). Hostile clients
cost only themselves: a whole request must arrive within :data:`REQUEST_TIMEOUT` seconds
however it is trickled; at most :data:`MAX_CONNECTIONS` connections at once,
:data:`PER_CLIENT` from one address, and more are answered 503 and closed; a client that
hangs up, times out or sends garbage costs one log line, never a traceback; a bug in a
handler is logged once with its traceback and answered 500, and the listener serves on.
The push secret never reaches a log: paths are logged with it masked.

Importing this module imports Starlette and uvicorn: the bridge imports it only when a
camera uses push.
"""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hik2mqtt.config import CameraSettings
from hik2mqtt.errors import ProtocolError
from hik2mqtt.logsafe import escape
from hik2mqtt.multipart import Part, parts_of
from hik2mqtt.numbers import CONTENT_LENGTH, read_number
from hik2mqtt.reads import Output, ReadAssembler
from hik2mqtt.serving import Server, client_of, timed_out
from hik2mqtt.supervise import start_thread

log = logging.getLogger(__name__)

PATH_PREFIX = "/hik2mqtt/"
REQUEST_TIMEOUT = 30.0  # seconds for a whole request: line, headers and body
MAX_CONNECTIONS = 64
PER_CLIENT = 4  # connections at once from one address
WAITING = 16  # answered pushes waiting for the delivery thread, at most
STOP_TIMEOUT = 2.0  # seconds the delivery thread has, on stop, for pushes already answered


@dataclass
class PushCamera:
    name: str
    settings: CameraSettings
    sink: Callable[[Output], None]
    on_seen: Callable[[], object]
    addresses: frozenset[str] = frozenset()

    def resolve(self) -> None:
        try:
            infos = socket.getaddrinfo(self.settings.host, None)
        except OSError as exc:
            log.warning(
                "push camera %s: cannot resolve %s: %s",
                self.name,
                self.settings.host,
                escape(str(exc)),
            )
            return
        self.addresses = frozenset(str(info[4][0]) for info in infos)


class PushListener:
    """The push listener: binds its port when built (OSError when it can't), serves once
    started."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        cameras: dict[str, PushCamera],
        max_part_size: int,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        per_client: int = PER_CLIENT,
        waiting: int = WAITING,
    ) -> None:
        self.cameras = cameras
        self.max_body = 4 * max_part_size
        self.max_part_size = max_part_size
        for camera in cameras.values():
            camera.resolve()
        self.server = Server(
            self.asgi,
            name="push",
            host=host,
            port=port,
            deadline=request_timeout,
            max_connections=max_connections,
            per_client=per_client,
        )
        self.deliveries = Deliveries(waiting=waiting)
        self.server.bind()

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.deliveries.start()
        self.server.start()
        log.info("push listener on port %d for %s", self.port, ", ".join(self.cameras))

    def stop(self) -> None:
        self.server.stop()
        self.deliveries.stop()

    def authorise(self, path: str, client: str) -> PushCamera | str:
        """The camera a request is from, or the reason it is refused (may resolve names)."""
        found = self._authorise(path, client, resolve=True)
        assert found is not None
        return found

    def _authorise(self, path: str, client: str, *, resolve: bool) -> PushCamera | str | None:
        """As :meth:`authorise`; None when the camera's name must be resolved again first
        (``resolve=False``: it would block, as DNS does)."""
        if not path.startswith(PATH_PREFIX):
            return "the path is not /hik2mqtt/<camera>"  # (not logged: it may hold a secret)
        name, _, secret = path[len(PATH_PREFIX) :].partition("/")
        camera = self.cameras.get(name.lower())
        if camera is None:
            return f"no push camera named {escape(repr(name[:40]))}"
        if client not in camera.addresses:
            if not resolve:
                return None
            camera.resolve()  # the camera's address may have changed (DHCP)
            if client not in camera.addresses:
                return f"camera {camera.name} is at {sorted(camera.addresses)}, not {client}"
        expected = camera.settings.push_secret
        if expected is not None and not secrets.compare_digest(
            secret.encode(), expected.get_secret_value().encode()
        ):
            return f"camera {camera.name}: wrong or missing secret in the path"
        return camera

    def parts(self, content_type: str, body: bytes) -> list[Part]:
        return parts_of(content_type, body, max_part_size=self.max_part_size)

    # -- serving (on the listener's event loop) ---------------------------------------------

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One request: answered, then its parts handed to the delivery thread."""
        if scope["type"] != "http":
            return
        answer, delivery = await self._handle(Request(scope, receive))
        try:
            if answer is not None:
                await answer(scope, receive, send)
        finally:
            if delivery is not None:  # answered 200: its slot was taken before
                self.deliveries.put(*delivery)

    async def _handle(
        self, request: Request
    ) -> tuple[Response | None, tuple[PushCamera, list[Part]] | None]:
        """The answer (None: the client is gone) and what to deliver after it."""
        client = client_of(request.scope)
        if request.method != "POST":
            return _answer(405, "push events with POST", allow="POST"), None
        path = bytes(request.scope.get("raw_path") or b"").decode("latin-1")
        found = self._authorise(path, client, resolve=False)
        if found is None:  # a lookup can block: not on the event loop
            found = await run_in_threadpool(self.authorise, path, client)
        if isinstance(found, str):
            log.warning("push from %s refused: %s", escape(client), found)
            return _answer(403, "forbidden"), None
        lengths = request.headers.getlist("content-length")
        length = read_number(lengths[0], CONTENT_LENGTH) if len(set(lengths)) == 1 else None
        if length is None or "transfer-encoding" in request.headers:
            log.warning(
                "push from camera %s refused: no single valid Content-Length (%s)",
                found.name,
                escape(repr(lengths[:2])),
            )
            return _answer(411, "Content-Length required"), None
        if length > self.max_body:
            log.warning("push from camera %s refused: %d bytes is too large", found.name, length)
            return _answer(413, "too large"), None
        body = bytearray()
        try:
            # h11 frames the body by its Content-Length: it never gives more than that.
            async for chunk in request.stream():
                body += chunk
                if len(body) > length:  # never, unless the framing changes: read no further
                    break
        except ClientDisconnect:
            if not timed_out(request.scope):  # (a timeout was logged by the listener)
                log.warning(
                    "push from camera %s: the camera hung up after %d of %d bytes",
                    found.name,
                    len(body),
                    length,
                )
            return None, None
        if len(body) != length:
            log.warning(
                "push from camera %s: %d bytes received, %d announced",
                found.name,
                len(body),
                length,
            )
            return _answer(400, "bad body"), None
        content_type = request.headers.get("content-type", "")
        try:
            parts = await run_in_threadpool(self.parts, content_type, bytes(body))
        except ProtocolError as exc:
            log.warning("push from camera %s: bad multipart body: %s", found.name, exc)
            return _answer(400, "bad body"), None
        if not self.deliveries.reserve():
            log.warning(
                "push from camera %s: %d pushes are waiting to be published; answered 503 "
                "(the camera sends it again)",
                found.name,
                self.deliveries.waiting,
            )
            return _answer(503, "busy"), None
        return _answer(200), (found, parts)


def _answer(status: int, reason: str = "", *, allow: str | None = None) -> Response:
    headers = {"Connection": "close"}
    if allow is not None:
        headers["Allow"] = allow
    return Response(reason.encode(), status_code=status, media_type="text/plain", headers=headers)


class Deliveries:
    """Answered pushes, handed to their camera's sink in order by one supervised thread.

    ``reserve()`` takes one of ``waiting`` slots before a push is answered (False: none
    left); ``put()`` queues the answered push in it; the thread frees it once delivered.
    """

    def __init__(self, *, waiting: int) -> None:
        self.capacity = waiting
        self._slots = threading.BoundedSemaphore(waiting)
        self._queue: queue.SimpleQueue[tuple[PushCamera, list[Part]] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._taken = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = start_thread(self._run, name="push-delivery", stop=self._stop)

    def stop(self) -> None:
        """Deliver what was answered (for at most :data:`STOP_TIMEOUT`), then end."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        self._stop.set()

    def reserve(self) -> bool:
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self._taken += 1
        return True

    @property
    def waiting(self) -> int:
        with self._lock:
            return self._taken

    def put(self, camera: PushCamera, parts: list[Part]) -> None:
        self._queue.put((camera, parts))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                _deliver(*item)
            finally:
                with self._lock:
                    self._taken -= 1
                self._slots.release()


def _deliver(camera: PushCamera, parts: list[Part]) -> None:
    try:
        camera.on_seen()
    except Exception:
        log.exception("push from camera %s: error noting it was seen", camera.name)
    assembler = ReadAssembler()
    for part in parts:
        try:
            camera.sink(assembler.handle(part))
        except Exception:  # one bad part must not cost the others
            log.exception("push from camera %s: error handling a part", camera.name)
