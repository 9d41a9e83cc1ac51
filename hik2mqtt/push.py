"""Push mode: the camera POSTs each event to the bridge ("alarm server" / HTTP listening).

The camera's HTTP host points at ``http://<bridge>:<port>/hik2mqtt/<camera>`` (or
``.../<camera>/<secret>`` when the camera has a ``PUSH_SECRET``). The body is
``multipart/form-data`` with an ``anpr.xml`` part and pictures named by file name
(``shared/samples/push-*``), or plain ``application/xml`` for events without pictures.

A request is refused with 403, logged, and publishes nothing when its path names no push
camera, its secret is wrong, or it does not come from the camera's address: a forged POST
must not open a gate. Bodies are bounded (Content-Length required, at most the part
limit times four) and slow clients time out. The answer is sent as soon as the body is
parsed; publishing never makes the camera wait.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hik2mqtt.config import CameraSettings
from hik2mqtt.errors import ProtocolError
from hik2mqtt.multipart import MultipartParser, Part, boundary_from_content_type
from hik2mqtt.reads import Output, ReadAssembler

log = logging.getLogger(__name__)

PATH_PREFIX = "/hik2mqtt/"
CLIENT_TIMEOUT = 10.0


@dataclass
class PushCamera:
    name: str
    settings: CameraSettings
    sink: Callable[[Output], None]
    on_seen: Callable[[], None]
    addresses: frozenset[str] = frozenset()

    def resolve(self) -> None:
        try:
            infos = socket.getaddrinfo(self.settings.host, None)
        except OSError as exc:
            log.warning("push camera %s: cannot resolve %s: %s", self.name, self.settings.host, exc)
            return
        self.addresses = frozenset(str(info[4][0]) for info in infos)


class PushListener:
    def __init__(
        self, *, host: str, port: int, cameras: dict[str, PushCamera], max_part_size: int
    ) -> None:
        self.cameras = cameras
        self.max_body = 4 * max_part_size
        self.max_part_size = max_part_size
        for camera in cameras.values():
            camera.resolve()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
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
            return f"path {path[:80]!r} is not /hik2mqtt/<camera>"
        name, _, secret = path[len(PATH_PREFIX) :].partition("/")
        camera = self.cameras.get(name.lower())
        if camera is None:
            return f"no push camera named {name[:40]!r}"
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


def _handler(listener: PushListener) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = CLIENT_TIMEOUT  # slow clients time out

        def log_message(self, format: str, *args: object) -> None:
            log.debug("push: %s", format % args)

        def _answer(self, status: int, reason: str = "") -> None:
            body = reason.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def do_POST(self) -> None:
            client = self.client_address[0]
            found = listener.authorise(self.path.split("?", 1)[0], client)
            if isinstance(found, str):
                log.warning("push from %s refused: %s", client, found)
                self._answer(403, "forbidden")
                return
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                self._answer(411, "Content-Length required")
                return
            if int(length) > listener.max_body:
                log.warning(
                    "push from camera %s refused: %s bytes is too large", found.name, length
                )
                self._answer(413, "too large")
                return
            try:
                body = self.rfile.read(int(length))
            except OSError as exc:
                log.warning("push from camera %s: body not received (%s)", found.name, exc)
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
