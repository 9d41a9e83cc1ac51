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

from hik2mqtt import isapi
from hik2mqtt.backoff import auth_delay
from hik2mqtt.config import CameraSettings
from hik2mqtt.errors import (
    AuthError,
    CameraHTTPError,
    CameraUnreachable,
    StreamIdle,
)
from hik2mqtt.multipart import MultipartParser, boundary_from_content_type
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


def _auth_error(body: bytes) -> AuthError:
    """An AuthError from a 401 body; Hikvision's ``userCheck`` tells about locked accounts."""
    check = isapi.user_check(body)
    message = "the camera refused the user name or password"
    if check.locked:
        unlock = check.unlock_time
        message += f"; the account is locked for {unlock if unlock is not None else '?'} s"
    return AuthError(message, locked=check.locked, unlock_time=check.unlock_time)


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
        status = isapi.response_status(body)
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


class StreamFetcher:
    """Stream mode's way of fetching reads: one open alertStream per session."""

    what = "event stream"

    def __init__(self, *, client: CameraClient, max_part_size: int) -> None:
        self.client = client
        self._max_part_size = max_part_size

    def open(self) -> StreamSession:
        stream = self.client.open_stream()
        return StreamSession(stream, name=self.client.name, max_part_size=self._max_part_size)

    def close(self) -> None:
        self.client.close()


class StreamSession:
    """One open alertStream: read what has arrived, parse it, hand on each part's meaning."""

    def __init__(self, stream: EventStream, *, name: str, max_part_size: int) -> None:
        self.stream = stream
        self.name = name
        self.delivered = False
        self._max_part_size = max_part_size
        self._last_data = 0.0

    def quiet(self) -> bool:
        """Everything the camera sent has been read (nothing buffered, and nothing new for a
        moment): then ending the stream loses no read it had sent."""
        return self.stream.buffered() == 0 and time.monotonic() - self._last_data > QUIET_ON_STOP

    def abort(self) -> None:
        self.stream.abort()

    def close(self) -> None:
        self.stream.close()

    def pump(self, deliver: Callable[[Output], None]) -> None:
        """Read and parse until the stream ends, which it does by raising."""
        stream = self.stream
        parser = MultipartParser(stream.boundary, max_part_size=self._max_part_size)
        assembler = ReadAssembler()
        while True:  # until the stream ends: after a stop, abort() ends it
            data = stream.read()
            self._last_data = time.monotonic()
            for part in parser.feed(data):
                if not self.delivered:
                    self.delivered = True
                    if parser.boundary != stream.boundary:
                        log.info(
                            "camera %s: stream declares boundary %r but uses %r",
                            self.name,
                            stream.boundary,
                            parser.boundary,
                        )
                try:
                    deliver(assembler.handle(part))
                except Exception:  # a bug must cost one part, never the camera
                    log.exception(
                        "camera %s: error handling a %s part", self.name, part.content_type
                    )
