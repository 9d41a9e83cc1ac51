"""The live feed: reads fanned out to the open pages (server-sent events).

``publish()`` runs on the bridge's thread and never waits: it appends to each client's
bounded queue and wakes the client's coroutine on the server's loop. A client whose
queue is full (a page that stopped reading) is dropped; its page reconnects and reloads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field

from hik2mqtt.web.backend import ReadRecord

log = logging.getLogger(__name__)

CLIENT_QUEUE = 256
MAX_CLIENTS = 32


@dataclass(eq=False)
class Client:
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    queue: collections.deque[str] = field(default_factory=collections.deque)
    closed: bool = False
    dropped: bool = False

    def _set(self) -> None:
        self.wake.set()

    def notify(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to wake
            self.loop.call_soon_threadsafe(self._set)


class LiveFeed:
    def __init__(self, *, client_queue: int = CLIENT_QUEUE, max_clients: int = MAX_CLIENTS) -> None:
        self.client_queue = client_queue
        self.max_clients = max_clients
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self.slow_dropped = 0

    def connect(self) -> Client | None:
        """A new client on the running loop, or None when there are too many."""
        with self._lock:
            if len(self._clients) >= self.max_clients:
                return None
            client = Client(asyncio.get_running_loop())
            self._clients.add(client)
            return client

    def disconnect(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)

    @property
    def watched(self) -> bool:
        """Some page is open (a hint, read without the lock: a page that opens meanwhile
        loads the reads before it anyway)."""
        return bool(self._clients)

    def publish(self, record: ReadRecord) -> None:
        """Send a read to every open page; never blocks."""
        if not self._clients:  # nobody watching: no JSON to build
            return
        self.send("read", json.dumps(record.as_dict(), ensure_ascii=False))

    def send(self, event: str, data: str) -> None:
        message = f"event: {event}\ndata: {data}\n\n"
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if client.closed:
                continue
            if len(client.queue) >= self.client_queue:
                client.dropped = client.closed = True
                self.slow_dropped += 1
                log.warning("web: a page fell %d reads behind; dropped it", self.client_queue)
                self.disconnect(client)
            else:
                client.queue.append(message)
            client.notify()

    def close(self) -> None:
        """End every client's stream (the server is stopping)."""
        with self._lock:
            clients = list(self._clients)
            self._clients.clear()
        for client in clients:
            client.closed = True
            client.notify()

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)
