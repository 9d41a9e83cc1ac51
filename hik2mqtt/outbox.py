"""What goes out to the broker, and what waits while it is away.

- Reads are never dropped: while the broker is away (or while older reads still wait)
  they go to the spool, in order, and leave it only when the broker has acknowledged
  them. A read published straight away and not yet acknowledged when the bridge stops is
  put at the head of the spool, so a restart loses none (with a spool folder).
- Retained "latest value" topics (pictures, a camera's last read) take the "latest wins"
  path (:meth:`Outbox.latest`): while the broker is away only the newest payload per topic
  is kept, and published after the reads that wait.

paho calls ``on_published`` from its network thread while holding its own locks, so that
callback only appends to a deque; everything else happens on the caller's threads or the
outbox thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from hik2mqtt.mqtt import MqttLink, Props
from hik2mqtt.spool import Spool
from hik2mqtt.supervise import supervise

log = logging.getLogger(__name__)

# Messages published and not yet acknowledged, at most. Past it, reads wait in the spool
# and pictures keep only the newest per topic: memory stays bounded however fast cameras
# send, instead of piling up in paho's queue.
MAX_OUTSTANDING = 200


class Outbox:
    def __init__(self, *, link: MqttLink, spool: Spool, restored: Props | None = None) -> None:
        self._link = link
        self._spool = spool
        # Properties of rows spooled before a restart (their age is unknown, so they get the
        # shortest expiry: subscribers connected now receive them, none that come later).
        self._restored = restored
        self._lock = threading.Lock()
        self._acks: collections.deque[int] = collections.deque()
        self._ack_event = threading.Event()
        self._unacked: dict[int, tuple[str, bytes]] = {}  # mid -> read published directly
        # MQTT 5 properties of the rows spooled by this process, and when they were spooled
        # (a read's expiry counts down while it waits); rows from before a restart have none.
        self._row_props: dict[int, tuple[Props, float]] = {}
        self._rows_in_flight: dict[int, int] = {}  # mid -> spool row id
        self._latest: dict[str, tuple[bytes, Props | None]] = {}  # topic -> newest held back
        self._mids: set[int] = set()  # everything this outbox published, not yet acknowledged
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._backlog = False  # something waits for room: wake the outbox thread on acks
        self._thread = threading.Thread(
            target=supervise(self._run, name="outbox", stop=self._stop), name="outbox", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        if len(self._spool):
            self._wake.set()

    def on_published(self, mid: int) -> None:
        """paho's network thread: a QoS 1 message was acknowledged."""
        self._acks.append(mid)
        if self._backlog:
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
        return (
            self._link.connected.is_set()
            and not self._backlog
            and len(self._mids) < MAX_OUTSTANDING
        )

    def _publish(
        self, topic: str, payload: bytes, *, retain: bool = False, props: Props | None = None
    ) -> int | None:
        """Under the lock: publish and remember the message id (None: paho refused it)."""
        info = self._link.publish(topic, payload, retain=retain, props=props)
        if info is None:
            return None
        self._mids.add(info.mid)
        return int(info.mid)

    def read(self, topic: str, payload: bytes, props: Props | None = None) -> None:
        with self._lock:
            if self._closed:
                log.error("a read for %s came after the bridge stopped; it is lost", topic)
                return
            self._take_acks()
            if self._link.refuses(topic):  # logged once; spooled it would wait forever
                return
            if self._direct():
                mid = self._publish(topic, payload, props=props)
                if mid is not None:
                    self._unacked[mid] = (topic, payload)
                    return
            row = self._spool.append(topic, payload)
            if props is not None:
                self._row_props[row] = (props, time.monotonic())
                # A full spool drops its oldest rows: so do their properties.
                while len(self._row_props) > len(self._spool):
                    del self._row_props[next(iter(self._row_props))]
            self._backlog = True
        self._wake.set()

    def latest(self, topic: str, payload: bytes, props: Props | None = None) -> None:
        """A retained latest-value message: while it can't go out, only the newest per
        topic waits."""
        if self._link.refuses(topic):
            return
        with self._lock:
            if self._direct():
                self._publish(topic, payload, retain=True, props=props)
                return
            self._latest[topic] = (payload, props)  # the newest wins
            self._backlog = True
        self._wake.set()

    # -- the outbox thread ----------------------------------------------------------------

    def _take_acks(self) -> None:
        """Under the lock: forget what the broker has acknowledged."""
        while self._acks:
            mid = self._acks.popleft()
            self._mids.discard(mid)
            if self._unacked.pop(mid, None) is None:
                row = self._rows_in_flight.pop(mid, None)
                if row is not None:
                    self._spool.delete(row)
                    self._row_props.pop(row, None)

    def _props_of(self, row: int) -> Props | None:
        """A spooled row's properties, its expiry less the time it waited (at least 1 s:
        subscribers connected now still get it; one that comes back later does not)."""
        found = self._row_props.get(row)
        if found is None:
            return self._restored
        props, spooled = found
        if props.expiry is None:
            return props
        left = max(1, props.expiry - int(time.monotonic() - spooled))
        return Props(props.content_type, left, props.user_properties, props.correlation_data)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                self._drain()
            except Exception:
                # What waited still waits: supervise logs this and restarts the thread after
                # its backoff, and the restarted thread tries again without another nudge.
                self._wake.set()
                raise

    def _drain(self) -> None:
        delivered = 0
        while self._link.connected.is_set() and not self._stop.is_set():
            with self._lock:
                self._take_acks()
                room = MAX_OUTSTANDING - len(self._mids)
                rows = (
                    self._spool.peek(room, exclude=set(self._rows_in_flight.values()))
                    if room > 0
                    else []
                )
                for row_id, topic, payload in rows:
                    if self._link.refuses(topic):  # e.g. spooled by an older version
                        self._spool.delete(row_id)
                        self._row_props.pop(row_id, None)
                        continue
                    mid = self._publish(topic, payload, props=self._props_of(row_id))
                    if mid is None:
                        break
                    self._rows_in_flight[mid] = row_id
                    delivered += 1
                if room > 0 and not rows and not self._rows_in_flight:
                    # Reads are all out: then the newest latest-values, and back to direct.
                    while self._latest and len(self._mids) < MAX_OUTSTANDING:
                        topic = next(iter(self._latest))
                        payload, props = self._latest.pop(topic)
                        self._publish(topic, payload, retain=True, props=props)
                    if not self._latest:
                        self._backlog = False
                        break
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
