"""One camera worker loop for every way of fetching reads (stream, poll).

:class:`CameraWorker` owns what the ways share: the login lock-out (a refused login is
never retried before the camera's wait is over), the capped, jittered backoff, the camera's
status (online when a session opens, offline when none can be opened), and quiet reopens.
What differs is the :class:`Fetcher`: it opens a :class:`Session` (one open alertStream,
or a run of polls of the plate list) whose ``pump`` hands outputs on until it ends by
raising.

The worker runs under :func:`hik2mqtt.supervise.supervise`: an unexpected exception is
logged with its traceback, the camera is marked offline, and the loop starts again after
its backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from hik2mqtt.backoff import reconnect_delay
from hik2mqtt.camera import AuthGate
from hik2mqtt.errors import AuthError, CameraError, CameraUnreachable, ProtocolError, StreamIdle
from hik2mqtt.reads import Output

log = logging.getLogger(__name__)

Deliver = Callable[[Output], None]


class Session(Protocol):
    """One connected stretch of fetching reads from a camera."""

    delivered: bool  # something arrived (a stream that gives nothing is not retried at once)

    def pump(self, deliver: Deliver) -> None:
        """Hand on everything that arrives until the session ends, which it does by raising
        (StreamIdle, CameraError, ProtocolError)."""

    def quiet(self) -> bool:
        """Whether everything the camera sent has been handed on (for a graceful stop)."""

    def abort(self) -> None:
        """End the session from another thread."""

    def close(self) -> None: ...


class Fetcher(Protocol):
    what: str  # for the log: "event stream", "polling"

    def open(self) -> Session:
        """Open a session (raises AuthError for a refused login, CameraError otherwise)."""

    def close(self) -> None: ...


class CameraWorker:
    """Keeps one camera's session open and hands what it means to ``deliver``.

    ``on_status(True)`` when a session opens, ``on_status(False)`` when the camera cannot be
    reached or refuses the login; a quiet reopen (idle stream, stream closed by the camera)
    does not report offline unless the reopen fails.
    """

    def __init__(
        self,
        *,
        name: str,
        fetcher: Fetcher,
        deliver: Deliver,
        on_status: Callable[[bool], object],
        stop: threading.Event,
        auth: AuthGate,
        reconnect: Callable[[int], float] = reconnect_delay,
    ) -> None:
        self.name = name
        self.fetcher = fetcher
        self._deliver = deliver
        self._on_status = on_status
        self._stop = stop
        self.auth = auth
        self._reconnect = reconnect
        self._lock = threading.Lock()
        self._current: Session | None = None
        self.last_delay = 0.0  # the last wait before a retry, for observers and tests
        self.thread: threading.Thread | None = None

    def begin_stop(self) -> None:
        """Stop opening sessions; the open one is still read until :meth:`abort`."""
        self._stop.set()

    def quiet(self) -> bool:
        with self._lock:
            session = self._current
        return session is None or session.quiet()

    def abort(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.abort()

    def wait(self, delay: float) -> None:
        self.last_delay = delay
        self._stop.wait(delay)

    def run(self) -> None:
        """The loop; returns when the stop event is set."""
        failures = 0  # consecutive failed opens, or sessions that gave nothing
        in_outage = False
        while not self._stop.is_set():
            if (locked_out := self.auth.remaining()) > 0:
                self.wait(locked_out)  # a command's login was refused meanwhile
                continue
            try:
                session = self.fetcher.open()
            except AuthError as exc:
                self._refused(exc)
                in_outage = True
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
                        "camera %s: still unreachable (%s), attempt %d",
                        self.name,
                        exc,
                        failures,
                    )
                self.wait(delay)
                continue
            if in_outage:
                log.info("camera %s: %s open again", self.name, self.fetcher.what)
            else:
                log.debug("camera %s: %s open", self.name, self.fetcher.what)
            in_outage = False
            self.auth.accepted()
            self._on_status(True)
            if self._serve(session):
                failures = 0
            elif not self._stop.is_set():
                # A session that ends before giving anything: don't spin on it.
                self.wait(self._reconnect(failures))
                failures += 1
        self.fetcher.close()

    def _refused(self, exc: AuthError) -> None:
        delay = self.auth.refused_by(self.name, exc)
        self._on_status(False)
        self.wait(delay)

    def _serve(self, session: Session) -> bool:
        """Pump one session until it ends; True when it was worth it (reads or idle)."""
        with self._lock:
            self._current = session
        if self._stop.is_set():
            session.abort()
        try:
            session.pump(self._deliver)
        except StreamIdle as exc:
            log.debug("camera %s: %s; reopening", self.name, exc)
            return True
        except AuthError as exc:
            self._refused(exc)
        except CameraUnreachable as exc:
            if not self._stop.is_set():
                log.info("camera %s: %s; reopening", self.name, exc)
        except CameraError as exc:
            log.warning("camera %s: %s; reopening", self.name, exc)
        except ProtocolError as exc:
            log.warning("camera %s: bad event stream (%s); reopening", self.name, exc)
        finally:
            with self._lock:
                self._current = None
            session.close()
        return session.delivered
