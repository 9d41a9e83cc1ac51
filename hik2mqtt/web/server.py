"""Running the page: uvicorn on its own thread, and the one object the bridge wires in.

The bridge builds a :class:`WebService` from the settings and its :class:`WebBackend`,
calls ``start()`` (binds the port: a port in use fails here, at start), hands every read
it publishes to ``read()``, and calls ``stop()`` on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from hik2mqtt.config import ENV_PREFIX, Settings
from hik2mqtt.errors import ConfigError
from hik2mqtt.web.app import WebApp
from hik2mqtt.web.backend import ReadRecord, WebBackend
from hik2mqtt.web.history import History
from hik2mqtt.web.live import LiveFeed

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
REQUEST_DEADLINE = 10.0  # seconds a client has to send a whole request (headers and body)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request to arrive in full.

    uvicorn bounds the idle time between requests but not the time a request takes to
    arrive: a client could hold a connection by sending a byte now and then.
    """

    deadline = REQUEST_DEADLINE
    _late: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the request is in (or the connection is ending)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._late = self.loop.call_later(self.deadline, self._too_late)

    def _disarm(self) -> None:
        if self._late is not None:
            self._late.cancel()
            self._late = None

    def _too_late(self) -> None:
        self._late = None
        if not self.transport.is_closing():
            log.info("web: a request took over %g s to arrive; connection closed", self.deadline)
            self.transport.close()


class WebServer:
    """An ASGI app served by uvicorn on a thread; ``port=0`` picks a free port."""

    def __init__(self, app: WebApp, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    def start(self) -> None:
        """Bind and serve; raises OSError when the address can't be bound."""
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
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app.asgi,
            log_config=None,  # our logging set-up, not uvicorn's
            access_log=False,  # URLs hold plates: personal data stays out of the log
            interface="asgi3",
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-For would let anyone pick their address
            server_header=False,
            date_header=False,
            limit_concurrency=128,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
            h11_max_incomplete_event_size=16 * 1024,
            ws="none",
            http=DeadlineH11Protocol,  # h11 always, with a deadline per request
        )
        server = uvicorn.Server(config)
        self._server = server

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start() or logged; never silent
                self._failed = exc
                log.exception("web: the page's server stopped")
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="web-server", daemon=True)
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(START_TIMEOUT / 0.01)):
            if server.started or self._failed is not None or not self._thread.is_alive():
                break
            waited.wait(0.01)
        if not server.started:
            raise OSError(f"the page's server did not start on {self.host}:{self.port}")
        log.info("web: page on http://%s:%d/", _url_host(self.host), self.port)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self.app.live.close()
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class WebService:
    """The page, its history and its live feed, as the bridge sees them."""

    def __init__(
        self,
        *,
        backend: WebBackend,
        host: str,
        port: int,
        password: str | None,
        session_hours: float = 12.0,
        history_dir: Path | None = None,
        keep_days: float = 30.0,
        images_dir: Path | None = None,
    ) -> None:
        self.history = History(history_dir, keep_days=keep_days, images_dir=images_dir)
        self.live = LiveFeed()
        self.app = WebApp(
            backend=backend,
            history=self.history,
            live=self.live,
            password=password,
            session_hours=session_hours,
        )
        self.server = WebServer(self.app, host=host, port=port)

    @classmethod
    def from_settings(cls, settings: Settings, backend: WebBackend) -> WebService | None:
        """The service the settings ask for, or None when the page is off (port 0).

        ConfigError (one line naming the variable) when the history folder can't be used.
        """
        web = settings.web
        if not web.enabled:
            return None
        try:
            return cls(
                backend=backend,
                host=web.host,
                port=web.port,
                password=web.password.get_secret_value() if web.password else None,
                session_hours=web.session_hours,
                history_dir=settings.history.dir,
                keep_days=settings.history.keep_days,
                images_dir=settings.images.dir,
            )
        except (OSError, sqlite3.Error) as exc:
            folder = settings.history.dir
            problem = f"{ENV_PREFIX}HISTORY__DIR: cannot keep the history in {folder}: {exc}"
            raise ConfigError([problem]) from exc

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        """Start the history writer and the server; ConfigError naming HIK2MQTT_WEB__PORT
        when the address can't be listened on (in use, not this machine's)."""
        self.history.start()
        try:
            self.server.start()
        except OSError as exc:
            self.history.close()
            raise ConfigError(
                [
                    f"{ENV_PREFIX}WEB__PORT: cannot listen on {self.server.host}:"
                    f"{self.server.port}: {exc.strerror or exc}"
                ]
            ) from exc
        except BaseException:
            self.history.close()
            raise

    @property
    def alive(self) -> bool:
        """The server and the history writer are running (for the bridge's health)."""
        return self.server.alive and self.history.alive

    def published(
        self,
        doc: dict[str, Any],
        payload: bytes,
        gate_open: bool | None,
        gate_reason: str | None,
    ) -> None:
        """A read the bridge published (its JSON as a dict, not to be changed, and as
        sent): into the history and onto open pages. Never blocks; a record is made
        only when a page is open."""
        read_id = self.history.add_published(doc, payload, gate_open, gate_reason)
        if self.live.watched:
            self.live.publish(
                ReadRecord.from_payload(
                    doc,
                    received=datetime.fromisoformat(doc["received"]),
                    gate_open=gate_open,
                    gate_reason=gate_reason,
                    id=read_id,
                )
            )

    def read(self, record: ReadRecord) -> ReadRecord:
        """A read made elsewhere (the demo, tests): into the history and onto open pages."""
        stored = self.history.add(record)
        self.live.publish(stored)
        return stored

    def stop(self) -> None:
        self.server.stop()
        self.history.close()
