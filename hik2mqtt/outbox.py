"""What goes out to the broker, and what waits while it is away.

- Reads are never dropped: while the broker is away (or while older reads still wait)
  they go to the spool, in order, and leave it only when the broker has acknowledged
  them. A read published straight away and not yet acknowledged when the bridge stops is
  put at the head of the spool, so a restart loses none (with a spool folder).
- Pictures are retained "last picture" topics: while the broker is away only the newest
  picture per topic is kept, and published after the reads that wait.

paho calls ``on_published`` from its network thread while holding its own locks, so that
callback only appends to a deque; everything else happens on the caller's threads or the
outbox thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from hik2mqtt.mqtt import MqttLink
from hik2mqtt.spool import Spool

log = logging.getLogger(__name__)

DRAIN_BATCH = 100


class Outbox:
    def __init__(self, *, link: MqttLink, spool: Spool) -> None:
        self._link = link
        self._spool = spool
        self._lock = threading.Lock()
        self._acks: collections.deque[int] = collections.deque()
        self._ack_event = threading.Event()
        self._unacked: dict[int, tuple[str, bytes]] = {}  # mid -> read published directly
        self._rows_in_flight: dict[int, int] = {}  # mid -> spool row id
        self._pictures: dict[str, bytes] = {}  # topic -> newest picture held back
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if len(self._spool):
            self._wake.set()

    def on_published(self, mid: int) -> None:
        """paho's network thread: a QoS 1 message was acknowledged."""
        self._acks.append(mid)
        if self._rows_in_flight:
            self._ack_event.set()

    def wake(self) -> None:
        """The broker is (back) online: deliver what waits."""
        self._wake.set()

    @property
    def waiting(self) -> int:
        """Reads not yet acknowledged by the broker (spooled or in flight)."""
        with self._lock:
            self._take_acks()
            return len(self._spool) + len(self._unacked)

    # -- producers (camera threads) -------------------------------------------------------

    def _direct(self) -> bool:
        return self._link.connected.is_set() and not len(self._spool) and not self._rows_in_flight

    def read(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if self._closed:
                log.error("a read for %s came after the bridge stopped; it is lost", topic)
                return
            self._take_acks()
            if self._direct():
                info = self._link.publish(topic, payload)
                if info is not None:
                    self._unacked[info.mid] = (topic, payload)
                    return
            self._spool.append(topic, payload)
        self._wake.set()

    def picture(self, topic: str, data: bytes) -> None:
        with self._lock:
            if self._direct() and not self._pictures:
                self._link.publish(topic, data, retain=True)
                return
            self._pictures[topic] = data  # the newest picture wins
        self._wake.set()

    # -- the outbox thread ----------------------------------------------------------------

    def _take_acks(self) -> None:
        """Under the lock: forget what the broker has acknowledged."""
        while self._acks:
            mid = self._acks.popleft()
            if self._unacked.pop(mid, None) is None:
                row = self._rows_in_flight.pop(mid, None)
                if row is not None:
                    self._spool.delete(row)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # never lose the outbox thread
                log.exception("error delivering spooled reads")

    def _drain(self) -> None:
        delivered = 0
        while self._link.connected.is_set() and not self._stop.is_set():
            with self._lock:
                self._take_acks()
                rows = self._spool.peek(DRAIN_BATCH, exclude=set(self._rows_in_flight.values()))
                if not rows and not self._rows_in_flight:
                    pictures, self._pictures = self._pictures, {}
                    for topic, data in pictures.items():
                        self._link.publish(topic, data, retain=True)
                    break
                for row_id, topic, payload in rows:
                    info = self._link.publish(topic, payload)
                    if info is None:
                        break
                    self._rows_in_flight[info.mid] = row_id
                    delivered += 1
            self._ack_event.wait(0.5)
            self._ack_event.clear()
        if delivered:
            log.info("delivered %d reads that waited for the broker", delivered)

    def stop(self, *, timeout: float) -> None:
        """Deliver what can be within ``timeout``; spool what is left."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline and self._link.connected.is_set() and self.waiting:
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        with self._lock:
            self._take_acks()
            left = list(self._unacked.values())
            self._unacked.clear()
            self._spool.prepend(left)
            waiting = len(self._spool)
        if waiting:
            log.warning("%d reads not yet delivered are kept in the spool", waiting)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._spool.close()
