"""Serving HTTP: the one way the bridge listens (the web page, push, /metrics and /healthz).

Each listener is an ASGI app (Starlette's requests and responses) served by uvicorn on its
own thread, on a socket we bind ourselves, through :class:`GuardedProtocol`: uvicorn's h11
protocol with the protections uvicorn lacks, so a hostile client costs only itself:

- **a deadline per request**: the request line, headers and body must arrive in full
  within ``deadline`` seconds of the connection (or of the previous answer), however the
  client trickles them; uvicorn only bounds the idle time between requests (uvicorn issue
  #157). Past it the connection is closed and one line logged.
- **a connection limit** (:class:`ConnectionLimit`), counted when the connection is made,
  before a byte is parsed: at most ``max_connections`` at once, ``per_client`` from one
  address; one past either is answered ``503`` ("busy") and closed at once, with at most
  one warning line a minute however many come.
- **quiet errors**: h11's verdict on a malformed request is answered (411 for a bad or
  conflicting ``Content-Length`` or a ``Transfer-Encoding`` h11 refuses; 431 for headers
  over the limit; else 400) and logged in one escaped line naming the listener and the
  client, never a traceback; a client that hangs up costs nothing; an exception out of a
  handler is logged once with its traceback (the path without its query, a push secret
  masked), answered ``500`` and the listener serves on (:func:`guarded`).
- no access log (URLs hold push secrets and plates), no ``Server`` or ``Date`` header, no
  proxy headers (``X-Forwarded-For`` would let anyone pick the address a limit counts).

Why uvicorn and Starlette: they already serve the page; uvicorn's h11 protocol is a pure
Python parser with hard limits (docs/web.md says more), and one way to serve HTTP in the
project means one set of protections to get right. uvicorn and Starlette are imported only
by the listeners that are on: a bridge of stream cameras without metrics imports neither.
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from hik2mqtt.logsafe import escape, redact_url

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
WARN_EVERY = 60.0  # seconds between two "too many connections" lines
MAX_HEADER_BYTES = 16 * 1024  # request line and headers (h11's max_incomplete_event_size)
TIMED_OUT = "hik2mqtt.timed_out"  # set in a request's scope["state"] when its deadline passed
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
)
FRAMING_HEADERS = ("content-length", "transfer-encoding")


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


@dataclass
class Guard:
    """One listener's protections, shared by all its connections (on its loop's thread)."""

    name: str
    deadline: float
    limit: ConnectionLimit
    next_warning: float = 0.0

    def refused(self, client: str) -> None:
        now = time.monotonic()
        if now >= self.next_warning:  # at most one line a minute, however many come
            self.next_warning = now + WARN_EVERY
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


class _Connection(h11.Connection):
    """h11's connection, remembering why it refused the request (for the answer and log)."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class _ListenerLog(logging.LoggerAdapter[logging.Logger]):
    """uvicorn's per-connection messages as our lines: the listener, the client, h11's reason."""

    def __init__(self, protocol: GuardedProtocol) -> None:
        super().__init__(log, {})
        self.protocol = protocol

    @property
    def level(self) -> int:  # uvicorn compares it with its TRACE level
        return self.logger.getEffectiveLevel()

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        protocol = self.protocol
        text = (str(msg) % args if args else str(msg)).strip().rstrip(".")
        error = protocol.conn.error if isinstance(protocol.conn, _Connection) else None
        # h11's reason may quote the client's bytes (the request line, with a push secret)
        reason = f": {redact_url(str(error))[:200]}" if error is not None else ""
        self.logger.log(
            level,
            "%s listener: %s from %s%s",
            protocol.guard.name,
            escape(text),
            protocol.peer,
            escape(reason),
            **kwargs,
        )


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a listener's :class:`Guard`: the connection limit, a
    deadline for each request to arrive in full, and quiet answers to malformed requests.

    Each :class:`Server` makes a subclass with its own ``guard``.
    """

    guard: ClassVar[Guard]
    _late: asyncio.TimerHandle | None = None
    _slot: str | None = None  # the address whose slot this connection holds
    peer = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size or MAX_HEADER_BYTES
        self.conn = _Connection(h11.SERVER, max_incomplete_event_size=limit)
        self.logger = _ListenerLog(self)  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peer = escape(self.client[0]) if self.client else "?"
        client = self.client[0] if self.client else "?"
        if not self.guard.limit.acquire(client):
            self.guard.refused(client)
            transport.write(REFUSAL)
            transport.close()
            return
        self._slot = client
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._slot is not None:
            self.guard.limit.release(self._slot)
            self._slot = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._slot is None:  # refused: not a byte is parsed
            return
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the request is in (or the connection is ending)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own deadline

    def send_400_response(self, msg: str) -> None:
        """Answer a request h11 refused (it was logged by uvicorn, through our adapter)."""
        error = self.conn.error if isinstance(self.conn, _Connection) else None
        status = _status_for(error)
        body = f"{_PHRASES.get(status, 'bad request')}\n".encode()
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            answer = h11.Response(status_code=status, headers=headers, reason=_reason(status))
            self.transport.write(self.conn.send(answer))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # in the middle of an answer: just close
            pass
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._late = self.loop.call_later(self.guard.deadline, self._too_late)

    def _disarm(self) -> None:
        if self._late is not None:
            self._late.cancel()
            self._late = None

    def _too_late(self) -> None:
        self._late = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            state = self.scope.get("state")
            if isinstance(state, dict):
                state[TIMED_OUT] = True  # the handler reading its body need not log it again
        log.info(
            "%s listener: a request from %s timed out (not in full after %g s); closed",
            self.guard.name,
            self.peer,
            self.guard.deadline,
        )
        self.transport.close()


_PHRASES = {
    400: "bad request",
    411: "Content-Length required",
    431: "headers too large",
}


def _status_for(error: h11.RemoteProtocolError | None) -> int:
    """411 for h11's verdicts on the body's framing (its messages name the header), 431
    for headers past the limit, else 400."""
    if error is None:
        return 400
    text = str(error).lower()
    if any(name in text for name in FRAMING_HEADERS):
        return 411
    return 431 if error.error_status_hint == 431 else 400


def _reason(status: int) -> bytes:
    return http.HTTPStatus(status).phrase.encode()


def timed_out(scope: Scope) -> bool:
    """The request's deadline passed (its connection was closed by :class:`GuardedProtocol`)."""
    state = scope.get("state")
    return isinstance(state, dict) and bool(state.get(TIMED_OUT))


def describe(scope: Scope) -> str:
    """``METHOD path`` of a request for a log: escaped, without the query, secret masked."""
    method = str(scope.get("method", "request"))
    raw = scope.get("raw_path") or str(scope.get("path", "")).encode()
    path = bytes(raw).decode("latin-1").partition("?")[0]
    return escape(f"{method} {redact_url(path)}"[:300])


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def guarded(app: ASGIApp, name: str) -> ASGIApp:
    """``app`` whose unexpected exceptions are logged once with their traceback and answered
    500 (when no answer had started); the listener serves on."""

    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "%s listener: unexpected error answering %s from %s",
                name,
                describe(scope),
                escape(client_of(scope)),
            )
            if scope["type"] != "http" or started:
                return
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"text/plain"),
                            (b"content-length", b"15"),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b"internal error\n"})
            except Exception:  # the client went away meanwhile; nothing more to say
                log.debug("%s listener: the 500 answer could not be sent", name)

    return run


def _protocol_for(guard: Guard) -> type[GuardedProtocol]:
    class Protocol(GuardedProtocol):
        pass

    Protocol.guard = guard
    Protocol.__name__ = Protocol.__qualname__ = f"GuardedProtocol[{guard.name}]"
    return Protocol


class Server:
    """An ASGI app served by uvicorn on a thread of its own, behind :class:`GuardedProtocol`.

    ``bind()`` (or ``start()``) takes the port: an address in use fails there with
    OSError; ``port=0`` picks a free port. ``stop()`` returns within about ``STOP_TIMEOUT``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str,
        host: str,
        port: int,
        deadline: float,
        max_connections: int,
        per_client: int,
        keep_alive: float = 5.0,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.limit = ConnectionLimit(
            total=max_connections, per_client=min(per_client, max_connections)
        )
        self.protocol = _protocol_for(Guard(name=name, deadline=deadline, limit=self.limit))
        self._app = guarded(app, name)
        self._keep_alive = keep_alive
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    def bind(self) -> None:
        """Take the address; OSError when it can't be (in use, not this machine's)."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only then
        # (without it, a response's header and body writes wait 40 ms on delayed ACKs).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host.strip("[]"), self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])

    def start(self) -> None:
        """Bind (if not yet) and serve; raises OSError when the server can't start."""
        self.bind()
        sock = self._sock
        assert sock is not None
        config = uvicorn.Config(
            self._app,
            log_config=None,  # our logging set-up, not uvicorn's
            access_log=False,  # URLs hold push secrets and plates: they stay out of the log
            interface="asgi3",
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-For would let anyone pick their address
            server_header=False,
            date_header=False,
            limit_concurrency=None,  # GuardedProtocol counts connections (before parsing)
            timeout_keep_alive=int(self._keep_alive),
            timeout_graceful_shutdown=2,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            ws="none",
            http=self.protocol,  # h11 always, with the guard
        )
        server = uvicorn.Server(config)
        self._server = server

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start() or logged; never silent
                self._failed = exc
                log.exception("%s listener: its server stopped", self.name)
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(START_TIMEOUT / 0.01)):
            if server.started or self._failed is not None or not self._thread.is_alive():
                break
            waited.wait(0.01)
        if not server.started:
            raise OSError(f"the {self.name} listener did not start on {self.host}:{self.port}")

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            if self._sock is not None:  # bound, never started
                self._sock.close()
                self._sock = None
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
