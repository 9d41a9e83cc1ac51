"""The simulated camera on a real socket: ``Simulator`` and its HTTP handler.

It serves, behind Digest auth (``state.py``):

* ``GET /ISAPI/Event/notification/alertStream``: an endless ``multipart/mixed`` body with
  no length and no closing delimiter, HTTP/1.0 and close-delimited like real cameras
  (or HTTP/1.1 chunked), with heartbeats (``videoloss``/``inactive``) and plate reads,
  each followed by two JPEG pictures;
* ``GET /ISAPI/Traffic/MNPR/channels/<n>``: manual recognition, answered with a read and
  its pictures in a multipart body;
* outputs (``/ISAPI/System/IO/outputs/<n>/trigger|status``), the barrier
  (``/ISAPI/Parking/channels/<n>/barrierGate``), the vehicle detection event's linkage,
  the plate list (``POST /ISAPI/Traffic/channels/<n>/vehicleDetect/plates``) and its pictures;
* ``GET /ISAPI/System/deviceInfo``.

The handler reads and changes the camera only through ``CameraState``'s methods and the
stream connections only through ``Streams``.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar, overload

import requests

from hik2mqtt.simulator import templates
from hik2mqtt.simulator.encoders import (
    PUSH_BOUNDARY,
    SimRead,
    encode_read,
    event_part,
    heartbeat_part,
    make_read,
    multipart_reply,
    push_body,
)
from hik2mqtt.simulator.state import CameraState, RequestRecord
from hik2mqtt.simulator.templates import XML_TYPE

log = logging.getLogger(__name__)

STREAM_PATH = "/ISAPI/Event/notification/alertStream"
_MNPR_PATH = re.compile(r"^/ISAPI/Traffic/MNPR/channels/(\d+)$")
_OUTPUT_PATH = re.compile(r"^/ISAPI/System/IO/outputs/(\d+)/(trigger|status)$")
_BARRIER_PATH = re.compile(r"^/ISAPI/Parking/channels/(\d+)/barrierGate$")
_PLATES_PATH = re.compile(r"^/ISAPI/Traffic/channels/(\d+)/vehicleDetect/plates$")
_PLATE_PICTURE = re.compile(r"^/doc/ui/images/plate/(\d+)\.jpg$")
_XML_VALUE = re.compile(rb"<(outputState|ctrlMode)>\s*(\w+)\s*</")

T = TypeVar("T")


class Streams:
    """The open alertStream connections, each a queue its handler drains onto the socket.

    ``None`` on a queue closes that stream. ``writes`` and ``last_write_at``
    (``time.perf_counter()``) count what the handlers have put on their sockets."""

    def __init__(self) -> None:
        self._queues: list[queue.Queue[bytes | None]] = []
        self._changed = threading.Condition()
        self.writes = 0
        self.last_write_at = 0.0

    @property
    def count(self) -> int:
        with self._changed:
            return len(self._queues)

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._queues) >= count, timeout)

    def open(self) -> queue.Queue[bytes | None]:
        stream: queue.Queue[bytes | None] = queue.Queue()
        with self._changed:
            self._queues.append(stream)
            self._changed.notify_all()
        return stream

    def close(self, stream: queue.Queue[bytes | None]) -> None:
        with self._changed:
            self._queues.remove(stream)
            self._changed.notify_all()

    def send(self, item: bytes | None) -> None:
        """Queue ``item`` on every open stream (``None`` closes them)."""
        with self._changed:
            for stream in self._queues:
                stream.put(item)

    def wrote(self) -> None:
        """A handler has just written to its socket."""
        self.last_write_at = time.perf_counter()
        self.writes += 1


class _OfState(Generic[T]):
    """A ``Simulator`` attribute that is its ``CameraState``'s attribute of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _OfState[T]: ...
    @overload
    def __get__(self, obj: Simulator, owner: type) -> T: ...
    def __get__(self, obj: Simulator | None, owner: type) -> T | _OfState[T]:
        if obj is None:
            return self
        value: T = getattr(obj.state, self.name)
        return value

    def __set__(self, obj: Simulator, value: T) -> None:
        setattr(obj.state, self.name, value)


class Simulator:
    """A fake Hikvision ANPR camera on a real socket. Start it, then point the bridge at it."""

    # The camera's state, read (and for a few, set) by tests as the simulator's own attributes.
    username = _OfState[str]()
    password = _OfState[str]()
    realm = _OfState[str]()
    lock_after = _OfState[int | None]()
    failed_logins = _OfState[int]()
    requests = _OfState[list[RequestRecord]]()
    io_supported = _OfState[bool]()
    outputs = _OfState[dict[int, str]]()
    puts = _OfState[list[tuple[str, bytes]]]()
    notify_center = _OfState[bool]()
    plates = _OfState[list[tuple[str, str]]]()
    plate_pictures = _OfState[dict[str, bytes]]()
    mnpr_reply = _OfState[tuple[int, str, bytes] | None]()
    last_mnpr = _OfState[SimRead | None]()

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "admin",
        password: str = "simulator",  # noqa: S107 - the simulator's documented default
        boundary: str = "boundary",
        declared_boundary: str | None = None,
        http10: bool = True,
        chunked: bool = False,
        content_length: bool = True,
        heartbeat: float | None = 10.0,
        interval: float | None = None,
        picture_size: int = 0,
        lock_after: int | None = None,
        tls: ssl.SSLContext | None = None,
        answer_delay: float = 0.0,
    ) -> None:
        self.state = CameraState(username=username, password=password, lock_after=lock_after)
        self.streams = Streams()
        self.boundary = boundary
        self.declared_boundary = declared_boundary or boundary
        self.http10 = http10 and not chunked
        self.chunked = chunked
        self.content_length = content_length
        self.heartbeat = heartbeat
        self.interval = interval
        self.picture_size = picture_size
        self.answer_delay = answer_delay  # a slow camera: seconds before answering a stream
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self.tls = tls is not None
        if tls is not None:  # HTTPS: the handshake happens in each request's thread
            self._server.socket = tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._threads: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> Simulator:
        serve = threading.Thread(target=self._server.serve_forever, name="sim-http", daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.interval:
            auto = threading.Thread(target=self._auto_reads, name="sim-reads", daemon=True)
            auto.start()
            self._threads.append(auto)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.cut_streams()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- control (tests and the CLI) ------------------------------------------------------

    @property
    def stream_count(self) -> int:
        return self.streams.count

    @property
    def writes(self) -> int:
        """Stream writes so far."""
        return self.streams.writes

    @property
    def last_write_at(self) -> float:
        """When the last stream write was on the socket (``time.perf_counter()``)."""
        return self.streams.last_write_at

    def wait_for_streams(self, count: int = 1, timeout: float = 10.0) -> bool:
        return self.streams.wait_for(count, timeout)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are to every open stream."""
        self.streams.send(data)

    def emit_read(self, plate: str | None = None, **options: Any) -> SimRead:
        """Make a read and send it, with its pictures, on every open stream."""
        options.setdefault("picture_size", self.picture_size)
        if self.content_length:
            options.setdefault("marker", f"\r\n--{self.boundary}\r\n".encode())
        read = make_read(plate, **options)
        self.send_raw(encode_read(read, self.boundary, content_length=self.content_length))
        return read

    def emit_event(self, event_type: str, state: str = "active") -> None:
        """Send a non-ANPR event (motion, line crossing...) on every open stream."""
        self.send_raw(
            event_part(event_type, state, self.boundary, content_length=self.content_length)
        )

    def cut_streams(self) -> None:
        """Close every open stream (as a camera reboot would)."""
        self.streams.send(None)

    def count(self, path_prefix: str, *, authorized: bool | None = True) -> int:
        return self.state.count(path_prefix, authorized=authorized)

    def add_plate(self, plate: str) -> str:
        """Poll mode: add a read to the plate list; returns its picName."""
        return self.state.add_plate(plate)

    def plates_xml(self) -> bytes:
        """The plate list as a traffic camera answers it: unsorted, old entries repeated."""
        entries = self.state.plate_entries()
        entries += entries[: len(entries) // 2]  # repeats
        random.shuffle(entries)
        return templates.plate_list_xml(entries)

    def mnpr_body(self) -> tuple[int, str, bytes]:
        """Manual recognition's answer: status, content type, body."""
        if self.state.mnpr_reply is not None:
            return self.state.mnpr_reply
        read = self.state.manual_read(picture_size=self.picture_size)
        token = "MIME_boundary"  # noqa: S105 - a multipart boundary, not a secret
        return 200, f"multipart/form-data; boundary={token}", multipart_reply(read, token)

    def push(self, url: str, read: SimRead, *, boundary: str = PUSH_BOUNDARY) -> int:
        """Push mode: POST a read and its pictures to ``url``, as an ITS camera does
        (``shared/samples/push-anpr-multipart-its-camera.txt``); returns the HTTP status."""
        response = requests.post(
            url,
            data=push_body(read, boundary),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=10,
        )
        return response.status_code

    # -- internals ------------------------------------------------------------------------

    def _auto_reads(self) -> None:
        assert self.interval is not None
        while not self.stopping.wait(self.interval):
            read = self.emit_read()
            log.info("simulator: read %s", read.plate)


def _make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    state = sim.state
    streams = sim.streams

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes
        server_version = "App-webs/"
        sys_version = ""

        def log_message(self, format: str, *args: object) -> None:
            log.debug("simulator: %s", format % args)

        def _send(
            self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def handle(self) -> None:
            if isinstance(self.connection, ssl.SSLSocket):
                try:
                    self.connection.do_handshake()
                except (OSError, ssl.SSLError):
                    return  # a client that doesn't trust us, or isn't speaking TLS
            super().handle()

        def _admit(self, method: str) -> str | None:
            """Record the request; its path when authorised, else None (401 sent)."""
            authorized = state.authorized(method, self.headers.get("Authorization"))
            path = self.path.split("?", 1)[0]
            state.record(method, path, authorized)
            if not authorized:
                self._challenge()
                return None
            return path

        def do_GET(self) -> None:
            path = self._admit("GET")
            if path is None:
                return
            if path == STREAM_PATH:
                self._stream()
            elif _MNPR_PATH.match(path) is not None:
                status, ctype, body = sim.mnpr_body()
                self._send(status, body, ctype)
            elif (out := _OUTPUT_PATH.match(path)) is not None and out.group(2) == "status":
                if not state.io_supported:
                    self._not_supported(path)
                    return
                active = state.output_active(int(out.group(1)))
                self._send(200, templates.io_status(out.group(1), active=active), XML_TYPE)
            elif (pic := _PLATE_PICTURE.match(path)) and (
                picture := state.plate_picture(pic.group(1))
            ) is not None:
                self._send(200, picture, "image/jpeg")
            elif path.startswith("/ISAPI/Traffic/channels/") and path.endswith("/vehicleDetect"):
                self._send(200, templates.VEHICLE_DETECT_XML.encode(), XML_TYPE)
            elif path.startswith("/ISAPI/Event/triggers/vehicledetection-"):
                body = templates.event_trigger(state.notification_methods())
                self._send(200, body, XML_TYPE)
            elif path == "/ISAPI/System/deviceInfo":
                self._send(200, templates.DEVICE_INFO_XML.encode(), XML_TYPE)
            else:
                self._not_supported(path, status=404)

        def _not_supported(self, path: str, *, status: int = 403) -> None:
            self._send(status, templates.response_status(path, ok=False), XML_TYPE)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, 65536))
            path = self._admit("POST")
            if path is None:
                return
            if _PLATES_PATH.match(path) is None:
                self._not_supported(path)
                return
            self._send(200, sim.plates_xml(), XML_TYPE)

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 65536))
            path = self._admit("PUT")
            if path is None:
                return
            value = _XML_VALUE.search(body)
            out = _OUTPUT_PATH.match(path)
            if out is not None and out.group(2) == "trigger" and state.io_supported and value:
                state.set_output(int(out.group(1)), value.group(2).decode())
            elif _BARRIER_PATH.match(path) is None or value is None:
                self._not_supported(path)
                return
            state.record_put(path, body)
            self._send(200, templates.response_status(path, ok=True), XML_TYPE)

        def _challenge(self) -> None:
            nonce, locked = state.refuse(had_credentials=bool(self.headers.get("Authorization")))
            challenge = f'Digest qop="auth", realm="{state.realm}", nonce="{nonce}", stale="FALSE"'
            self._send(
                401, templates.user_check(locked=locked), XML_TYPE, {"WWW-Authenticate": challenge}
            )

        def _write(self, data: bytes) -> None:
            if sim.chunked:
                data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
            self.wfile.write(data)
            streams.wrote()

        def _client_gone(self) -> bool:
            """Whether the client closed its end (seen without writing to it)."""
            sock = self.connection
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if not readable:
                    return False
                if isinstance(sock, ssl.SSLSocket):
                    return sock.pending() == 0 and not sock.recv(1)
                return not sock.recv(1, socket.MSG_PEEK)
            except (OSError, ValueError):
                return True

        def _stream(self) -> None:
            if sim.answer_delay:
                sim.stopping.wait(sim.answer_delay)
            version = "HTTP/1.0" if sim.http10 else "HTTP/1.1"
            head = [
                f"{version} 200 OK",
                "MIME-Version: 1.0",
                f"Content-Type: multipart/mixed; boundary={sim.declared_boundary}",
            ]
            if sim.chunked:
                head.append("Transfer-Encoding: chunked")
            else:
                head.append("Connection: close")
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode())
            self.close_connection = True
            stream = streams.open()
            try:
                while not sim.stopping.is_set():
                    try:
                        item = stream.get(timeout=sim.heartbeat or 0.2)
                    except queue.Empty:
                        if sim.heartbeat:
                            self._write(
                                heartbeat_part(sim.boundary, content_length=sim.content_length)
                            )
                        elif self._client_gone():
                            break
                        continue
                    if item is None:
                        break
                    self._write(item)
            except OSError:
                pass  # the client went away
            finally:
                streams.close(stream)

    return Handler
