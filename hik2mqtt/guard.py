"""The protections every HTTP listener of the bridge has (push, metrics), as small pieces.

- :class:`DeadlineReader`: a whole request (request line, headers and body) must arrive
  within one deadline, however the client trickles its bytes (not "N seconds per recv").
- :class:`ConnectionLimit`: at most ``total`` connections at once and at most
  ``per_client`` from one address; a connection past either is answered ``503`` and closed
  at once, so a client that opens many costs only its own slots.
- :class:`GuardedServer` / :class:`GuardedHandler`: the stdlib server with the two above,
  whose errors go through logging (one escaped line; a traceback only for a bug, never for
  a client that hangs up, times out or sends garbage), a ``500`` answered when a handler
  fails unexpectedly, and the server serving on.

Nothing a client sends reaches a log unescaped, and a push path's secret (or a password or
token in a URL) never does (:func:`hik2mqtt.logsafe.redact_url`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hik2mqtt.logsafe import escape, redact_url

log = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between two "too many connections" lines
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
)


class DeadlineReader(io.RawIOBase):
    """Reads a socket until ``deadline`` (``time.monotonic()``); then TimeoutError."""

    def __init__(
        self,
        sock: socket.socket,
        deadline: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = deadline
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - self._clock()
        if remaining <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _Writer(io.BufferedIOBase):
    """Writes all it is given (``sendall``; the socket's timeout bounds the whole write)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes


class ConnectionLimit:
    """Counts open connections, in total and per client address."""

    def __init__(self, *, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._count = 0
        self._lock = threading.Lock()
        self.refused = 0

    def acquire(self, client: str) -> bool:
        """Take a slot for ``client``; False when it has no slot left."""
        with self._lock:
            if self._count >= self.total or self._open[client] >= self.per_client:
                self.refused += 1
                return False
            self._count += 1
            self._open[client] += 1
            return True

    def release(self, client: str) -> None:
        with self._lock:
            self._count -= 1
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]

    @property
    def open(self) -> int:
        with self._lock:
            return self._count


def _client(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


class GuardedServer(ThreadingHTTPServer):
    """A threading HTTP server with a connection limit, a request deadline and quiet errors."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[GuardedHandler],
        *,
        name: str,
        max_connections: int,
        per_client: int,
        request_timeout: float,
    ) -> None:
        self.name = name
        self.request_timeout = request_timeout
        self.limit = ConnectionLimit(
            total=max_connections, per_client=min(per_client, max_connections)
        )
        self._next_warning = 0.0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        client = _client(client_address)
        if not self.limit.acquire(client):
            self._refuse(request, client)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: give the slot back (the caller closes the socket)
            self.limit.release(client)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.limit.release(_client(client_address))

    def _refuse(self, request: Any, client: str) -> None:
        now = time.monotonic()
        if now >= self._next_warning:  # at most one line a minute, however many come
            self._next_warning = now + WARN_EVERY
            log.warning(
                "%s listener: too many connections (%d open, at most %d, %d per address); "
                "refused one from %s (%d refused in all)",
                self.name,
                self.limit.open,
                self.limit.total,
                self.limit.per_client,
                escape(client),
                self.limit.refused,
            )
        try:
            request.setblocking(False)
            request.send(REFUSAL)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Called for an exception out of a handler: one log line, a traceback only for a bug."""
        exc = sys.exc_info()[1]
        client = escape(_client(client_address))
        if isinstance(exc, OSError):
            log.info("%s listener: connection from %s ended: %s", self.name, client, _describe(exc))
        elif exc is not None:
            log.error("%s listener: unexpected error serving %s", self.name, client, exc_info=exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError):
        return "the client hung up"
    return escape(str(exc) or type(exc).__name__)


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler reading under the server's deadline and logging safely."""

    server: GuardedServer
    wbufsize = 0

    def setup(self) -> None:
        self._answered = False
        self.connection = self.request
        deadline = time.monotonic() + self.server.request_timeout
        self.connection.settimeout(self.server.request_timeout)  # writes too
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, deadline))
        self.wfile = _Writer(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError as exc:
            log.info(
                "%s listener: %s from %s: %s",
                self.server.name,
                self._what(),
                escape(self.client_address[0]),
                _describe(exc),
            )
            self.close_connection = True
        except Exception:
            log.exception(
                "%s listener: unexpected error answering %s from %s",
                self.server.name,
                self._what(),
                escape(self.client_address[0]),
            )
            self.close_connection = True
            if not self._answered:
                with contextlib.suppress(OSError):
                    self.send_error(500, "internal error")

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    def _what(self) -> str:
        command = getattr(self, "command", None) or "request"
        path = getattr(self, "path", None)
        return escape(f"{command} {redact_url(path)}" if path else command)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug(
            "%s listener: %s from %s: %s",
            self.server.name,
            self._what(),
            self.client_address[0],
            code,
        )

    def log_error(self, format: str, *args: Any) -> None:
        log.info(
            "%s listener: %s from %s",
            self.server.name,
            escape(redact_url(format % args)),
            escape(self.client_address[0]),
        )

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(
            "%s listener: %s from %s",
            self.server.name,
            escape(redact_url(format % args)),
            escape(self.client_address[0]),
        )
