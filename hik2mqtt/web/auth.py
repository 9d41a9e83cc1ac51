"""Logins for the page: sessions with a CSRF token each, and a limit on failed logins.

Pure bookkeeping with an injected clock; the app decides what a request may do.
"""

from __future__ import annotations

import collections
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_SESSIONS = 256
FAILURES_PER_SOURCE = 5  # failed logins from one address ...
FAILURE_WINDOW = 300.0  # ... within this many seconds lock that address out for the window
FAILURES_OVERALL = 30  # failed logins from everyone within a minute lock every login
MAX_SOURCES = 4096


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf: str
    expires: float


def same_secret(given: str, secret: str) -> bool:
    """Compare a password in constant time (whatever its length or characters)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode("utf-8"))


class Sessions:
    def __init__(self, lifetime: float, *, clock: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.lifetime)
        with self._lock:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            while len(self._sessions) >= MAX_SESSIONS:  # the one expiring soonest goes
                oldest = min(self._sessions.values(), key=lambda s: s.expires)
                del self._sessions[oldest.token]
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if session.expires <= self.clock():
                del self._sessions[token]
                return None
            return session

    def end(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)


class LoginLimiter:
    """Failed logins per source address, and overall; bounded memory."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_source: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._overall: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def allowed(self, source: str) -> bool:
        """May ``source`` try a password now?"""
        now = self.clock()
        with self._lock:
            self._trim(self._overall, now - 60.0)
            if len(self._overall) >= FAILURES_OVERALL:
                return False
            tries = self._by_source.get(source)
            if tries is None:
                return True
            self._trim(tries, now - FAILURE_WINDOW)
            return len(tries) < FAILURES_PER_SOURCE

    def failed(self, source: str) -> None:
        now = self.clock()
        with self._lock:
            self._overall.append(now)
            tries = self._by_source.pop(source, None) or collections.deque()
            tries.append(now)
            while len(tries) > FAILURES_PER_SOURCE:
                tries.popleft()
            self._by_source[source] = tries
            while len(self._by_source) > MAX_SOURCES:
                self._by_source.popitem(last=False)

    def succeeded(self, source: str) -> None:
        with self._lock:
            self._by_source.pop(source, None)

    @staticmethod
    def _trim(times: collections.deque[float], cutoff: float) -> None:
        while times and times[0] < cutoff:
            times.popleft()
