"""Running the page, and the one object the bridge wires in.

The page is served like every listener of the bridge (:class:`hik2mqtt.serving.Server`:
uvicorn on its own thread, a deadline per request, a connection cap, quiet errors).

The bridge builds a :class:`WebService` from the settings and its :class:`WebBackend`,
calls ``start()`` (binds the port: a port in use fails here, at start), hands every read
it publishes to ``published()``, and calls ``stop()`` on the way out.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from hik2mqtt.config import ENV_PREFIX, Settings
from hik2mqtt.errors import ConfigError
from hik2mqtt.serving import Server, url_host
from hik2mqtt.web.app import WebApp
from hik2mqtt.web.backend import ReadRecord, WebBackend
from hik2mqtt.web.history import History
from hik2mqtt.web.live import LiveFeed

log = logging.getLogger(__name__)

REQUEST_DEADLINE = 10.0  # seconds a client has to send a whole request (headers and body)
MAX_CONNECTIONS = 128
# Per address as many as in all: behind a reverse proxy every request comes from its address.
PER_CLIENT = MAX_CONNECTIONS


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
        self.server = Server(
            self.app.asgi,
            name="web",
            host=host,
            port=port,
            deadline=REQUEST_DEADLINE,
            max_connections=MAX_CONNECTIONS,
            per_client=PER_CLIENT,
        )

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
            log.info("web: page on http://%s:%d/", url_host(self.server.host), self.server.port)
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

    @property
    def problem(self) -> str | None:
        """What is wrong with the page for the bridge's health (None: nothing)."""
        if not self.server.alive:
            return "the web page's server has stopped"
        return self.history.problem

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
        self.live.close()  # open live feeds end, so the server's stop need not wait for them
        self.server.stop()
        self.history.close()
