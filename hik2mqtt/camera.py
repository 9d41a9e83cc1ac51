"""HTTP to one camera: the event stream, commands, Digest auth, reconnects.

requests/urllib3 errors are translated here into :mod:`hik2mqtt.errors`. The stream is
read with urllib3's ``read1``, which returns whatever has arrived, so a part is parsed
(and published) the moment its last byte is on the socket; ``iter_content`` with a chunk
size would hold it back until more bytes come.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
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
from hik2mqtt.multipart import MultipartParser, boundary_from_content_type
from hik2mqtt.reads import Output, ReadAssembler

log = logging.getLogger(__name__)

STREAM_PATH = "/ISAPI/Event/notification/alertStream"
MNPR_PATH = "/ISAPI/Traffic/MNPR/channels/{channel}"
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
READ_SIZE = 256 * 1024
ERROR_BODY_LIMIT = 64 * 1024


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

    def abort(self) -> None:
        """Unblock a ``read`` in another thread (for shutdown)."""
        self._aborted = True
        conn: Any = getattr(self._raw, "_connection", None) or getattr(
            self._raw, "connection", None
        )
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

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
        self._session.verify = settings.verify_tls
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

    def close(self) -> None:
        self._session.close()


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
        auth_wait: Callable[..., float] = auth_delay,
    ) -> None:
        self.client = client
        self.name = client.name
        self._sink = sink
        self._on_status = on_status
        self._stop = stop
        self._max_part_size = max_part_size
        self._reconnect = reconnect
        self._auth_wait = auth_wait
        self._current: EventStream | None = None
        self._lock = threading.Lock()
        self._delivered = False
        self.last_delay: float = 0.0  # the last wait before a retry, for observers and tests

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._current is not None:
                self._current.abort()

    def _wait(self, delay: float) -> None:
        self.last_delay = delay
        self._stop.wait(delay)

    def run(self) -> None:
        failures = 0  # consecutive failed opens, or streams that gave nothing
        auth_failures = 0
        in_outage = False
        while not self._stop.is_set():
            try:
                stream = self.client.open_stream()
            except AuthError as exc:
                auth_failures += 1
                delay = self._auth_wait(auth_failures, unlock_time=exc.unlock_time)
                self._on_status(False)
                log.error(
                    "camera %s: %s; next login attempt in %.0f s "
                    "(check HIK2MQTT_CAMERAS__%s__USERNAME and __PASSWORD)",
                    self.name,
                    exc,
                    delay,
                    self.name.upper(),
                )
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
            auth_failures = 0
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
        while not self._stop.is_set():
            data = stream.read()
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
                self._deliver(assembler.handle(part))

    def _deliver(self, output: Output) -> None:
        try:
            self._sink(output)
        except Exception:  # a bug in a sink must not stop the camera
            log.exception("camera %s: error handling %s", self.name, type(output).__name__)
