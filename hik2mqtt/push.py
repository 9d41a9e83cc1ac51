"""Push mode: the camera POSTs each event to the bridge ("alarm server" / HTTP listening).

The camera's HTTP host points at ``http://<bridge>:<port>/hik2mqtt/<camera>`` (or
``.../<camera>/<secret>`` when the camera has a ``PUSH_SECRET``). The body is
``multipart/form-data`` with an ``anpr.xml`` part and pictures named by file name
(``shared/samples/push-*``), or plain ``application/xml`` for events without pictures.

A request is refused with 403, logged, and publishes nothing when its path names no push
camera, its secret is wrong, or it does not come from the camera's address: a forged POST
must not open a gate. Bodies are bounded (Content-Length required, at most the part
limit times four). The answer is sent as soon as the body is parsed; publishing never
makes the camera wait.

Hostile clients cost only themselves (:mod:`hik2mqtt.guard`): a whole request must arrive
within :data:`REQUEST_TIMEOUT` seconds however it is trickled; at most
:data:`MAX_CONNECTIONS` connections are served at once, :data:`PER_CLIENT` from one
address, and more are answered 503 and closed; a client that hangs up or sends garbage
costs one log line, never a traceback; a bug in a handler is logged once with its
traceback and answered 500, and the listener serves on. The push secret never reaches a
log: paths are logged with it masked.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from hik2mqtt.config import CameraSettings
from hik2mqtt.errors import ProtocolError
from hik2mqtt.guard import GuardedHandler, GuardedServer
from hik2mqtt.logsafe import escape
from hik2mqtt.multipart import MultipartParser, Part, boundary_from_content_type
from hik2mqtt.numbers import CONTENT_LENGTH, read_number
from hik2mqtt.reads import Output, ReadAssembler

log = logging.getLogger(__name__)

PATH_PREFIX = "/hik2mqtt/"
REQUEST_TIMEOUT = 30.0  # seconds for a whole request: line, headers and body
MAX_CONNECTIONS = 64
PER_CLIENT = 4  # connections at once from one address


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
    ) -> None:
        self.cameras = cameras
        self.max_body = 4 * max_part_size
        self.max_part_size = max_part_size
        for camera in cameras.values():
            camera.resolve()
        self._server = GuardedServer(
            (host, port),
            _handler(self),
            name="push",
            max_connections=max_connections,
            per_client=per_client,
            request_timeout=request_timeout,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="push", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("push listener on port %d for %s", self.port, ", ".join(self.cameras))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def authorise(self, path: str, client: str) -> PushCamera | str:
        """The camera a request is from, or the reason it is refused."""
        if not path.startswith(PATH_PREFIX):
            return "the path is not /hik2mqtt/<camera>"  # (not logged: it may hold a secret)
        name, _, secret = path[len(PATH_PREFIX) :].partition("/")
        camera = self.cameras.get(name.lower())
        if camera is None:
            return f"no push camera named {escape(repr(name[:40]))}"
        if client not in camera.addresses:
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
        if not content_type.lower().startswith("multipart/"):
            return [Part(headers={"content-type": content_type}, body=body)]
        parser = MultipartParser(
            boundary_from_content_type(content_type), max_part_size=self.max_part_size
        )
        parser.receive_data(body)
        return parser.end_of_stream()


def _handler(listener: PushListener) -> type[GuardedHandler]:
    class Handler(GuardedHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, reason: str = "") -> None:
            body = reason.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def do_GET(self) -> None:
            self._answer(405, "push events with POST")

        def do_POST(self) -> None:
            client = self.client_address[0]
            found = listener.authorise(self.path.split("?", 1)[0], client)
            if isinstance(found, str):
                log.warning("push from %s refused: %s", client, found)
                self._answer(403, "forbidden")
                return
            lengths = self.headers.get_all("Content-Length") or []
            length = read_number(lengths[0], CONTENT_LENGTH) if len(set(lengths)) == 1 else None
            if length is None or "Transfer-Encoding" in self.headers:
                log.warning(
                    "push from camera %s refused: no single valid Content-Length (%s)",
                    found.name,
                    escape(repr(lengths[:2])),
                )
                self._answer(411, "Content-Length required")
                return
            if length > listener.max_body:
                log.warning(
                    "push from camera %s refused: %d bytes is too large", found.name, length
                )
                self._answer(413, "too large")
                return
            try:
                body = self.rfile.read(length)
            except OSError as exc:
                log.warning(
                    "push from camera %s: body not received (%s)",
                    found.name,
                    "timed out" if isinstance(exc, TimeoutError) else escape(str(exc)),
                )
                self.close_connection = True
                return
            if len(body) < length:
                log.warning(
                    "push from camera %s: the camera hung up after %d of %d bytes",
                    found.name,
                    len(body),
                    length,
                )
                self.close_connection = True
                return
            try:
                parts = listener.parts(self.headers.get("Content-Type", ""), body)
            except ProtocolError as exc:
                log.warning("push from camera %s: bad multipart body: %s", found.name, exc)
                self._answer(400, "bad body")
                return
            self._answer(200)
            found.on_seen()
            assembler = ReadAssembler()
            for part in parts:
                try:
                    found.sink(assembler.handle(part))
                except Exception:  # one bad part must not cost the others
                    log.exception("push from camera %s: error handling a part", found.name)

    return Handler
