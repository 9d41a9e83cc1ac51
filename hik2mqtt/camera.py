"""HTTP to one camera: the event stream, commands, Digest auth, reconnects.

requests/urllib3 errors are translated here into :mod:`hik2mqtt.errors`. The stream is
read with urllib3's ``read1``, which returns whatever has arrived, so a part is parsed
(and published) the moment its last byte is on the socket; ``iter_content`` with a chunk
size would hold it back until more bytes come.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import ssl
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.auth import HTTPDigestAuth

from hik2mqtt.backoff import auth_delay, reconnect_delay
from hik2mqtt.config import CameraSettings
from hik2mqtt.errors import (
    AuthError,
    CameraError,
    CameraHTTPError,
    CameraUnreachable,
    DecodeError,
    ProtocolError,
    StreamIdle,
)
from hik2mqtt.events import parse_xml
from hik2mqtt.multipart import MultipartParser, Part, boundary_from_content_type
from hik2mqtt.reads import Output, ReadAssembler

log = logging.getLogger(__name__)

STREAM_PATH = "/ISAPI/Event/notification/alertStream"
MNPR_PATH = "/ISAPI/Traffic/MNPR/channels/{channel}"
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
READ_SIZE = 256 * 1024
ERROR_BODY_LIMIT = 64 * 1024
DRAIN_ON_STOP = 1.0  # seconds a stopping stream may take to hand on what had arrived
QUIET_ON_STOP = 0.1  # a stopping stream ends once nothing has come for this long


@dataclass(frozen=True, slots=True)
class IsapiStatus:
    """An ISAPI ``ResponseStatus`` (XML or JSON)."""

    code: int | None
    text: str | None
    sub_status: str | None

    @property
    def ok(self) -> bool:
        return self.code in (None, 0, 1)

    def describe(self) -> str:
        parts = [p for p in (self.text, self.sub_status) if p]
        return " / ".join(parts) if parts else f"statusCode {self.code}"


def parse_response_status(body: bytes) -> IsapiStatus | None:
    """The ResponseStatus in a camera's answer, if it holds one."""
    text = body.lstrip()
    if text[:1] == b"{":
        import json  # noqa: PLC0415 - only JSON answers need it

        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or "statusCode" not in doc:
            return None
        code = doc.get("statusCode")
        return IsapiStatus(
            code=code if isinstance(code, int) else None,
            text=str(doc.get("statusString") or "") or None,
            sub_status=str(doc.get("subStatusCode") or "") or None,
        )
    try:
        root, node = parse_xml(body)
    except DecodeError:
        return None
    if root != "ResponseStatus":
        return None
    code_text = str(node.get("statusCode") or "").strip()
    return IsapiStatus(
        code=int(code_text) if code_text.isdigit() else None,
        text=(str(node.get("statusString") or "").strip() or None),
        sub_status=(str(node.get("subStatusCode") or "").strip() or None),
    )


def _auth_error(body: bytes) -> AuthError:
    """An AuthError from a 401 body; Hikvision's ``userCheck`` tells about locked accounts."""
    locked, unlock = False, None
    try:
        root, node = parse_xml(body)
    except DecodeError:
        root, node = "", {}
    if root == "userCheck":
        locked = str(node.get("lockStatus") or "").strip().lower() == "lock"
        unlock_text = str(node.get("unlockTime") or "").strip()
        unlock = int(unlock_text) if unlock_text.isdigit() else None
    message = "the camera refused the user name or password"
    if locked:
        message += f"; the account is locked for {unlock if unlock is not None else '?'} s"
    return AuthError(message, locked=locked, unlock_time=unlock)


def _reason(exc: BaseException) -> str:
    """A short reason for a network error, without URLs (which could carry user names)."""
    seen: set[int] = set()
    while exc.__context__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror | ConnectionRefusedError | TimeoutError):
            break
        exc = exc.__context__
    text = (
        str(exc).split(": ", 1)[-1] if isinstance(exc, urllib3.exceptions.HTTPError) else str(exc)
    )
    return f"{type(exc).__name__}: {text}"[:200]


@dataclass(frozen=True, slots=True)
class CameraReply:
    status: int
    content_type: str
    body: bytes


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket under a urllib3 response. For a close-delimited (HTTP/1.0) answer
    http.client has already let go of the connection's ``sock``; the response's reader
    still holds it."""
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class EventStream:
    """An open alertStream response. ``read`` returns what has arrived."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self._raw: urllib3.response.HTTPResponse = response.raw
        self.content_type = response.headers.get("Content-Type", "")
        self.boundary = boundary_from_content_type(self.content_type)
        self._aborted = False

    def read(self) -> bytes:
        try:
            data = self._raw.read1(READ_SIZE)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise StreamIdle("no byte within the idle timeout") from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._aborted:
                raise CameraUnreachable("stream closed by the bridge") from exc
            raise CameraUnreachable(f"stream lost ({_reason(exc)})") from exc
        if not data:
            raise CameraUnreachable("the camera closed the stream")
        return data

    def buffered(self) -> int:
        """Bytes received on the socket and not yet read (Linux FIONREAD), 0 if unknown."""
        sock = _socket_of(self._raw)
        if sock is None:
            return 0
        try:
            raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        return int.from_bytes(raw, sys.byteorder) + pending

    def abort(self) -> None:
        """End the stream from another thread (for shutdown).

        ``SHUT_RD`` wakes a blocked ``read``; bytes the camera had already sent are still
        read before the end of the stream, so no read it fully sent is lost.
        """
        self._aborted = True
        sock = _socket_of(self._raw)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)

    def close(self) -> None:
        self._response.close()


class CameraClient:
    """HTTP(S) with Digest auth to one camera. One instance per thread that uses it."""

    def __init__(self, *, name: str, settings: CameraSettings) -> None:
        self.name = name
        self.settings = settings
        self._session = requests.Session()
        # Cameras live on the local network: no proxies or .netrc from the environment.
        self._session.trust_env = False
        verify = settings.verify_tls
        self._session.verify = str(settings.ca_file) if settings.ca_file and verify else verify
        if settings.https and not verify:
            # Said once in our own words (the log line below) rather than on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("camera %s: its HTTPS certificate is not verified (VERIFY_TLS=false)", name)
        self._session.auth = HTTPDigestAuth(settings.username, settings.password.get_secret_value())

    def _get(self, path: str, *, read_timeout: float) -> requests.Response:
        url = self.settings.base_url + path
        try:
            return self._session.get(
                url, stream=True, timeout=(CONNECT_TIMEOUT, read_timeout), allow_redirects=False
            )
        except requests.exceptions.SSLError as exc:
            raise CameraUnreachable(f"TLS error ({_reason(exc)})") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise CameraUnreachable(f"no connection within {CONNECT_TIMEOUT:.0f} s") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise CameraUnreachable(f"no answer within {read_timeout:.0f} s") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise CameraUnreachable(f"cannot connect ({_reason(exc)})") from exc

    @staticmethod
    def _read_limited(response: requests.Response, limit: int) -> bytes:
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise CameraHTTPError(
                        f"answer longer than {limit} bytes", status=response.status_code
                    )
                chunks.append(chunk)
        except requests.exceptions.RequestException as exc:
            raise CameraUnreachable(f"answer cut off ({_reason(exc)})") from exc
        finally:
            response.close()
        return b"".join(chunks)

    def _check(self, response: requests.Response, what: str) -> None:
        if 200 <= response.status_code < 300:
            return
        body = self._read_limited(response, ERROR_BODY_LIMIT)
        if response.status_code == 401:
            raise _auth_error(body)
        status = parse_response_status(body)
        detail = status.describe() if status else (response.reason or "").strip()
        raise CameraHTTPError(
            f"{what}: HTTP {response.status_code} {detail}".rstrip(),
            status=response.status_code,
            sub_status=status.sub_status if status else None,
        )

    def open_stream(self) -> EventStream:
        response = self._get(STREAM_PATH, read_timeout=self.settings.idle_timeout)
        self._check(response, "alertStream")
        stream = EventStream(response)
        if not stream.content_type.lower().startswith("multipart/"):
            stream.close()
            raise CameraHTTPError(
                f"alertStream answered {stream.content_type!r}, not multipart",
                status=response.status_code,
            )
        return stream

    def request(self, path: str, *, limit: int) -> CameraReply:
        """A GET whose whole answer is read (at most ``limit`` bytes)."""
        response = self._get(path, read_timeout=COMMAND_TIMEOUT)
        self._check(response, path)
        body = self._read_limited(response, limit)
        return CameraReply(
            status=response.status_code,
            content_type=response.headers.get("Content-Type", ""),
            body=body,
        )

    def put(self, path: str, body: bytes, *, content_type: str) -> CameraReply:
        """A PUT (commands: outputs, barrier); the answer is read whole."""
        return self.send("PUT", path, body, content_type=content_type)

    def send(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        content_type: str,
        limit: int = ERROR_BODY_LIMIT,
    ) -> CameraReply:
        """A request with a body (PUT, POST); the answer is read whole (at most ``limit``)."""
        url = self.settings.base_url + path
        try:
            response = self._session.request(
                method,
                url,
                data=body,
                headers={"Content-Type": content_type},
                stream=True,
                timeout=(CONNECT_TIMEOUT, COMMAND_TIMEOUT),
                allow_redirects=False,
            )
        except requests.exceptions.Timeout as exc:
            raise CameraUnreachable(f"no answer within {COMMAND_TIMEOUT:.0f} s") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise CameraUnreachable(f"cannot connect ({_reason(exc)})") from exc
        self._check(response, path)
        return CameraReply(
            status=response.status_code,
            content_type=response.headers.get("Content-Type", ""),
            body=self._read_limited(response, limit),
        )

    def close(self) -> None:
        self._session.close()


class AuthGate:
    """Shared by one camera's stream and command threads: after a refused login, no one
    tries again before the wait is over (Hikvision locks an account after about five)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0
        self.failures = 0

    def refused(self, exc: AuthError) -> float:
        """Record a refusal; return how long to wait before the next login."""
        with self._lock:
            self.failures += 1
            delay = auth_delay(self.failures, unlock_time=exc.unlock_time)
            self._until = self._clock() + delay
            return delay

    def accepted(self) -> None:
        with self._lock:
            self.failures = 0
            self._until = 0.0

    def refused_by(self, camera: str, exc: AuthError) -> float:
        """Record a refusal and say so in the log; return the wait before the next login."""
        delay = self.refused(exc)
        log.error(
            "camera %s: %s; next login attempt in %.0f s "
            "(check HIK2MQTT_CAMERAS__%s__USERNAME and __PASSWORD)",
            camera,
            exc,
            delay,
            camera.upper(),
        )
        return delay

    def remaining(self) -> float:
        """Seconds before a login may be tried again (0 when it may be now)."""
        with self._lock:
            return max(0.0, self._until - self._clock())


class StreamWorker:
    """Keeps one camera's alertStream open and hands what it means to ``sink``.

    Runs in its own thread (:meth:`run`). ``on_status(True)`` when a stream opens,
    ``on_status(False)`` when the camera cannot be reached; a quiet reopen after the
    idle timeout, or after the camera closed a stream, does not report offline unless the
    reopen fails.
    """

    def __init__(
        self,
        *,
        client: CameraClient,
        sink: Callable[[Output], None],
        on_status: Callable[[bool], None],
        stop: threading.Event,
        max_part_size: int,
        reconnect: Callable[[int], float] = reconnect_delay,
        auth: AuthGate | None = None,
    ) -> None:
        self.client = client
        self.name = client.name
        self._sink = sink
        self._on_status = on_status
        self._stop = stop
        self._max_part_size = max_part_size
        self._reconnect = reconnect
        self.auth = auth or AuthGate()
        self._current: EventStream | None = None
        self._lock = threading.Lock()
        self._delivered = False
        self._last_data = 0.0
        self.last_delay: float = 0.0  # the last wait before a retry, for observers and tests

    def stop(self) -> None:
        """Stop at once (no waiting for what the camera has sent; see :meth:`quiet`)."""
        self._stop.set()
        self.abort()

    def begin_stop(self) -> None:
        """Stop opening streams; the open one is still read until :meth:`abort`."""
        self._stop.set()

    def quiet(self) -> bool:
        """Whether everything the camera sent has been read (nothing buffered, and nothing
        new for a moment): then ending the stream loses no read it had sent."""
        with self._lock:
            stream = self._current
        if stream is None:
            return True
        return stream.buffered() == 0 and time.monotonic() - self._last_data > QUIET_ON_STOP

    def abort(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.abort()

    def _wait(self, delay: float) -> None:
        self.last_delay = delay
        self._stop.wait(delay)

    def run(self) -> None:
        failures = 0  # consecutive failed opens, or streams that gave nothing
        in_outage = False
        while not self._stop.is_set():
            if (locked_out := self.auth.remaining()) > 0:
                self._wait(locked_out)  # a trigger's login was refused meanwhile
                continue
            try:
                stream = self.client.open_stream()
            except AuthError as exc:
                delay = self.auth.refused_by(self.name, exc)
                self._on_status(False)
                in_outage = True
                self._wait(delay)
                continue
            except CameraError as exc:
                self._on_status(False)
                delay = self._reconnect(failures)
                failures += 1
                if not in_outage:
                    log.warning("camera %s: %s; retrying until it is back", self.name, exc)
                    in_outage = True
                else:
                    log.debug(
                        "camera %s: still unreachable (%s), attempt %d", self.name, exc, failures
                    )
                self._wait(delay)
                continue
            if in_outage:
                log.info("camera %s: event stream open again", self.name)
            else:
                log.debug("camera %s: event stream open", self.name)
            in_outage = False
            self.auth.accepted()
            self._on_status(True)
            with self._lock:
                self._current = stream
            if self._stop.is_set():
                stream.abort()
            idle = False
            try:
                self._pump(stream)
            except StreamIdle:
                log.debug(
                    "camera %s: silent for %.0f s; reopening the stream",
                    self.name,
                    self.client.settings.idle_timeout,
                )
                idle = True
            except CameraUnreachable as exc:
                if not self._stop.is_set():
                    log.info("camera %s: %s; reopening", self.name, exc)
            except ProtocolError as exc:
                log.warning("camera %s: bad event stream (%s); reopening", self.name, exc)
            finally:
                with self._lock:
                    self._current = None
                stream.close()
            if idle or self._delivered:
                failures = 0
            elif not self._stop.is_set():
                # A stream that ends before giving anything: don't spin on it.
                self._wait(self._reconnect(failures))
                failures += 1
        self.client.close()

    def _pump(self, stream: EventStream) -> None:
        """Read and parse until the stream ends, which it does by raising."""
        parser = MultipartParser(stream.boundary, max_part_size=self._max_part_size)
        assembler = ReadAssembler()
        self._delivered = False
        while True:  # until the stream ends: after a stop, abort() ends it
            data = stream.read()
            self._last_data = time.monotonic()
            for part in parser.feed(data):
                if not self._delivered:
                    self._delivered = True
                    if parser.boundary != stream.boundary:
                        log.info(
                            "camera %s: stream declares boundary %r but uses %r",
                            self.name,
                            stream.boundary,
                            parser.boundary,
                        )
                self._deliver(assembler, part)

    def _deliver(self, assembler: ReadAssembler, part: Part) -> None:
        try:
            self._sink(assembler.handle(part))
        except Exception:  # a bug must cost one part, never the camera
            log.exception("camera %s: error handling a %s part", self.name, part.content_type)
